import type { IncomingMessage } from 'node:http';
import { BrokerError } from '../errors/errors.js';

/**
 * Reads a request body of at most `maxBytes`; a declared or observed larger
 * body is refused as soon as that is known, without buffering the rest.
 */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = (): BrokerError => new BrokerError('payload_too_large', `Payload Too Large: the body must not exceed ${maxBytes} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    received += chunk.length;
    if (received > maxBytes) {
      req.resume();
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received);
}

/** Parses a JSON body; a body that is not JSON is a JSON-RPC parse error (400). */
export function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new BrokerError('parse_error', 'Parse error: Invalid JSON');
  }
}
