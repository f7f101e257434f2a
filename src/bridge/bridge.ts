import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/server';
import { WebStandardStreamableHTTPServerTransport, isJSONRPCNotification, isJSONRPCRequest } from '@modelcontextprotocol/server';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { Child } from '../supervisor/child.js';
import { ChildChannel, type ClientResponse } from './channel.js';
import { SessionEventStore } from './event-store.js';

/** What a client is told to wait before reconnecting a lost SSE stream. */
const SSE_RETRY_MS = 1000;

/** Bodies the HTTP layer already read and parsed, handed to the transport with the request. */
const parsedBodies = new WeakMap<object, unknown>();

export interface BridgeOptions {
  readonly sessionId: string;
  readonly log: Logger;
  readonly requestTimeoutMs: number;
  readonly drainGraceMs: number;
  /** Called once when the session ends: DELETE, child exit or close(). */
  readonly onClosed: (reason: string) => void;
}

/**
 * One legacy-era MCP session: the SDK's Streamable HTTP server transport on
 * the client side (SSE and JSON responses, the GET stream, DELETE, header
 * checks, resumption) joined to a ChildChannel on the child side.
 */
export class SessionBridge {
  readonly transport: WebStandardStreamableHTTPServerTransport;
  readonly channel: ChildChannel;
  /** The SSE events kept for resumption (exposed for inspection). */
  readonly events = new SessionEventStore();
  /**
   * Node request -> Web Request -> transport -> Web Response -> Node response, one
   * adapter per session. Streamed bodies are marked chunked: otherwise the adapter,
   * having the SSE priming event but not yet the answer, waits a timer (>= 1 ms) for a
   * second chunk to compute a Content-Length, on every POST.
   */
  private readonly listener = getRequestListener(
    async (request, env: { incoming: object }) => {
      const response = await this.transport.handleRequest(request, { parsedBody: parsedBodies.get(env.incoming) });
      if (response.body !== null && !response.headers.has('content-length')) response.headers.set('transfer-encoding', 'chunked');
      return response;
    },
    { overrideGlobalObjects: false },
  );
  private outbound: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;

  constructor(
    child: Child,
    private readonly options: BridgeOptions,
  ) {
    this.transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => options.sessionId,
      // Resumability: every SSE event gets an id, and Last-Event-ID replays what a lost stream missed.
      eventStore: this.events,
      retryInterval: SSE_RETRY_MS,
      onsessionclosed: () => {
        void this.close('client_delete');
      },
    });
    this.transport.onmessage = (message) => this.fromClient(message);
    this.transport.onerror = (error) => options.log.debug({ event: 'transport_error', err: errorMessage(error) });
    this.channel = new ChildChannel(child, {
      log: options.log,
      requestTimeoutMs: options.requestTimeoutMs,
      drainGraceMs: options.drainGraceMs,
      onEnded: (reason) => void this.close(reason),
      // Not tied to a request: the GET stream, if the client opened one.
      onUnrelated: (message) => this.toClient(message, undefined),
    });
  }

  get sessionId(): string {
    return this.options.sessionId;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Serves one HTTP request of this session. */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void> {
    if (parsedBody !== undefined) parsedBodies.set(req, parsedBody);
    await this.listener(req, res);
  }

  /** Ends the session: waiting requests get an error, the child stops, the client's streams end. */
  close(reason: string): Promise<void> {
    this.closing ??= Promise.resolve().then(async () => {
      this.options.log.info({ event: 'session_closed', reason }, 'session closed');
      this.options.onClosed(reason);
      await this.channel.close(reason);
      await this.outbound;
      await this.transport.close();
    });
    return this.closing;
  }

  private fromClient(message: JSONRPCMessage): void {
    if (isJSONRPCRequest(message)) {
      const clientId = message.id;
      this.channel.request(message, {
        notify: (notification) => this.toClient(notification, clientId),
        serverRequest: (request) => this.toClient(request, clientId),
        respond: (response, lineLength) => {
          if (lineLength !== undefined) this.events.hintSize(response, lineLength);
          this.toClient(response, undefined);
        },
      });
      return;
    }
    if (isJSONRPCNotification(message)) {
      this.channel.notify(message);
      if (message.method === 'notifications/cancelled') {
        // No answer is owed for a cancelled request: its stream can end.
        const requestId = (message.params as { requestId?: RequestId } | undefined)?.requestId;
        if (requestId !== undefined) this.transport.closeSSEStream(requestId);
      }
      return;
    }
    if (!this.channel.answer(message as ClientResponse)) {
      this.options.log.debug({ event: 'client_response_unmatched' }, 'client answered an unknown server request; dropped');
    }
  }

  private toClient(message: JSONRPCMessage, relatedRequestId: RequestId | undefined): void {
    // Chained so messages leave in the order the child sent them.
    this.outbound = this.outbound.then(async () => {
      try {
        await this.transport.send(message, relatedRequestId === undefined ? undefined : { relatedRequestId });
      } catch (error) {
        this.options.log.debug({ event: 'client_send_failed', err: errorMessage(error) }, 'message for the client could not be delivered');
      }
    });
  }
}
