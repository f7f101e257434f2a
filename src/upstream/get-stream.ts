import { request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import { agentFor } from './post.js';
import { SseReader, type SseEvent } from './sse-reader.js';

/** GET streams end every 30 s at forgejo-mcp (its write timeout): reopened at once, then with backoff while it is down. */
const FIRST_RETRY_MS = 10;
const RETRY_GROWTH = 3;
const MAX_RETRY_MS = 5_000;

export interface GetStreamOptions {
  readonly url: URL;
  /** The token the next attempt acts with. */
  readonly token: () => string;
  /** The session's headers (its id, the protocol version) with a token. */
  readonly headers: (token: string) => OutgoingHttpHeaders;
  readonly onEvent: (event: SseEvent) => void;
  /** The upstream answered 401 to this token: resolves once a new one is in place, rejects once the credential ended. */
  readonly refused: (token: string) => Promise<void>;
  /** The upstream answered 404: it forgot the session (a new one is the session's business, with a stream of its own). */
  readonly forgotten: () => void;
  readonly log: Logger;
}

/**
 * When a session holds one: only once someone needs what it carries. It
 * carries the server's messages that belong to no request (list_changed,
 * resources/updated, log messages, its own requests); the spec lets a client
 * open it or not (2025-11-25, transports, "Listening for Messages from the
 * Server": MAY), and a server without one for the session drops them (a
 * request's stream SHOULD carry only what relates to it). Such messages reach a
 * client only over the client's own stream, so the upstream's is opened when
 * the client opens one (a legacy GET stream: before the broker accepts it, so
 * nothing the client causes after is lost), and for the broker's own modern
 * channel from its handshake on (it keeps the tool list until list_changed).
 * Once opened it is held for the session's life: a client's stream that drops
 * and resumes (Last-Event-ID) gets what was sent meanwhile from the broker's
 * event store, which has it only if the broker kept listening. A session
 * whose client never listens (most programmatic clients) costs the upstream
 * and the broker no socket, and its first call meets no GET at the upstream.
 *
 * A session's GET stream at the upstream, on node:http: one socket and an SSE reader, where
 * the SDK client transport's would be a fetch, a web-streams pipeline and
 * abort controllers per session, held for the session's life. It reopens
 * when the upstream ends it (resuming from the last event id the upstream
 * gave), until `close`. A 405 means the upstream offers none: nothing more
 * is tried (spec 2025-11-25, transports, "Listening for Messages from the
 * Server").
 */
export class GetStream {
  readonly #options: GetStreamOptions;
  #lastEventId: string | undefined;
  #request: ClientRequest | undefined;
  #timer: NodeJS.Timeout | undefined;
  #retryMs = FIRST_RETRY_MS;
  #closed = false;
  /** Settles once the first attempt has its answer: the stream is open, or it could not be. */
  readonly opened: Promise<void>;
  #firstAttempt!: () => void;

  constructor(options: GetStreamOptions) {
    this.#options = options;
    this.opened = new Promise((resolve) => (this.#firstAttempt = resolve));
    this.#open();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#request?.destroy();
    this.#request = undefined;
    this.#firstAttempt();
  }

  #open(): void {
    if (this.#closed) return;
    const url = this.#options.url;
    const token = this.#options.token();
    const headers: OutgoingHttpHeaders = { ...this.#options.headers(token), accept: 'text/event-stream' };
    if (this.#lastEventId !== undefined) headers['last-event-id'] = this.#lastEventId;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const request = send(url, { method: 'GET', agent: agentFor(url), headers }, (response) => this.#answered(request, response, token));
    request.once('error', (error) => {
      this.#options.log.debug({ event: 'upstream_stream_error', err: errorMessage(error) }, 'upstream GET stream error');
      this.#retry(request);
    });
    request.end();
    this.#request = request;
  }

  #answered(request: ClientRequest, response: IncomingMessage, token: string): void {
    const status = response.statusCode ?? 0;
    const contentType = response.headers['content-type']?.split(';', 1)[0]?.trim().toLowerCase();
    if (status === 200 && contentType === 'text/event-stream') {
      this.#firstAttempt();
      this.#retryMs = FIRST_RETRY_MS;
      const reader = new SseReader((event) => {
        this.#lastEventId = reader.lastEventId;
        this.#options.onEvent(event);
      });
      response.on('data', (chunk: Buffer) => reader.push(chunk));
      response.on('error', () => undefined);
      // Cut by the upstream's write deadline, or ended: listened to again at once.
      response.once('close', () => this.#retry(request));
      return;
    }
    response.resume();
    if (status === 405) {
      this.close();
      return;
    }
    if (status === 404) {
      this.close();
      this.#options.forgotten();
      return;
    }
    if (status === 401) {
      this.#request = undefined;
      this.#options.refused(token).then(
        () => this.#open(),
        () => this.close(),
      );
      return;
    }
    this.#options.log.debug({ event: 'upstream_stream_refused', status }, 'the upstream refused the GET stream');
    this.#retry(request);
  }

  /** The attempt `request` ended (refused, failed, or its stream closed): the next one, unless another already runs. */
  #retry(request: ClientRequest): void {
    if (this.#request !== request) return;
    this.#request = undefined;
    this.#firstAttempt();
    if (this.#closed) return;
    const delay = this.#retryMs;
    this.#retryMs = Math.min(delay * RETRY_GROWTH, MAX_RETRY_MS);
    this.#timer = setTimeout(() => this.#open(), delay);
  }
}

/**
 * Whether a client can be asked something (sampling, elicitation, roots). Such
 * a session listens from its handshake: the upstream may send its requests on
 * the GET stream (relating them to the call is a SHOULD), and one sent before
 * the stream is open is lost, while a client opens its own GET stream only
 * after its handshake, racing its first call.
 */
export function mayBeAsked(capabilities: { readonly [key: string]: unknown }): boolean {
  return capabilities.sampling !== undefined || capabilities.elicitation !== undefined || capabilities.roots !== undefined;
}
