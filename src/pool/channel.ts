import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCNotification,
  JSONRPCRequest,
  JSONRPCResultResponse,
  RequestId,
} from '@modelcontextprotocol/server';
import { BrokerError, errorMessage } from '../errors/errors.js';
import { isErrorResponse, isNotification, isRequest, isResultResponse } from '../jsonrpc/messages.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { Logger } from '../log/logger.js';
import type { Child } from './child.js';
import { ClientState } from './client-state.js';
import type { Link, Pending } from './pending.js';
import { passThrough, type RawAnswer } from './raw-answer.js';
import type { ClientResponse, InflightRequest, RequestSink } from './request-sink.js';
import { ServerRequests } from './server-requests.js';

export interface ChannelOptions {
  readonly log: Logger;
  /** Longest wait for a child's answer (reset by progress) before the client gets an error. */
  readonly requestTimeoutMs: number;
  /** After a swap, how long requests still running on the old child may take. */
  readonly drainGraceMs: number;
  /** Called once when the channel ends: its current child exited, or close(). */
  readonly onEnded: (reason: string) => void;
  /** Messages from the child that belong to no request in flight (list_changed, resources/updated, …). */
  readonly onUnrelated: (message: JSONRPCNotification | JSONRPCRequest) => void;
}

/**
 * The traffic of one legacy session, or of one user's modern clients, to a
 * child that can be replaced under it.
 *
 * Every id that crosses to a child is the channel's own: client request ids,
 * progress tokens and the child's own request ids are all renamed, so
 * requests of several clients (the modern era shares one child per user) or
 * of an old and a new child (token rotation) never collide, and every answer
 * goes back where its request came from.
 */
export class ChildChannel {
  #current: Link;
  #generation = 0;
  #nextChildId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #serverRequests = new ServerRequests<Link, InflightRequest>();
  readonly #state = new ClientState();
  #ending: Promise<void> | undefined;
  #swapping: Promise<void> = Promise.resolve();
  readonly #log: Logger;

  readonly #options: ChannelOptions;

  constructor(child: Child, options: ChannelOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#current = this.#attach(child);
  }

  get ended(): boolean {
    return this.#ending !== undefined;
  }

  /** The protocol version the child agreed to at initialize, once known. */
  get protocolVersion(): string | undefined {
    return this.#state.protocolVersion;
  }

  /** The child currently serving new requests. */
  get child(): Child {
    return this.#current.child;
  }

  /** Client requests waiting for an answer, across all children of this channel. */
  get inflight(): number {
    let count = 0;
    for (const pending of this.#pending.values()) if (!pending.internal) count++;
    return count;
  }

  /**
   * Forwards a client request; everything the child says about it goes to the
   * sink. An internal request is the broker's own: it is not counted as
   * client traffic and the child's own requests are never attributed to it.
   */
  request(request: JSONRPCRequest, sink: RequestSink, options: { internal?: boolean; link?: Link } = {}): InflightRequest {
    const internal = options.internal ?? false;
    this.#state.requested(request);
    const childId = this.#nextChildId++;
    const meta = request.params?._meta;
    const token = meta?.progressToken;
    const progressToken = typeof token === 'string' || typeof token === 'number' ? token : undefined;
    const pending: Pending = {
      clientId: request.id,
      method: request.method,
      sink,
      params: request.params,
      progressToken,
      internal,
      link: undefined,
      timer: undefined,
    };
    this.#pending.set(childId, pending);
    this.#armTimeout(childId, pending);
    // The child sees the channel's id and progress token, never the client's.
    const params = progressToken === undefined ? request.params : { ...request.params, _meta: { ...meta, progressToken: childId } };
    const forwarded = { ...request, id: childId, ...(params === undefined ? {} : { params }) };
    if (options.link === undefined) this.#dispatch(forwarded);
    else this.#toChild(options.link, forwarded);
    return pending;
  }

  /** Sends a request of the broker's own to the current child; resolves with its answer, error or not. */
  call(method: string, params: JSONRPCRequest['params']): Promise<ClientResponse> {
    return this.#callOn(undefined, method, params);
  }

  /** Forwards a client notification (initialized, roots list_changed, …) to the current child. */
  notify(notification: JSONRPCNotification): void {
    this.#state.notified(notification);
    if (notification.method === 'notifications/cancelled') {
      const requestId = (notification.params as { requestId?: RequestId } | undefined)?.requestId;
      const found = requestId === undefined ? undefined : this.#findByClientId(requestId);
      if (found !== undefined)
        this.cancel(found, (notification.params as { reason?: string } | undefined)?.reason ?? 'cancelled by the client');
      return;
    }
    this.#dispatch(notification);
  }

  /** Passes the client's answer to a child's request back to that very child, under its own id. */
  answer(response: ClientResponse): boolean {
    const entry = this.#serverRequests.take(response.id);
    if (entry === undefined) return false;
    return entry.link.child.send({ ...response, id: entry.originalId });
  }

  /** The client gave up: the child is told, and no answer is owed any more. */
  cancel(request: InflightRequest, reason: string): void {
    for (const [childId, pending] of this.#pending) {
      if (pending !== request) continue;
      this.#forget(childId, pending);
      pending.link?.child.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: childId, reason } });
      return;
    }
  }

  /** Server requests of the child that are waiting for the client, for one request in flight. */
  waitingServerRequests(request: InflightRequest): number[] {
    return this.#serverRequests.idsDuring(request);
  }

  /** Answers a child's request on the client's behalf (a capability the client lacks, say). */
  refuseServerRequest(brokerId: number, code: number, message: string): void {
    this.answer({ jsonrpc: '2.0', id: brokerId, error: { code, message } });
  }

  /**
   * Moves the channel onto a new child without its clients noticing: the new
   * child gets the original initialize (and the state set since) before any
   * new request reaches it; requests still running on the old child finish
   * there, within the drain grace period; then the old child stops. If the
   * new child cannot be initialised, the old one stays and this throws.
   */
  swapChild(child: Child): Promise<void> {
    const run = this.#swapping.then(() => this.#swap(child));
    this.#swapping = run.catch(() => undefined);
    return run;
  }

  /** Ends the channel: every waiting request is answered with an error, every child stops. */
  close(reason: string): Promise<void> {
    // Marked ended at once, run a tick later: the shutdown calls back into owners that may call close() again.
    this.#ending ??= Promise.resolve().then(() => this.#shutdown(reason));
    return this.#ending;
  }

  async #shutdown(reason: string): Promise<void> {
    this.#options.onEnded(reason);
    for (const [childId, pending] of this.#pending) {
      this.#fail(childId, pending, JsonRpcCode.internalError, 'The MCP session ended before the server answered');
    }
    const links = new Set<Link>([this.#current, ...this.#serverRequests.links()]);
    await Promise.all([...links].map((link) => link.child.stop()));
  }

  async #swap(child: Child): Promise<void> {
    if (this.ended) {
      await child.stop();
      throw new BrokerError('not_found', 'the channel ended before the swap');
    }
    // Clients are not held up: new requests keep going to the current child until the new one is ready.
    const next = this.#attach(child);
    try {
      await this.#state.replay({
        request: (method, params) => this.#callOn(next, method, params),
        notify: (notification) => next.child.send(notification),
      });
    } catch (error) {
      await child.stop();
      throw new BrokerError('child_failed', `replacement child could not be initialised: ${errorMessage(error)}`, { cause: error });
    }
    if (this.ended) {
      // The channel ended while the new child was being told its state (a failed replay step
      // does not stop the replay): the shutdown never saw this child, so it stops here.
      await child.stop();
      throw new BrokerError('not_found', 'the channel ended during the swap');
    }
    const old = this.#current;
    this.#current = next;
    this.#log.info({ event: 'child_swapped', from: old.generation, to: next.generation, inflight: old.inflight }, 'moved to a new child');
    await this.#retire(old);
  }

  /** The broker's own request, to one particular child (the replay) or the current one. */
  #callOn(link: Link | undefined, method: string, params: JSONRPCRequest['params']): Promise<ClientResponse> {
    return new Promise((resolve) => {
      // The child's own requests are never attributed to an internal request, so the sink needs only the answer.
      const sink: RequestSink = { notify: () => undefined, serverRequest: () => undefined, respond: resolve };
      this.request({ jsonrpc: '2.0', id: `broker-${method}`, method, ...(params === undefined ? {} : { params }) }, sink, {
        internal: true,
        ...(link === undefined ? {} : { link }),
      });
    });
  }

  async #retire(link: Link): Promise<void> {
    link.retiring = true;
    if (link.inflight > 0) {
      const drained = new Promise<void>((resolve) => (link.drained = resolve));
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#options.drainGraceMs)));
      await Promise.race([drained, grace]);
      clearTimeout(timer);
    }
    for (const [childId, pending] of this.#pending) {
      if (pending.link === link)
        this.#fail(childId, pending, JsonRpcCode.internalError, 'The server was restarted with a new token before it answered');
    }
    this.#serverRequests.forgetLink(link);
    await link.child.stop();
  }

  #attach(child: Child): Link {
    const link: Link = { child, generation: this.#generation++, inflight: 0, retiring: false, drained: undefined };
    child.onmessage = (message, lineLength) => this.#fromChild(link, message, lineLength);
    child.onanswer = (answer) => this.#fromChildAnswer(link, answer);
    void child.exited.then((exit) => this.#childExited(link, exit.code, exit.signal));
    return link;
  }

  #childExited(link: Link, code: number | null, signal: string | null): void {
    for (const [childId, pending] of this.#pending) {
      if (pending.link === link)
        this.#fail(childId, pending, JsonRpcCode.internalError, `The MCP server exited (${signal ?? `code ${code}`}) before it answered`);
    }
    // A retired child's exit is expected; only the current child's exit ends the channel.
    if (link === this.#current && !link.retiring) void this.close('child_exit');
  }

  #findByClientId(clientId: RequestId): Pending | undefined {
    for (const pending of this.#pending.values()) if (!pending.internal && pending.clientId === clientId) return pending;
    return undefined;
  }

  /** Sends to the current child. */
  #dispatch(message: JSONRPCMessage): void {
    this.#toChild(this.#current, message);
  }

  #toChild(link: Link, message: JSONRPCMessage): void {
    const request = isRequest(message) ? message : undefined;
    const pending = typeof request?.id === 'number' ? this.#pending.get(request.id) : undefined;
    if (request !== undefined && pending === undefined) return; // cancelled before it left
    if (pending !== undefined) {
      pending.link = link;
      link.inflight++;
    }
    if (!link.child.send(message) && pending !== undefined) {
      this.#fail(request?.id as number, pending, JsonRpcCode.internalError, 'The MCP server is not running');
    }
  }

  #fromChild(link: Link, message: JSONRPCMessage, lineLength: number): void {
    if (isResultResponse(message) || isErrorResponse(message)) {
      this.#fromChildResponse(link, message, lineLength);
      return;
    }
    if (isRequest(message)) {
      const related = this.#relatedRequest(link);
      const brokerId = this.#serverRequests.add(link, message.id, related);
      const renamed = { ...message, id: brokerId };
      if (related === undefined) this.#options.onUnrelated(renamed);
      else related.sink.serverRequest(renamed);
      return;
    }
    if (isNotification(message)) this.#fromChildNotification(link, message);
  }

  #fromChildResponse(link: Link, message: JSONRPCResultResponse | JSONRPCErrorResponse, lineLength: number): void {
    const childId = message.id;
    const pending = typeof childId === 'number' ? this.#pending.get(childId) : undefined;
    if (typeof childId !== 'number' || pending === undefined || pending.link !== link) {
      this.#log.debug({ event: 'child_response_unmatched' }, 'child answered a request nobody waits for; dropped');
      return;
    }
    this.#forget(childId, pending);
    if (isResultResponse(message)) this.#state.succeeded(pending.method, pending.params, message.result);
    pending.sink.respond({ ...message, id: pending.clientId }, lineLength);
  }

  /** A large answer, kept as the child's bytes: only its id is renamed, on its way out. */
  #fromChildAnswer(link: Link, answer: RawAnswer): void {
    const childId = answer.id;
    const pending = typeof childId === 'number' ? this.#pending.get(childId) : undefined;
    // Unmatched ones are dropped there; the broker's own requests and initialize (whose result the channel keeps) read the result.
    if (pending === undefined || pending.link !== link || pending.internal || pending.method === 'initialize') {
      this.#fromChildResponse(link, answer.message(), answer.length);
      return;
    }
    this.#forget(childId as number, pending);
    // Only initialize's result is kept; the rest of the client state is the requests' params.
    this.#state.succeeded(pending.method, pending.params, undefined);
    pending.sink.respond(passThrough(answer, pending.clientId), answer.length);
  }

  #fromChildNotification(link: Link, notification: JSONRPCNotification): void {
    const params = notification.params;
    if (notification.method === 'notifications/progress') {
      const token = params?.progressToken;
      const pending = typeof token === 'number' ? this.#pending.get(token) : undefined;
      if (typeof token !== 'number' || pending === undefined || pending.progressToken === undefined) return;
      // Progress proves the child is working: the timeout starts again.
      this.#armTimeout(token, pending);
      pending.sink.notify({ ...notification, params: { ...params, progressToken: pending.progressToken } });
      return;
    }
    if (notification.method === 'notifications/cancelled') {
      // The child withdrew one of its own requests: rename it to the id the client saw.
      const withdrawn = this.#serverRequests.withdraw(link, params?.requestId as RequestId | undefined);
      if (withdrawn === undefined) return;
      const renamed = { ...notification, params: { ...params, requestId: withdrawn.brokerId } };
      if (withdrawn.entry.pending === undefined) this.#options.onUnrelated(renamed);
      else withdrawn.entry.pending.sink.notify(renamed);
      return;
    }
    const standalone = notification.method.endsWith('/list_changed') || notification.method === 'notifications/resources/updated';
    const related = standalone ? undefined : this.#relatedRequest(link);
    if (related === undefined) this.#options.onUnrelated(notification);
    else related.sink.notify(notification);
  }

  /**
   * Which client request a child's own request or notification belongs to.
   * stdio carries no such relation, so: the newest client request in flight
   * on that child (exact whenever one request runs at a time).
   */
  #relatedRequest(link: Link): Pending | undefined {
    let newest: Pending | undefined;
    for (const pending of this.#pending.values()) {
      if (pending.link === link && !pending.internal) newest = pending;
    }
    return newest;
  }

  #armTimeout(childId: number, pending: Pending): void {
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    pending.timer = setTimeout(() => {
      const link = pending.link;
      this.#fail(
        childId,
        pending,
        JsonRpcCode.upstreamTimeout,
        `The MCP server did not answer within ${this.#options.requestTimeoutMs} ms`,
      );
      link?.child.send({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: childId, reason: 'timed out at the broker' },
      });
    }, this.#options.requestTimeoutMs);
    pending.timer.unref();
  }

  #fail(childId: number, pending: Pending, code: number, message: string): void {
    this.#forget(childId, pending);
    pending.sink.respond({ jsonrpc: '2.0', id: pending.clientId, error: { code, message } });
  }

  #forget(childId: number, pending: Pending): void {
    if (!this.#pending.delete(childId)) return;
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    this.#serverRequests.forgetRequest(pending);
    const link = pending.link;
    if (link === undefined) return;
    link.inflight--;
    if (link.retiring && link.inflight === 0) link.drained?.();
  }
}
