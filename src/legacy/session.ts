import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type { JSONRPCMessage, JSONRPCRequest, RequestId } from '@modelcontextprotocol/server';
import {
  DEFAULT_NEGOTIATED_PROTOCOL_VERSION,
  SUPPORTED_PROTOCOL_VERSIONS,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import { errorMessage } from '../errors/errors.js';
import { isNotification, isRequest } from '../jsonrpc/messages.js';
import type { Logger } from '../log/logger.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { ChildChannel } from '../pool/channel.js';
import type { ChannelHandlers } from '../pool/pool.js';
import { passedThrough } from '../pool/raw-answer.js';
import type { ClientResponse, RequestSink } from '../pool/request-sink.js';
import type { GateDecision } from '../policy/gate.js';
import { SessionEventStore } from './event-store.js';
import { answerLostStream } from './lost-answers.js';
import { checkPost, checkResumption, SESSION_NOT_FOUND, sendRefusal, STREAM_CONNECTED, type TransportRefusal } from './post-checks.js';
import { PostStream, SSE_RETRY_MS } from './post-stream.js';

/**
 * A legacy request's body: one JSON-RPC message or a batch, every message
 * already checked against the JSON-RPC schemas (the endpoint's era
 * classification does it, so nothing here checks again); none for GET and DELETE.
 */
export type LegacyBody = JSONRPCMessage | JSONRPCMessage[] | undefined;

/** The first protocol revision whose POST streams open with an empty priming event (as the SDK transport decides). */
const FIRST_PRIMED_VERSION = '2025-11-25';

/** In place of `flushHeaders`: the head goes out with the first write. */
function keepHeadForFirstWrite(): void {}

/** Bodies the HTTP layer already read and parsed, handed to the transport with the request. */
const parsedBodies = new WeakMap<object, unknown>();
/** GET requests resuming another process's GET stream, whose events are gone: opened as a fresh stream instead. */
const freshStreams = new WeakSet<object>();

export interface LegacySessionOptions {
  readonly sessionId: string;
  readonly log: Logger;
  /**
   * Opens the session's channel from the pool, starting its child. Called only once the transport
   * has accepted the `initialize` (headers, content type, JSON-RPC shape), so a rejected request never starts one.
   */
  readonly openChannel: (handlers: Omit<ChannelHandlers, 'log'>) => Promise<ChildChannel>;
  /** The child answered `initialize` with success; called before the client sees the answer. From then on the session exists. */
  readonly onInitialized: () => void;
  /** Called once when the session ends: DELETE, child exit, a failed or rejected initialize, or close(). */
  readonly onClosed: (reason: string) => void;
  /** The tool policy and the audit log: what to forward a client request with, or the answer refusing it. */
  readonly guard?: (request: JSONRPCRequest, sink: RequestSink) => GateDecision;
}

/**
 * One legacy-era MCP session, joined to a ChildChannel on the child side. On
 * the client side, the SDK's Streamable HTTP server transport serves the
 * initialize, the GET stream, DELETE and the resumption of streams it wrote;
 * every later POST is answered here directly (`PostStream`), with the
 * transport's checks repeated (`post-checks.ts`): the transport's Web
 * Request/Response round trip, its second schema check and its
 * serialisation of every answer were most of a legacy request's CPU, and
 * copies of a large result (bench/REPORT.md, issue 16).
 */
export class LegacySession {
  readonly transport: WebStandardStreamableHTTPServerTransport;
  /** The session's own POST streams that still owe answers, by stream id. */
  readonly #posts = new Map<string, PostStream>();
  /** Set once the transport accepted the initialize and the child started. */
  #started: ChildChannel | undefined;
  /** Why the child could not be started; the initialize is answered with it. */
  #startFailure: unknown;
  /** The SSE events kept for resumption (exposed for inspection). */
  readonly events = new SessionEventStore();
  /**
   * Node request -> Web Request -> transport -> Web Response -> Node response, one
   * adapter per session. Streamed bodies are marked chunked: otherwise the adapter,
   * having the SSE priming event but not yet the answer, waits a timer (>= 1 ms) for a
   * second chunk to compute a Content-Length, on every POST.
   */
  readonly #listener = getRequestListener(
    async (request, env: { incoming: object }) => {
      if (freshStreams.has(env.incoming)) request = withoutLastEventId(request);
      const response = await this.transport.handleRequest(request, { parsedBody: parsedBodies.get(env.incoming) });
      if (response.body !== null && !response.headers.has('content-length')) response.headers.set('transfer-encoding', 'chunked');
      return response;
    },
    { overrideGlobalObjects: false },
  );
  #outbound: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;

  readonly #options: LegacySessionOptions;

  constructor(options: LegacySessionOptions) {
    this.#options = options;
    this.transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => options.sessionId,
      // Awaited by the transport after its checks and before it passes the initialize on.
      onsessioninitialized: () => this.#startChannel(),
      // Resumability: every SSE event gets an id, and Last-Event-ID replays what a lost stream missed.
      eventStore: this.events,
      retryInterval: SSE_RETRY_MS,
      onsessionclosed: () => {
        void this.close('client_delete');
      },
    });
    this.transport.onmessage = (message) => this.#fromTransport(message);
    this.transport.onerror = (error) => options.log.debug({ event: 'transport_error', err: errorMessage(error) });
  }

  get sessionId(): string {
    return this.#options.sessionId;
  }

  /** The session's channel to its child; a registered session always has one. */
  get channel(): ChildChannel {
    if (this.#started === undefined) throw new Error(`session ${this.#options.sessionId} has no child yet`);
    return this.#started;
  }

  /** Whether the transport accepted the initialize (and a child was started for it). */
  get accepted(): boolean {
    return this.#started !== undefined || this.#startFailure !== undefined;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Serves one HTTP request of this session. */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: LegacyBody): Promise<void> {
    const started = this.#started;
    if (req.method === 'POST' && parsedBody !== undefined && started !== undefined) {
      const messages = Array.isArray(parsedBody) ? parsedBody : [parsedBody];
      // An initialize on a live session is the transport's to refuse.
      if (!messages.some((message) => isRequest(message) && message.method === 'initialize')) {
        this.#post(req, res, messages, started);
        return;
      }
    }
    const lastEventId = req.headers['last-event-id'];
    if (req.method === 'GET' && typeof lastEventId === 'string') {
      if (!this.events.holds(lastEventId)) {
        // A stream of the process that held this session before (shared mode): its events died with it.
        if (answerLostStream(req, res)) return;
        freshStreams.add(req);
      } else {
        // A stream the session wrote that still owes answers: the transport would replay it, then close it as one it does not know.
        const stream = this.#posts.get(this.events.streamOf(lastEventId) ?? '');
        if (stream !== undefined) {
          this.#resume(req, res, stream, lastEventId);
          return;
        }
      }
    }
    if (parsedBody !== undefined) parsedBodies.set(req, parsedBody);
    const messages = parsedBody === undefined ? [] : Array.isArray(parsedBody) ? parsedBody : [parsedBody];
    const requestIds = messages.flatMap((message) => (isRequest(message) ? [message.id] : []));
    const release = req.method === 'POST' ? this.events.expectStream(requestIds) : undefined;
    // A POST stream's head leaves with its priming event (the adapter would flush it alone first): in one segment,
    // a connection reset cannot hand the client the head and lose the event id it needs to resume.
    if (req.method === 'POST') res.flushHeaders = keepHeadForFirstWrite;
    try {
      await this.#listener(req, res);
    } finally {
      release?.();
    }
  }

  /**
   * Carries on a session another broker process started (shared mode): the
   * client's original initialize and `notifications/initialized` go through
   * this session's transport as if the client had sent them again, so the
   * transport knows the session and the channel opens a new upstream session
   * with the client's parameters. The client sees none of it. Resolves with
   * whether the upstream accepted the initialize.
   */
  async adopt(initializeParams: unknown, protocolVersion: string): Promise<boolean> {
    const url = 'http://broker.invalid/mcp';
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const initialize = { jsonrpc: '2.0', id: 'broker-adopt', method: 'initialize', params: initializeParams };
    const answer = await this.transport.handleRequest(new Request(url, { method: 'POST', headers, body: JSON.stringify(initialize) }), {
      parsedBody: initialize,
    });
    const text = await answer.text();
    if (!answer.ok || this.#started === undefined || this.closed || !text.includes('"result"')) return false;
    const initialized = { jsonrpc: '2.0', method: 'notifications/initialized' };
    const sessionHeaders = { ...headers, 'mcp-session-id': this.#options.sessionId, 'mcp-protocol-version': protocolVersion };
    const ack = await this.transport.handleRequest(
      new Request(url, { method: 'POST', headers: sessionHeaders, body: JSON.stringify(initialized) }),
      { parsedBody: initialized },
    );
    await ack.text();
    return ack.ok && !this.closed;
  }

  /** Ends the session: waiting requests get an error, the child stops, the client's streams end. */
  close(reason: string): Promise<void> {
    this.#closing ??= Promise.resolve().then(async () => {
      // A request the transport refused never was a session: not worth an info line each.
      this.#options.log[this.accepted ? 'info' : 'debug']({ event: 'session_closed', reason }, 'session closed');
      this.#options.onClosed(reason);
      // Fails the requests still waiting, which ends their streams; a stream still open owes nothing more either.
      await this.#started?.close(reason);
      for (const stream of [...this.#posts.values()]) stream.close();
      await this.#outbound;
      await this.transport.close();
    });
    return this.#closing;
  }

  /** A POST after the initialize, answered here: 202 when it carries no request, else an SSE stream of its own. */
  #post(req: IncomingMessage, res: ServerResponse, messages: JSONRPCMessage[], channel: ChildChannel): void {
    const refusal = this.closed ? SESSION_NOT_FOUND : checkPost(req, this.sessionId, messages.length);
    if (refusal !== undefined) {
      this.#refuse(res, refusal);
      return;
    }
    const requestIds = messages.flatMap((message) => (isRequest(message) ? [message.id] : []));
    if (requestIds.length === 0) {
      for (const message of messages) this.#fromClient(message, channel, undefined);
      res.writeHead(202).end();
      return;
    }
    const stream = new PostStream({
      events: this.events,
      sessionId: this.sessionId,
      requestIds,
      onDone: (done) => this.#posts.delete(done.id),
    });
    this.#posts.set(stream.id, stream);
    const version = single(req.headers['mcp-protocol-version']) ?? DEFAULT_NEGOTIATED_PROTOCOL_VERSION;
    stream.open(res, SUPPORTED_PROTOCOL_VERSIONS.includes(version) && version >= FIRST_PRIMED_VERSION);
    for (const message of messages) this.#fromClient(message, channel, stream);
  }

  /** A resumption of one of this session's own streams that still owes answers: what was missed, then the stream goes on there. */
  #resume(req: IncomingMessage, res: ServerResponse, stream: PostStream, lastEventId: string): void {
    const refusal = checkResumption(req, this.sessionId) ?? (stream.connected ? STREAM_CONNECTED : undefined);
    if (refusal !== undefined) {
      this.#refuse(res, refusal);
      return;
    }
    stream.resume(res, lastEventId);
  }

  #refuse(res: ServerResponse, refusal: TransportRefusal): void {
    // As the transport reports the requests it refuses.
    this.#options.log.debug({ event: 'transport_error', err: refusal.message });
    sendRefusal(res, refusal);
  }

  async #startChannel(): Promise<void> {
    try {
      this.#started = await this.#options.openChannel({
        onEnded: (reason) => void this.close(reason),
        // Not tied to a request: the GET stream, if the client opened one.
        onUnrelated: (message) => this.#toClient(message, undefined),
      });
    } catch (error) {
      this.#startFailure = error;
      return;
    }
    // Ended while the child started (the broker stopping, the init timeout): the child goes too.
    if (this.closed) await this.#started.close('session_closed');
  }

  /** What the transport passes on: the initialize and what comes with it, and an adopted session's replayed handshake. */
  #fromTransport(message: JSONRPCMessage): void {
    const channel = this.#started;
    if (channel !== undefined) {
      this.#fromClient(message, channel, undefined);
      return;
    }
    // Only the initialize gets here without a channel: its child did not start.
    this.#options.log.error({ event: 'child_spawn_failed', err: errorMessage(this.#startFailure) }, 'could not start the MCP server');
    if (isRequest(message)) {
      this.#toClient(
        { jsonrpc: '2.0', id: message.id, error: { code: JsonRpcCode.internalError, message: 'The MCP server could not be started' } },
        undefined,
      );
    }
    void this.close('child_start_failed');
  }

  /** One message of the client; what a request brings back goes to `stream`, or through the transport when there is none. */
  #fromClient(message: JSONRPCMessage, channel: ChildChannel, stream: PostStream | undefined): void {
    if (isRequest(message)) {
      this.#request(message, channel, stream);
      return;
    }
    if (isNotification(message)) {
      channel.notify(message);
      if (message.method === 'notifications/cancelled') {
        // No answer is owed for a cancelled request: its stream can end.
        const requestId = (message.params as { requestId?: RequestId } | undefined)?.requestId;
        if (requestId !== undefined) for (const post of [...this.#posts.values()]) post.cancel(requestId);
      }
      return;
    }
    if (!channel.answer(message as ClientResponse)) {
      this.#options.log.debug({ event: 'client_response_unmatched' }, 'client answered an unknown server request; dropped');
    }
  }

  #request(request: JSONRPCRequest, channel: ChildChannel, stream: PostStream | undefined): void {
    const clientId = request.id;
    const initialize = request.method === 'initialize';
    const toClient = (message: JSONRPCMessage): void => {
      if (stream === undefined) this.#toClient(message, clientId);
      else stream.send(message);
    };
    const sink: RequestSink = {
      notify: toClient,
      serverRequest: toClient,
      respond: (answer, lineLength) => {
        const initialized = initialize && 'result' in answer;
        if (initialized) this.#options.onInitialized();
        if (stream !== undefined) {
          stream.send(answer, lineLength);
        } else {
          // The SDK transport serialises the answer anyway: the resumption store keeps the parsed form, not the child's bytes as well.
          const response = passedThrough(answer) === undefined ? answer : { ...answer };
          if (lineLength !== undefined) this.events.hintSize(response, lineLength);
          this.#toClient(response, undefined);
        }
        // A session exists only once its initialize succeeded; the client got the error and nothing stays.
        if (initialize && !initialized) void this.close('initialize_failed');
      },
    };
    const decision = this.#options.guard?.(request, sink) ?? { sink };
    if ('refused' in decision) toClient(decision.refused);
    else channel.request(request, decision.sink);
  }

  #toClient(message: JSONRPCMessage, relatedRequestId: RequestId | undefined): void {
    // Chained so messages leave in the order the child sent them.
    this.#outbound = this.#outbound.then(async () => {
      try {
        await this.transport.send(message, relatedRequestId === undefined ? undefined : { relatedRequestId });
      } catch (error) {
        this.#options.log.debug({ event: 'client_send_failed', err: errorMessage(error) }, 'message for the client could not be delivered');
      }
    });
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function withoutLastEventId(request: Request): Request {
  const headers = new Headers(request.headers);
  headers.delete('last-event-id');
  return new Request(request.url, { method: request.method, headers });
}
