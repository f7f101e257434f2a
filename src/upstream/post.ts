import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { BrokerError } from '../errors/errors.js';
import { isJsonRpcMessage } from '../jsonrpc/messages.js';
import { byteLength, RAW_ANSWER_MIN_BYTES, RawAnswer } from '../pool/raw-answer.js';
import { eventText, SseReader, type SseEvent } from './sse-reader.js';

/**
 * How long an idle keep-alive connection to the upstream is kept: fetch's
 * (undici's) default, well under any server's idle limit (Go's net/http
 * closes idle connections after its read timeout), so a reused connection is
 * never one the upstream is closing at that moment.
 */
const IDLE_SOCKET_MS = 4_000;

/** Every session's POSTs share these connections, per upstream host: a request finds a warm one (no TCP handshake for a new user). */
const AGENTS = {
  'http:': new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' }),
  'https:': new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' }),
} as const;

/** What became of a POST whose request reached the upstream. */
export type PostOutcome =
  /** 202: a notification or a response taken. */
  | { readonly kind: 'accepted' }
  /**
   * 200: every message of the body handed on, as JSON or SSE. `answered`:
   * a response to the request was among them (an SSE stream cut before it
   * was not); `lastEventId`: where a resumption of that stream would start.
   */
  | { readonly kind: 'delivered'; readonly answered: boolean; readonly lastEventId: string | undefined }
  /** Any other status, with the body's text. */
  | { readonly kind: 'refused'; readonly status: number; readonly text: string }
  /** 200 with a body that is neither JSON nor SSE. */
  | { readonly kind: 'unexpected'; readonly contentType: string | undefined };

export interface Post {
  readonly url: URL;
  readonly headers: OutgoingHttpHeaders;
  readonly body: string;
  /** Each JSON-RPC message of the answer, with the length of its text (what it costs to keep or resend); true for a response. */
  readonly onMessage: (message: JSONRPCMessage, length: number) => void;
  /**
   * A large successful answer as the upstream's bytes (`RawAnswer`), instead
   * of to `onMessage`: it passes on with only its id rewritten. Absent: every
   * answer is parsed.
   */
  readonly onAnswer?: ((answer: RawAnswer) => void) | undefined;
  /** A message that is no JSON-RPC, dropped. */
  readonly onMalformed: (length: number) => void;
}

/**
 * One POST to the upstream on a keep-alive connection, its answer read as it
 * arrives: the request path of a shared-mode session, written on node:http
 * because fetch costs a web-streams pipeline, abort controllers and a
 * zod parse per message on every call (bench/REPORT.md, issue 16). Rejects
 * with the socket's error when the request could not be sent or the
 * connection closed before the status line.
 */
export function post(request: Post): Promise<PostOutcome> {
  const send = request.url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(request.url, { method: 'POST', agent: agentFor(request.url), headers: request.headers }, (response) => {
      void read(response, request).then(resolve, reject);
    });
    outgoing.once('error', reject);
    outgoing.end(request.body);
  });
}

/** The keep-alive agent every session shares for the URL's scheme. */
export function agentFor(url: URL): HttpAgent {
  return url.protocol === 'https:' ? AGENTS['https:'] : AGENTS['http:'];
}

async function read(response: IncomingMessage, request: Post): Promise<PostOutcome> {
  const status = response.statusCode ?? 0;
  const contentType = response.headers['content-type']?.split(';', 1)[0]?.trim().toLowerCase();
  if (status === 202) {
    response.resume();
    return { kind: 'accepted' };
  }
  if (status < 200 || status >= 300) return { kind: 'refused', status, text: await textOf(response) };
  if (contentType === 'text/event-stream') return readEvents(response, request);
  if (contentType !== 'application/json') {
    response.resume();
    return { kind: 'unexpected', contentType };
  }
  const chunks = await chunksOf(response);
  const raw = rawAnswer(chunks, byteLength(chunks), request);
  if (raw !== undefined) {
    request.onAnswer?.(raw);
    return { kind: 'delivered', answered: true, lastEventId: undefined };
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let answered = false;
  const parsed: unknown = text === '' ? [] : JSON.parse(text);
  const messages: unknown[] = Array.isArray(parsed) ? parsed : [parsed];
  for (const message of messages) {
    const length = messages.length === 1 ? text.length : JSON.stringify(message).length;
    answered = hand(message, length, request) || answered;
  }
  return { kind: 'delivered', answered, lastEventId: undefined };
}

/** The SSE body, each event's message handed on as it comes; resolves when the stream ends, cut or not. */
function readEvents(response: IncomingMessage, request: Post): Promise<PostOutcome> {
  let answered = false;
  const reader = new SseReader((event) => {
    answered = handEvent(event, request) || answered;
  });
  response.on('data', (chunk: Buffer) => reader.push(chunk));
  // A cut stream errors ("aborted") before it closes: the close says it ended either way.
  response.on('error', () => undefined);
  return new Promise((resolve) => response.once('close', () => resolve({ kind: 'delivered', answered, lastEventId: reader.lastEventId })));
}

/** One event of an SSE stream (a POST's or the GET stream) handed on: raw when it is a large answer, parsed otherwise; true for a response. */
export function handEvent(event: SseEvent, request: Pick<Post, 'onMessage' | 'onAnswer' | 'onMalformed'>): boolean {
  if (event.length === 0 || (event.event !== undefined && event.event !== 'message')) return false;
  const raw = rawAnswer(event.data, event.length, request);
  if (raw !== undefined) {
    request.onAnswer?.(raw);
    return true;
  }
  let message: unknown;
  try {
    message = JSON.parse(eventText(event));
  } catch {
    request.onMalformed(event.length);
    return false;
  }
  return hand(message, event.length, request);
}

/** A large successful answer kept as bytes, when the session takes answers so (RAW_ANSWER_MIN_BYTES, as a child's lines). */
function rawAnswer(chunks: readonly Buffer[], length: number, request: Pick<Post, 'onAnswer'>): RawAnswer | undefined {
  if (request.onAnswer === undefined || length < RAW_ANSWER_MIN_BYTES) return undefined;
  return RawAnswer.scan(chunks);
}

/** Hands a parsed message on; true when it is a response. */
function hand(message: unknown, length: number, request: Pick<Post, 'onMessage' | 'onMalformed'>): boolean {
  if (!isJsonRpcMessage(message)) {
    request.onMalformed(length);
    return false;
  }
  request.onMessage(message, length);
  return !('method' in message);
}

async function textOf(response: IncomingMessage): Promise<string> {
  return Buffer.concat(await chunksOf(response)).toString('utf8');
}

/** The whole body, as the chunks it arrived in. */
function chunksOf(response: IncomingMessage): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.on('error', () => undefined);
    response.once('close', () => resolve(chunks));
  });
}

/** The upstream answered a POST with a status that is no success (after one retry with a new token, for 401). */
export class UpstreamHttpError extends BrokerError {
  readonly status: number;

  constructor(status: number, text: string) {
    super('child_failed', `the MCP server answered ${status}${text === '' ? '' : `: ${text.slice(0, 200)}`}`);
    this.status = status;
  }
}

/** The socket error of a request: node:http's own, or the cause of fetch's TypeError (the SDK transport's requests). */
function socketErrorCode(error: unknown): unknown {
  if (error instanceof TypeError) return (error as { cause?: { code?: unknown } }).cause?.code;
  return (error as { code?: unknown } | undefined)?.code;
}

/** The request went out and the upstream closed the connection without an answer (its write timeout, or it died). */
export function connectionCut(error: unknown): boolean {
  const code = socketErrorCode(error);
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET';
}

/** No byte reached the upstream: nothing listens there (it died, or is restarting). */
export function connectionRefused(error: unknown): boolean {
  return socketErrorCode(error) === 'ECONNREFUSED';
}
