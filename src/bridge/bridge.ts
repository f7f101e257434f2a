import type { IncomingMessage, ServerResponse } from 'node:http';
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node';
import type {
  EventStore,
  JSONRPCMessage,
  JSONRPCNotification,
  JSONRPCRequest,
  RequestId,
} from '@modelcontextprotocol/server';
import { isJSONRPCNotification, isJSONRPCRequest, isJSONRPCErrorResponse, isJSONRPCResultResponse } from '@modelcontextprotocol/server';
import { BrokerError, errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { Child } from '../supervisor/child.js';
import { idKey } from './ids.js';

/** JSON-RPC error codes the broker itself answers with. */
export const BRIDGE_ERROR = {
  /** The child ended or was replaced before it answered. */
  childGone: -32603,
  /** No answer within the broker's request timeout. */
  timeout: -32001,
} as const;

export interface BridgeOptions {
  readonly sessionId: string;
  readonly log: Logger;
  /** Longest wait for a child's answer before the client gets an error. */
  readonly requestTimeoutMs: number;
  /** After a swap, how long requests still running on the old child may take. */
  readonly drainGraceMs: number;
  readonly eventStore?: EventStore;
  /** Called once when the session ends: DELETE, child exit or close(). */
  readonly onClosed: (reason: string) => void;
}

/** A child as the bridge uses it: the process plus its bookkeeping. */
interface Link {
  readonly child: Child;
  readonly generation: number;
  /** Client requests forwarded to this child and not yet answered. */
  inflight: number;
  retiring: boolean;
  /** Resolves when a retiring link has no request in flight. */
  drained: (() => void) | undefined;
}

interface PendingRequest {
  readonly clientId: RequestId;
  readonly method: string;
  readonly params: JSONRPCRequest['params'];
  readonly progressToken: string | number | undefined;
  /** Set when the broker itself asked (initialize replay); the answer goes here, not to the client. */
  readonly internal: ((message: JSONRPCMessage) => void) | undefined;
  link: Link | undefined;
  timer: NodeJS.Timeout | undefined;
}

interface ServerRequest {
  readonly link: Link;
  readonly originalId: RequestId;
}

/**
 * Bridges one MCP session's Streamable HTTP traffic to a child's stdio.
 *
 * The SDK's Streamable HTTP server transport owns the HTTP side (SSE and JSON
 * responses, the GET stream, DELETE, header checks, resumption); the bridge
 * owns the routing. Every id that crosses to a child is the bridge's own, so
 * a child can be replaced under a live session (token rotation) without a
 * collision between the old child's and the new child's requests, and
 * answers always go back where their request came from.
 */
export class SessionBridge {
  readonly transport: NodeStreamableHTTPServerTransport;
  private current: Link;
  private generation = 0;
  private nextChildId = 1;
  private nextServerRequestId = 1;
  private readonly pending = new Map<number, PendingRequest>();
  private readonly childIdByClientId = new Map<string, number>();
  private readonly clientIdByProgressToken = new Map<string | number, RequestId>();
  private readonly serverRequests = new Map<number, ServerRequest>();
  private readonly openGetStreams = new Set<ServerResponse>();
  /** Client messages held while a replacement child is being initialised. */
  private held: JSONRPCMessage[] | undefined;
  private outbound: Promise<void> = Promise.resolve();
  private initializeRequest: JSONRPCRequest | undefined;
  private initializedNotified = false;
  private negotiatedVersion: string | undefined;
  /** Client state a replacement child must also receive, in order. */
  private logLevel: JSONRPCRequest['params'] | undefined;
  private readonly subscriptions = new Set<string>();
  private closing: Promise<void> | undefined;
  private swapping: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(
    child: Child,
    private readonly options: BridgeOptions,
  ) {
    this.log = options.log;
    this.transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => options.sessionId,
      eventStore: options.eventStore,
      onsessionclosed: () => {
        void this.close('client_delete');
      },
    });
    this.transport.onmessage = (message) => this.fromClient(message);
    this.transport.onerror = (error) => this.log.debug({ event: 'transport_error', err: errorMessage(error) });
    this.current = this.attach(child);
  }

  get sessionId(): string {
    return this.options.sessionId;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** The protocol version the child agreed to at initialize, once known. */
  get protocolVersion(): string | undefined {
    return this.negotiatedVersion;
  }

  /** The child currently serving new requests. */
  get child(): Child {
    return this.current.child;
  }

  /** Client requests waiting for an answer, across all of this session's children. */
  get inflight(): number {
    return this.pending.size;
  }

  /** Serves one HTTP request of this session. */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void> {
    if (req.method === 'GET') {
      this.openGetStreams.add(res);
      res.once('close', () => this.openGetStreams.delete(res));
    }
    await this.transport.handleRequest(req, res, parsedBody);
  }

  /**
   * Moves the session onto a new child without the client noticing: the new
   * child gets the client's original initialize (and the state set since)
   * before any new request reaches it; requests still running on the old child
   * finish there, within the drain grace period; then the old child stops.
   * If the new child cannot be initialised, the old one stays and this throws.
   */
  swapChild(child: Child): Promise<void> {
    const run = this.swapping.then(() => this.swap(child));
    this.swapping = run.catch(() => undefined);
    return run;
  }

  /** Ends the session: every waiting client request is answered with an error, every child stops. */
  close(reason: string): Promise<void> {
    this.closing ??= this.shutdown(reason);
    return this.closing;
  }

  private async shutdown(reason: string): Promise<void> {
    this.log.info({ event: 'session_closed', reason }, 'session closed');
    this.options.onClosed(reason);
    for (const [childId, pending] of this.pending) {
      this.failPending(childId, pending, BRIDGE_ERROR.childGone, 'The MCP session ended before the server answered');
    }
    this.held = undefined;
    const links = new Set<Link>([this.current, ...[...this.serverRequests.values()].map((entry) => entry.link)]);
    await Promise.all([...links].map((link) => link.child.stop()));
    await this.outbound;
    await this.transport.close();
  }

  private async swap(child: Child): Promise<void> {
    if (this.closed) {
      await child.stop();
      throw new BrokerError('not_found', 'session ended before the swap');
    }
    const next = this.attach(child);
    this.held = [];
    try {
      await this.replayState(next);
    } catch (error) {
      this.release(this.current);
      await child.stop();
      throw new BrokerError('child_failed', `replacement child could not be initialised: ${errorMessage(error)}`, { cause: error });
    }
    const old = this.current;
    this.current = next;
    this.release(next);
    this.log.info({ event: 'child_swapped', from: old.generation, to: next.generation, inflight: old.inflight }, 'session moved to a new child');
    await this.retire(old);
  }

  /** Replays what the client told the first child, so the new one is in the same state. */
  private async replayState(link: Link): Promise<void> {
    const initialize = this.initializeRequest;
    if (initialize === undefined) return;
    const answer = await this.internalRequest(link, initialize.method, initialize.params);
    if (isJSONRPCErrorResponse(answer)) throw new Error(`initialize failed: ${answer.error.message}`);
    if (this.initializedNotified) link.child.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (this.logLevel !== undefined) await this.internalRequest(link, 'logging/setLevel', this.logLevel);
    for (const uri of this.subscriptions) await this.internalRequest(link, 'resources/subscribe', { uri });
  }

  private internalRequest(link: Link, method: string, params: JSONRPCRequest['params']): Promise<JSONRPCMessage> {
    return new Promise((resolve, reject) => {
      const childId = this.nextChildId++;
      const pending: PendingRequest = {
        clientId: childId,
        method,
        params,
        progressToken: undefined,
        internal: resolve,
        link,
        timer: undefined,
      };
      pending.timer = setTimeout(() => {
        this.forget(childId, pending);
        reject(new Error(`${method} timed out`));
      }, this.options.requestTimeoutMs);
      this.pending.set(childId, pending);
      link.inflight++;
      void link.child.exited.then(() => reject(new Error(`child exited during ${method}`)));
      link.child.send({ jsonrpc: '2.0', id: childId, method, ...(params === undefined ? {} : { params }) });
    });
  }

  private release(link: Link): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const message of held) this.toChild(link, message);
  }

  private async retire(link: Link): Promise<void> {
    link.retiring = true;
    if (link.inflight > 0) {
      const drained = new Promise<void>((resolve) => (link.drained = resolve));
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.drainGraceMs)));
      await Promise.race([drained, grace]);
      clearTimeout(timer);
    }
    for (const [childId, pending] of this.pending) {
      if (pending.link === link) this.failPending(childId, pending, BRIDGE_ERROR.childGone, 'The server was restarted with a new token before it answered');
    }
    for (const [brokerId, entry] of this.serverRequests) if (entry.link === link) this.serverRequests.delete(brokerId);
    await link.child.stop();
  }

  private attach(child: Child): Link {
    const link: Link = { child, generation: this.generation++, inflight: 0, retiring: false, drained: undefined };
    child.onmessage = (message) => this.fromChild(link, message);
    void child.exited.then((exit) => this.childExited(link, exit.code, exit.signal));
    return link;
  }

  private childExited(link: Link, code: number | null, signal: string | null): void {
    for (const [childId, pending] of this.pending) {
      if (pending.link === link) {
        this.failPending(childId, pending, BRIDGE_ERROR.childGone, `The MCP server exited (${signal ?? `code ${code}`}) before it answered`);
      }
    }
    // A retired child's exit is expected; only the current child's exit ends the session.
    if (link === this.current && !link.retiring) void this.close('child_exit');
  }

  // Client → child

  private fromClient(message: JSONRPCMessage): void {
    if (isJSONRPCRequest(message)) {
      this.trackClientRequest(message);
      return;
    }
    if (isJSONRPCNotification(message)) {
      this.fromClientNotification(message);
      return;
    }
    // A response to a request a child sent: back to that very child, under its own id.
    const id = message.id;
    const entry = typeof id === 'number' ? this.serverRequests.get(id) : undefined;
    if (typeof id !== 'number' || entry === undefined) {
      this.log.debug({ event: 'client_response_unmatched' }, 'client answered an unknown server request; dropped');
      return;
    }
    this.serverRequests.delete(id);
    entry.link.child.send({ ...message, id: entry.originalId });
  }

  private trackClientRequest(request: JSONRPCRequest): void {
    if (request.method === 'initialize') this.initializeRequest = request;
    const childId = this.nextChildId++;
    const meta = request.params?._meta as { progressToken?: unknown } | undefined;
    const token = meta?.progressToken;
    const progressToken = typeof token === 'string' || typeof token === 'number' ? token : undefined;
    const pending: PendingRequest = {
      clientId: request.id,
      method: request.method,
      params: request.params,
      progressToken,
      internal: undefined,
      link: undefined,
      timer: undefined,
    };
    this.pending.set(childId, pending);
    this.childIdByClientId.set(idKey(request.id), childId);
    if (progressToken !== undefined) this.clientIdByProgressToken.set(progressToken, request.id);
    this.armTimeout(childId, pending);
    this.dispatch({ ...request, id: childId });
  }

  private fromClientNotification(notification: JSONRPCNotification): void {
    if (notification.method === 'notifications/initialized') this.initializedNotified = true;
    if (notification.method === 'notifications/cancelled') {
      const requestId = (notification.params as { requestId?: RequestId } | undefined)?.requestId;
      const childId = requestId === undefined ? undefined : this.childIdByClientId.get(idKey(requestId));
      const pending = childId === undefined ? undefined : this.pending.get(childId);
      if (childId === undefined || pending === undefined) return;
      // The client gave up: no answer is owed, and the request's stream can end.
      this.forget(childId, pending);
      if (pending.link !== undefined) {
        pending.link.child.send({ ...notification, params: { ...notification.params, requestId: childId } });
      }
      this.transport.closeSSEStream(pending.clientId);
      return;
    }
    this.dispatch(notification);
  }

  /** Sends to the current child, or holds the message while a new child is being initialised. */
  private dispatch(message: JSONRPCMessage): void {
    if (this.held !== undefined) {
      this.held.push(message);
      return;
    }
    this.toChild(this.current, message);
  }

  private toChild(link: Link, message: JSONRPCMessage): void {
    if (isJSONRPCRequest(message) && typeof message.id === 'number') {
      const pending = this.pending.get(message.id);
      if (pending === undefined) return;
      pending.link = link;
      link.inflight++;
    }
    if (!link.child.send(message) && isJSONRPCRequest(message) && typeof message.id === 'number') {
      const pending = this.pending.get(message.id);
      if (pending !== undefined) this.failPending(message.id, pending, BRIDGE_ERROR.childGone, 'The MCP server is not running');
    }
  }

  // Child → client

  private fromChild(link: Link, message: JSONRPCMessage): void {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      this.fromChildResponse(link, message);
      return;
    }
    if (isJSONRPCRequest(message)) {
      const brokerId = this.nextServerRequestId++;
      this.serverRequests.set(brokerId, { link, originalId: message.id });
      this.toClient({ ...message, id: brokerId }, this.relatedRequest(link));
      return;
    }
    if (isJSONRPCNotification(message)) this.fromChildNotification(link, message);
  }

  private fromChildResponse(link: Link, message: JSONRPCMessage & { id?: RequestId }): void {
    const childId = message.id;
    const pending = typeof childId === 'number' ? this.pending.get(childId) : undefined;
    if (typeof childId !== 'number' || pending === undefined || pending.link !== link) {
      this.log.debug({ event: 'child_response_unmatched' }, 'child answered a request the broker no longer waits for; dropped');
      return;
    }
    this.forget(childId, pending);
    if (pending.internal !== undefined) {
      pending.internal(message);
      return;
    }
    if (isJSONRPCResultResponse(message)) this.rememberState(pending, message.result);
    this.toClient({ ...message, id: pending.clientId }, undefined);
  }

  private fromChildNotification(link: Link, notification: JSONRPCNotification): void {
    const params = notification.params;
    if (notification.method === 'notifications/progress') {
      const token = params?.progressToken;
      const clientId = typeof token === 'string' || typeof token === 'number' ? this.clientIdByProgressToken.get(token) : undefined;
      if (clientId === undefined) return;
      const childId = this.childIdByClientId.get(idKey(clientId));
      const pending = childId === undefined ? undefined : this.pending.get(childId);
      // Progress proves the child is working: the timeout starts again.
      if (childId !== undefined && pending !== undefined) this.armTimeout(childId, pending);
      this.toClient(notification, clientId);
      return;
    }
    if (notification.method === 'notifications/cancelled') {
      // The child withdrew one of its own requests: rename it to the id the client saw.
      const originalId = params?.requestId as RequestId | undefined;
      for (const [brokerId, entry] of this.serverRequests) {
        if (entry.link === link && entry.originalId === originalId) {
          this.serverRequests.delete(brokerId);
          this.toClient({ ...notification, params: { ...params, requestId: brokerId } }, this.relatedRequest(link));
          return;
        }
      }
      return;
    }
    const standalone = notification.method.endsWith('/list_changed') || notification.method === 'notifications/resources/updated';
    this.toClient(notification, standalone ? undefined : this.relatedRequest(link));
  }

  /**
   * Which client request a child's own request or notification belongs to.
   * stdio carries no such relation, so: the one request in flight on that
   * child; with several, the GET stream when one is open (it reaches the
   * client either way), else the newest request.
   */
  private relatedRequest(link: Link): RequestId | undefined {
    let newest: PendingRequest | undefined;
    let count = 0;
    for (const pending of this.pending.values()) {
      if (pending.link !== link || pending.internal !== undefined) continue;
      count++;
      newest = pending;
    }
    if (count === 0) return undefined;
    if (count > 1 && this.hasGetStream()) return undefined;
    return newest?.clientId;
  }

  private hasGetStream(): boolean {
    for (const res of this.openGetStreams) {
      if (res.headersSent && res.statusCode === 200 && !res.writableEnded) return true;
    }
    return false;
  }

  private toClient(message: JSONRPCMessage, relatedRequestId: RequestId | undefined): void {
    // Chained so messages leave in the order the child sent them.
    this.outbound = this.outbound.then(async () => {
      try {
        await this.transport.send(message, relatedRequestId === undefined ? undefined : { relatedRequestId });
      } catch (error) {
        this.log.debug({ event: 'client_send_failed', err: errorMessage(error) }, 'message for the client could not be delivered');
      }
    });
  }

  /** Remembers what a replacement child must be told again. */
  private rememberState(pending: PendingRequest, result: unknown): void {
    const params = pending.params;
    switch (pending.method) {
      case 'initialize':
        this.negotiatedVersion = (result as { protocolVersion?: string } | undefined)?.protocolVersion;
        break;
      case 'logging/setLevel':
        this.logLevel = pending.params;
        break;
      case 'resources/subscribe':
        if (typeof params?.uri === 'string') this.subscriptions.add(params.uri);
        break;
      case 'resources/unsubscribe':
        if (typeof params?.uri === 'string') this.subscriptions.delete(params.uri);
        break;
    }
  }

  private armTimeout(childId: number, pending: PendingRequest): void {
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    pending.timer = setTimeout(() => {
      const link = pending.link;
      this.failPending(childId, pending, BRIDGE_ERROR.timeout, `The MCP server did not answer within ${this.options.requestTimeoutMs} ms`);
      link?.child.send({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: childId, reason: 'timed out at the broker' },
      });
    }, this.options.requestTimeoutMs);
    pending.timer.unref();
  }

  private failPending(childId: number, pending: PendingRequest, code: number, message: string): void {
    this.forget(childId, pending);
    if (pending.internal !== undefined) return;
    this.toClient({ jsonrpc: '2.0', id: pending.clientId, error: { code, message } }, undefined);
  }

  private forget(childId: number, pending: PendingRequest): void {
    if (!this.pending.delete(childId)) return;
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (pending.internal === undefined) {
      this.childIdByClientId.delete(idKey(pending.clientId));
      if (pending.progressToken !== undefined) this.clientIdByProgressToken.delete(pending.progressToken);
    }
    const link = pending.link;
    if (link === undefined) return;
    link.inflight--;
    if (link.retiring && link.inflight === 0) link.drained?.();
  }
}
