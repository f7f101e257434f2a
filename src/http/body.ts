import type { IncomingMessage } from 'node:http';
import { BrokerError } from '../errors/errors.js';

/**
 * Reads a request body of at most `maxBytes`; a declared or observed larger
 * body is refused (the error `tooLarge` makes, a BrokerError by default) as
 * soon as that is known, without buffering the rest.
 */
export function readBody(
  req: IncomingMessage,
  maxBytes: number,
  tooLarge: () => Error = () => new BrokerError('payload_too_large', `Payload Too Large: the body must not exceed ${maxBytes} bytes`),
): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge());
  }
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  // Listeners rather than `for await`: the async iterator's machinery was a visible share of a small request's CPU.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const settle = (error?: Error): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (error === undefined) resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received));
      else reject(error);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      settle(tooLarge());
      req.resume();
    };
    const onEnd = (): void => settle();
    const onError = (error: Error): void => settle(error);
    // Closed before its end: cut by the client, a deadline or the broker stopping.
    const onClose = (): void => settle(new Error('the request was cut before its body arrived'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Deepest nesting of arrays and objects a body may have. No MCP message comes
 * near it, while JSON.stringify and the SDK's schema checks overflow the stack
 * a few thousand levels down, halfway through serving a request.
 */
export const MAX_JSON_DEPTH = 256;

/**
 * Parses a JSON body; a body that is not JSON is a JSON-RPC parse error
 * (400), one nested deeper than MAX_JSON_DEPTH an invalid request (400).
 */
export function parseJsonBody(body: Buffer): unknown {
  if (nestsDeeperThan(body, MAX_JSON_DEPTH)) {
    throw new BrokerError('bad_request', `Invalid Request: arrays and objects nest deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new BrokerError('parse_error', 'Parse error: Invalid JSON');
  }
}

/** Counted on the raw bytes, before anything is built; brackets inside strings do not count. */
function nestsDeeperThan(body: Buffer, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i];
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > limit) return true;
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) depth--;
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
