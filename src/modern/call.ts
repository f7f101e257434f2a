import { randomBytes } from 'node:crypto';
import type { ClientCapabilities, JSONRPCNotification, JSONRPCRequest, LoggingLevel, RequestId } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import { withId } from '../pool/raw-answer.js';
import type { ClientResponse, InflightRequest, RequestSink } from '../pool/request-sink.js';
import { LOG_SEVERITY, type UserChannel } from './user-channel.js';
import type { ResponseWriter } from './writer.js';

/** The requests that may answer with an input-required result (MRTR). */
const INPUT_CAPABLE = new Set(['tools/call', 'resources/read', 'prompts/get']);

/**
 * A child asks for several inputs at once (one JSON-RPC request each, on
 * stdio); requests arriving this close together go into one input-required
 * result. 50 ms rather than less: a busy machine can deschedule the child
 * between its two writes, and an input-required round waits for a person
 * anyway.
 */
const INPUT_GATHER_MS = 50;

/** What a call needs of the front that serves it. */
export interface CallHost {
  /** Answers a round with an input-required result and parks the call until the retry. */
  park(call: ModernCall, clientId: RequestId, writer: ResponseWriter): void;
  /** A final result in the modern shape. */
  stamp(response: ClientResponse, method: string): ClientResponse;
}

/** What one HTTP round of a call brings: its id and what its client declared for it. */
export interface Round {
  readonly clientId: RequestId;
  readonly capabilities: ClientCapabilities;
  readonly logLevel: LoggingLevel | undefined;
  readonly progressToken: string | number | undefined;
}

/** One modern request, across the rounds of input the child may ask for. */
export class ModernCall implements RequestSink {
  handle: InflightRequest | undefined;
  #parkedId: string | undefined;
  /** The child's requests the client has not answered yet, by input key. */
  readonly waiting = new Map<string, JSONRPCRequest>();
  expiry: NodeJS.Timeout | undefined;
  #gathering: NodeJS.Timeout | undefined;
  #writer: ResponseWriter | undefined;
  #round: Round | undefined;
  /** The child's answer, when it came while no round was attached. */
  #final: ClientResponse | undefined;

  readonly #host: CallHost;

  constructor(
    host: CallHost,
    readonly user: UserChannel,
    readonly request: JSONRPCRequest,
    /** Who asked: only the same user, through the same client and grant, may complete it. */
    readonly principal: Principal,
  ) {
    this.#host = host;
  }

  /** The call's name while it waits for the client's retry; made when first parked (most calls never are). */
  get parkedId(): string {
    this.#parkedId ??= randomBytes(16).toString('base64url');
    return this.#parkedId;
  }

  attach(writer: ResponseWriter, round: Round): void {
    this.#writer = writer;
    this.#round = round;
    if (this.#final !== undefined) this.respond(this.#final);
    else if (this.waiting.size > 0) this.#host.park(this, round.clientId, this.#detach());
  }

  notify(notification: JSONRPCNotification): void {
    const round = this.#round;
    if (this.#writer === undefined || round === undefined) return;
    if (notification.method === 'notifications/message') {
      const level = (notification.params as { level?: LoggingLevel } | undefined)?.level;
      // Logs only for a request that asked for them, at its level or above.
      if (round.logLevel === undefined || level === undefined || LOG_SEVERITY[level] < LOG_SEVERITY[round.logLevel]) return;
    }
    if (notification.method === 'notifications/progress') {
      if (round.progressToken === undefined) return;
      notification = { ...notification, params: { ...notification.params, progressToken: round.progressToken } };
    }
    this.#writer.event(notification);
  }

  serverRequest(request: JSONRPCRequest): void {
    const brokerId = request.id as number;
    if (!INPUT_CAPABLE.has(this.request.method)) {
      this.user.channel.refuseServerRequest(
        brokerId,
        JsonRpcCode.methodNotFound,
        `${this.request.method} cannot ask the client for input in protocol 2026-07-28`,
      );
      return;
    }
    const required = requiredCapability(request);
    if (required === undefined) {
      this.user.channel.refuseServerRequest(brokerId, JsonRpcCode.methodNotFound, `${request.method} has no modern-era equivalent`);
      return;
    }
    if (!declares(this.#round?.capabilities ?? {}, required)) {
      // The request cannot be served for this client: it fails as a whole, and the child stops working on it.
      const message = `The server needs the client capability ${JSON.stringify(required)} for ${request.method}`;
      this.user.channel.refuseServerRequest(brokerId, JsonRpcCode.missingRequiredClientCapability, message);
      this.abandon('the client lacks a capability the server needs');
      this.respond({
        jsonrpc: '2.0',
        id: this.request.id,
        error: { code: JsonRpcCode.missingRequiredClientCapability, message, data: { requiredCapabilities: required } },
      });
      return;
    }
    this.waiting.set(`input-${brokerId}`, request);
    this.#gather();
  }

  /** Parks after a short wait, so inputs the child asks for together go out together. */
  #gather(): void {
    if (this.#gathering !== undefined || this.#writer === undefined) return;
    this.#gathering = setTimeout(() => {
      this.#gathering = undefined;
      if (this.#writer !== undefined && this.#round !== undefined && this.waiting.size > 0)
        this.#host.park(this, this.#round.clientId, this.#detach());
    }, INPUT_GATHER_MS);
  }

  respond(response: ClientResponse): void {
    const writer = this.#writer;
    const round = this.#round;
    if (writer === undefined || round === undefined) {
      this.#final = response;
      return;
    }
    this.#detach();
    const answer = this.#host.stamp(withId(response, round.clientId), this.request.method);
    writer.final(answer, 'error' in answer ? httpStatusOf(answer.error.code) : 200);
  }

  /** The client closed the response stream: that is the cancellation signal. */
  clientGone(): void {
    this.#writer = undefined;
    this.abandon('the client closed the response stream');
  }

  abandon(reason: string): void {
    if (this.handle !== undefined) this.user.channel.cancel(this.handle, reason);
  }

  /** The child's waiting requests as the modern client sees them, by input key. */
  inputRequests(): Record<string, { method: string; params: JSONRPCRequest['params'] }> {
    return Object.fromEntries(
      [...this.waiting].map(([key, request]) => [key, { method: request.method, params: withoutProgressToken(request.params) }]),
    );
  }

  #detach(): ResponseWriter {
    const writer = this.#writer as ResponseWriter;
    this.#writer = undefined;
    return writer;
  }
}

/** The HTTP status for a JSON-RPC error the modern transport gives its own status. */
function httpStatusOf(code: number): number {
  if (code === JsonRpcCode.methodNotFound) return 404;
  if (code === JsonRpcCode.missingRequiredClientCapability) return 400;
  return 200;
}

/** The client capability a child's request needs; undefined for a request the modern era has no equivalent of. */
function requiredCapability(request: JSONRPCRequest): ClientCapabilities | undefined {
  switch (request.method) {
    case 'elicitation/create':
      return (request.params as { mode?: string } | undefined)?.mode === 'url' ? { elicitation: { url: {} } } : { elicitation: {} };
    case 'sampling/createMessage':
      return { sampling: {} };
    case 'roots/list':
      return { roots: {} };
    default:
      return undefined;
  }
}

/** Whether the declared capabilities cover the required ones (an empty object requires only presence). */
function declares(declared: ClientCapabilities, required: ClientCapabilities): boolean {
  return Object.entries(required).every(([name, sub]) => {
    const have = (declared as Record<string, unknown>)[name];
    if (typeof have !== 'object' || have === null) return false;
    return Object.keys(sub as object).every((key) => (have as Record<string, unknown>)[key] !== undefined);
  });
}

/** A child's progress token on its own request means nothing to the client. */
function withoutProgressToken(params: JSONRPCRequest['params']): JSONRPCRequest['params'] {
  const meta = params?._meta;
  if (meta === undefined || !('progressToken' in meta)) return params;
  const rest = { ...meta };
  delete rest.progressToken;
  return { ...params, _meta: rest };
}
