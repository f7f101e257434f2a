import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type {
  ClientCapabilities,
  Implementation,
  JSONRPCNotification,
  JSONRPCRequest,
  LoggingLevel,
  RequestId,
} from '@modelcontextprotocol/server';
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  isJSONRPCResultResponse,
  LOG_LEVEL_META_KEY,
  SERVER_INFO_META_KEY,
  SUBSCRIPTION_ID_META_KEY,
} from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import type { ClientResponse, InflightRequest, RequestSink } from '../bridge/channel.js';
import type { Logger } from '../log/logger.js';
import type { SessionRegistry } from '../session/registry.js';
import { LOG_SEVERITY, type ChangeListener, type UserChannel } from '../session/user-channel.js';
import { paramHeaderMismatch, paramHeadersOf } from './param-headers.js';
import { RequestStateCodec, type RequestStateClaims } from './request-state.js';
import { ALL_VERSIONS, HEADER_MISMATCH, METHOD_NOT_FOUND } from './validate.js';
import { ResponseWriter } from './writer.js';

export interface ModernFrontOptions {
  readonly registry: SessionRegistry;
  readonly log: Logger;
  /** How long a call waiting for the client's input stays parked. */
  readonly inputTimeoutMs: number;
  /** The broker's identity in discover results and result `_meta`. */
  readonly serverInfo: Implementation;
  readonly keepAliveMs: number;
}

/** The results a client may cache (`CacheableResult` in the 2026-07-28 schema). */
const CACHEABLE = new Set(['server/discover', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);

/**
 * Cache hints for results the child did not give any: immediately stale (a
 * legacy child announces changes only as they happen) and private (through
 * the broker, every answer is made with one user's Forgejo token).
 */
const DEFAULT_CACHE_HINTS = { ttlMs: 0, cacheScope: 'private' };

/** The requests that may answer with an input-required result (MRTR). */
const INPUT_CAPABLE = new Set(['tools/call', 'resources/read', 'prompts/get']);
const INVALID_PARAMS = -32602;
const MISSING_REQUIRED_CLIENT_CAPABILITY = -32021;

/**
 * A child asks for several inputs at once (one JSON-RPC request each, on
 * stdio); requests arriving this close together go into one input-required
 * result.
 */
const INPUT_GATHER_MS = 15;

/**
 * Serves the 2026-07-28 era statelessly in front of legacy children: each
 * request goes to the user's shared, broker-initialised child; a child's
 * server-to-client request becomes an input-required result whose retry
 * resumes the very call that asked; `subscriptions/listen` streams the
 * child's change notifications.
 */
export class ModernFront {
  private readonly parked = new Map<string, ModernCall>();
  private readonly states = new RequestStateCodec();

  constructor(private readonly options: ModernFrontOptions) {}

  async handle(req: IncomingMessage, res: ServerResponse, principal: Principal, message: JSONRPCRequest): Promise<void> {
    const meta = (message.params?._meta ?? {}) as Record<string, unknown>;
    const clientInfo = (meta[CLIENT_INFO_META_KEY] as Implementation | undefined) ?? { name: 'unknown-client', version: '0' };
    const user = await this.options.registry.userChannel(principal, clientInfo);
    switch (message.method) {
      case 'server/discover':
        this.discover(res, user, message.id);
        return;
      case 'subscriptions/listen':
        await this.listen(res, user, message);
        return;
    }
    const capabilities = (meta[CLIENT_CAPABILITIES_META_KEY] as ClientCapabilities | undefined) ?? {};
    const logLevel = meta[LOG_LEVEL_META_KEY] as LoggingLevel | undefined;
    if (logLevel !== undefined && logLevel in LOG_SEVERITY) await this.options.registry.ensureLogLevel(user, logLevel);
    const params = message.params;
    const requestState = params?.requestState;
    const round: Round = { clientId: message.id, capabilities, logLevel, progressToken: (meta.progressToken as string | number | undefined) ?? undefined };
    if (typeof requestState === 'string') {
      this.resume(res, principal, message, requestState, round);
      return;
    }
    if (message.method === 'tools/call') {
      const mismatch = await this.paramHeaderProblem(req, user, message);
      if (mismatch !== undefined) {
        new ResponseWriter(res, () => undefined).final({ jsonrpc: '2.0', id: message.id, error: { code: HEADER_MISMATCH, message: `Header mismatch: ${mismatch}` } }, 400);
        return;
      }
    }
    const call = new ModernCall(this, user, message, principal);
    call.attach(this.writerFor(res, call), round);
    // The retry fields belong to the broker; the child only ever sees the original request.
    call.handle = user.channel.request(withoutRetryFields(message), call);
  }

  /** Checks `Mcp-Param-*` headers against the arguments, for tools whose schema declares `x-mcp-header`. */
  private async paramHeaderProblem(req: IncomingMessage, user: UserChannel, message: JSONRPCRequest): Promise<string | undefined> {
    const params = message.params as { name?: unknown; arguments?: unknown } | undefined;
    const hasParamHeaders = Object.keys(req.headers).some((name) => name.startsWith('mcp-param-'));
    const tools = await this.options.registry.toolsOf(user);
    const tool = typeof params?.name === 'string' ? tools.get(params.name) : undefined;
    const headers = tool === undefined ? [] : paramHeadersOf(tool);
    if (headers.length === 0 && !hasParamHeaders) return undefined;
    return paramHeaderMismatch(req, headers, params?.arguments ?? {});
  }

  /** A retry carrying input responses: hand them to the child, then wait on the same call. */
  private resume(res: ServerResponse, principal: Principal, message: JSONRPCRequest, state: string, round: Round): void {
    const claims = this.states.decode(state, Date.now());
    const call = claims === undefined ? undefined : this.parked.get(claims.parkedId);
    if (claims === undefined || call === undefined || !sameCaller(claims, principal) || claims.request !== requestKey(message)) {
      new ResponseWriter(res, () => undefined).final({
        jsonrpc: '2.0',
        id: message.id,
        error: { code: INVALID_PARAMS, message: 'Invalid params: requestState is invalid, expired or belongs to another request' },
      });
      return;
    }
    this.unpark(call);
    const responses = (message.params as { inputResponses?: Record<string, unknown> } | undefined)?.inputResponses ?? {};
    for (const [key, result] of Object.entries(responses)) {
      const waiting = call.waiting.get(key);
      if (waiting === undefined) continue;
      call.waiting.delete(key);
      call.user.channel.answer({ jsonrpc: '2.0', id: waiting.id, result: result as Record<string, unknown> });
    }
    call.attach(this.writerFor(res, call), round);
  }

  private writerFor(res: ServerResponse, call: ModernCall): ResponseWriter {
    return new ResponseWriter(res, () => call.clientGone());
  }

  /** Answers a round with an input-required result and parks the call until the retry. */
  park(call: ModernCall, clientId: RequestId, writer: ResponseWriter): void {
    const parkedId = call.parkedId;
    const expiresAt = Date.now() + this.options.inputTimeoutMs;
    const caller = call.principal;
    const requestState = this.states.encode({
      userId: caller.userId,
      clientId: caller.clientId,
      grantId: caller.grantId,
      parkedId,
      request: requestKey(call.request),
      expiresAt,
    });
    const inputRequests = Object.fromEntries([...call.waiting].map(([key, request]) => [key, { method: request.method, params: withoutProgressToken(request.params) }]));
    writer.final({ jsonrpc: '2.0', id: clientId, result: { resultType: 'input_required', inputRequests, requestState } });
    this.parked.set(parkedId, call);
    call.expiry = setTimeout(() => {
      // The client never came back: the child stops waiting too.
      this.parked.delete(parkedId);
      call.abandon('the client did not provide the requested input in time');
    }, this.options.inputTimeoutMs);
    call.expiry.unref();
  }

  private unpark(call: ModernCall): void {
    this.parked.delete(call.parkedId);
    if (call.expiry !== undefined) clearTimeout(call.expiry);
    call.expiry = undefined;
  }

  /** A final result in the modern shape: `resultType`, cache hints where the schema has them, the server's identity. */
  stamp(response: ClientResponse, method: string): ClientResponse {
    if (!isJSONRPCResultResponse(response)) return response;
    const result = response.result as Record<string, unknown>;
    const meta = (result._meta as Record<string, unknown> | undefined) ?? {};
    const stamped: Record<string, unknown> = {
      ...(CACHEABLE.has(method) ? DEFAULT_CACHE_HINTS : {}),
      ...result,
      resultType: (result.resultType) ?? 'complete',
      _meta: { ...meta, [SERVER_INFO_META_KEY]: meta[SERVER_INFO_META_KEY] ?? this.options.serverInfo },
    };
    return { ...response, result: stamped };
  }

  private discover(res: ServerResponse, user: UserChannel, id: RequestId): void {
    const result: Record<string, unknown> = {
      resultType: 'complete',
      ...DEFAULT_CACHE_HINTS,
      supportedVersions: ALL_VERSIONS,
      capabilities: user.server.capabilities,
      _meta: { [SERVER_INFO_META_KEY]: this.options.serverInfo },
    };
    if (user.server.instructions !== undefined) result.instructions = user.server.instructions;
    new ResponseWriter(res, () => undefined).final({ jsonrpc: '2.0', id, result });
  }

  private async listen(res: ServerResponse, user: UserChannel, message: JSONRPCRequest): Promise<void> {
    const requested = ((message.params as { notifications?: Record<string, unknown> } | undefined)?.notifications ?? {}) as {
      toolsListChanged?: boolean;
      promptsListChanged?: boolean;
      resourcesListChanged?: boolean;
      resourceSubscriptions?: string[];
    };
    const caps = user.server.capabilities;
    const agreed: Record<string, unknown> = {};
    if (requested.toolsListChanged === true && caps.tools?.listChanged === true) agreed.toolsListChanged = true;
    if (requested.promptsListChanged === true && caps.prompts?.listChanged === true) agreed.promptsListChanged = true;
    if (requested.resourcesListChanged === true && caps.resources?.listChanged === true) agreed.resourcesListChanged = true;
    const uris = caps.resources?.subscribe === true && Array.isArray(requested.resourceSubscriptions) ? requested.resourceSubscriptions.filter((u) => typeof u === 'string') : [];
    if (uris.length > 0) agreed.resourceSubscriptions = uris;

    const subscription = { [SUBSCRIPTION_ID_META_KEY]: message.id };
    const writer = new ResponseWriter(res, () => {
      user.listeners.delete(listener);
      for (const uri of uris) void this.options.registry.unsubscribeResource(user, uri);
    });
    const listener: ChangeListener = {
      wants: (notification) => {
        switch (notification.method) {
          case 'notifications/tools/list_changed':
            return agreed.toolsListChanged === true;
          case 'notifications/prompts/list_changed':
            return agreed.promptsListChanged === true;
          case 'notifications/resources/list_changed':
            return agreed.resourcesListChanged === true;
          case 'notifications/resources/updated':
            return uris.includes((notification.params as { uri?: string } | undefined)?.uri ?? '');
          default:
            return false;
        }
      },
      deliver: (notification) => writer.event(withMeta(notification, subscription)),
      end: () => writer.final({ jsonrpc: '2.0', id: message.id, result: { resultType: 'complete', _meta: subscription } }),
    };
    writer.openStream(this.options.keepAliveMs);
    writer.event({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { _meta: subscription, notifications: agreed } });
    user.listeners.add(listener);
    for (const uri of uris) await this.options.registry.subscribeResource(user, uri);
  }
}

/** What one HTTP round of a call brings: its id and what its client declared for it. */
interface Round {
  readonly clientId: RequestId;
  readonly capabilities: ClientCapabilities;
  readonly logLevel: LoggingLevel | undefined;
  readonly progressToken: string | number | undefined;
}

/** One modern request, across the rounds of input the child may ask for. */
class ModernCall implements RequestSink {
  handle: InflightRequest | undefined;
  readonly parkedId = randomBytes(16).toString('base64url');
  /** The child's requests the client has not answered yet, by input key. */
  readonly waiting = new Map<string, JSONRPCRequest>();
  expiry: NodeJS.Timeout | undefined;
  private gathering: NodeJS.Timeout | undefined;
  private writer: ResponseWriter | undefined;
  private round: Round | undefined;
  /** The child's answer, when it came while no round was attached. */
  private final: ClientResponse | undefined;

  constructor(
    private readonly front: ModernFront,
    readonly user: UserChannel,
    readonly request: JSONRPCRequest,
    /** Who asked: only the same user, through the same client and grant, may complete it. */
    readonly principal: Principal,
  ) {}

  attach(writer: ResponseWriter, round: Round): void {
    this.writer = writer;
    this.round = round;
    if (this.final !== undefined) this.respond(this.final);
    else if (this.waiting.size > 0) this.front.park(this, round.clientId, this.detach());
  }

  notify(notification: JSONRPCNotification): void {
    const round = this.round;
    if (this.writer === undefined || round === undefined) return;
    if (notification.method === 'notifications/message') {
      const level = (notification.params as { level?: LoggingLevel } | undefined)?.level;
      // Logs only for a request that asked for them, at its level or above.
      if (round.logLevel === undefined || level === undefined || LOG_SEVERITY[level] < LOG_SEVERITY[round.logLevel]) return;
    }
    if (notification.method === 'notifications/progress') {
      if (round.progressToken === undefined) return;
      notification = { ...notification, params: { ...notification.params, progressToken: round.progressToken } };
    }
    this.writer.event(notification);
  }

  serverRequest(request: JSONRPCRequest): void {
    const brokerId = request.id as number;
    if (!INPUT_CAPABLE.has(this.request.method)) {
      this.user.channel.refuseServerRequest(brokerId, METHOD_NOT_FOUND, `${this.request.method} cannot ask the client for input in protocol 2026-07-28`);
      return;
    }
    const required = requiredCapability(request);
    if (required === undefined) {
      this.user.channel.refuseServerRequest(brokerId, METHOD_NOT_FOUND, `${request.method} has no modern-era equivalent`);
      return;
    }
    if (!declares(this.round?.capabilities ?? {}, required)) {
      // The request cannot be served for this client: it fails as a whole, and the child stops working on it.
      const message = `The server needs the client capability ${JSON.stringify(required)} for ${request.method}`;
      this.user.channel.refuseServerRequest(brokerId, MISSING_REQUIRED_CLIENT_CAPABILITY, message);
      this.abandon('the client lacks a capability the server needs');
      this.respond({ jsonrpc: '2.0', id: this.request.id, error: { code: MISSING_REQUIRED_CLIENT_CAPABILITY, message, data: { requiredCapabilities: required } } });
      return;
    }
    this.waiting.set(`input-${brokerId}`, request);
    this.gather();
  }

  /** Parks after a short wait, so inputs the child asks for together go out together. */
  private gather(): void {
    if (this.gathering !== undefined || this.writer === undefined) return;
    this.gathering = setTimeout(() => {
      this.gathering = undefined;
      if (this.writer !== undefined && this.round !== undefined && this.waiting.size > 0) this.front.park(this, this.round.clientId, this.detach());
    }, INPUT_GATHER_MS);
  }

  respond(response: ClientResponse): void {
    const writer = this.writer;
    const round = this.round;
    if (writer === undefined || round === undefined) {
      this.final = response;
      return;
    }
    this.detach();
    const answer = this.front.stamp({ ...response, id: round.clientId }, this.request.method);
    writer.final(answer, 'error' in answer ? httpStatusOf(answer.error.code) : 200);
  }

  /** The client closed the response stream: that is the cancellation signal. */
  clientGone(): void {
    this.writer = undefined;
    this.abandon('the client closed the response stream');
  }

  abandon(reason: string): void {
    if (this.handle !== undefined) this.user.channel.cancel(this.handle, reason);
  }

  private detach(): ResponseWriter {
    const writer = this.writer as ResponseWriter;
    this.writer = undefined;
    return writer;
  }
}

/** The HTTP status for a JSON-RPC error the modern transport gives its own status. */
function httpStatusOf(code: number): number {
  if (code === METHOD_NOT_FOUND) return 404;
  if (code === MISSING_REQUIRED_CLIENT_CAPABILITY) return 400;
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

function sameCaller(claims: RequestStateClaims, principal: Principal): boolean {
  return claims.userId === principal.userId && claims.clientId === principal.clientId && claims.grantId === principal.grantId;
}

/** Identifies a request across its retries: the method and what it names. */
function requestKey(message: JSONRPCRequest): string {
  const params = message.params;
  const name = params?.name ?? params?.uri;
  return `${message.method} ${typeof name === 'string' ? name : ''}`;
}

function withoutRetryFields(message: JSONRPCRequest): JSONRPCRequest {
  const params = message.params;
  if (params === undefined || (!('inputResponses' in params) && !('requestState' in params))) return message;
  const rest = { ...params };
  delete rest.inputResponses;
  delete rest.requestState;
  return { ...message, params: rest };
}

/** A child's progress token on its own request means nothing to the client. */
function withoutProgressToken(params: JSONRPCRequest['params']): JSONRPCRequest['params'] {
  const meta = params?._meta;
  if (meta === undefined || !('progressToken' in meta)) return params;
  const rest = { ...meta };
  delete rest.progressToken;
  return { ...params, _meta: rest };
}

function withMeta(notification: JSONRPCNotification, meta: Record<string, unknown>): JSONRPCNotification {
  const params = (notification.params ?? {}) as Record<string, unknown>;
  return { ...notification, params: { ...params, _meta: { ...(params._meta as Record<string, unknown> | undefined), ...meta } } };
}
