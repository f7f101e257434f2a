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
  LOG_LEVEL_META_KEY,
  PROTOCOL_VERSION_META_KEY,
  SERVER_INFO_META_KEY,
  SUBSCRIPTION_ID_META_KEY,
} from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { Logger } from '../log/logger.js';
import type { SessionEvents } from '../metrics/metrics.js';
import type { HolderMatch, LiveSessionView } from '../pool/live-view.js';
import type { ChannelPool } from '../pool/pool.js';
import { passedThrough, passThrough, type RawAnswer } from '../pool/raw-answer.js';
import type { ClientResponse } from '../pool/request-sink.js';
import type { CallGate } from '../policy/gate.js';
import { ModernCall, type CallHost, type Round } from './call.js';
import { paramHeaderMismatch, paramHeadersOf } from './param-headers.js';
import { RequestStateCodec, type RequestStateClaims } from './request-state.js';
import { LOG_SEVERITY, type ChangeListener, type UserChannel } from './user-channel.js';
import { UserChannels } from './user-channels.js';
import { ALL_VERSIONS } from './validate.js';
import { ResponseWriter } from './writer.js';
import { isResultResponse } from '../jsonrpc/messages.js';

export interface ModernFrontOptions {
  readonly pool: ChannelPool;
  readonly log: Logger;
  /** Counters for the per-user channels; none in most tests. */
  readonly events?: Pick<SessionEvents, 'sessionStarted' | 'sessionEnded'>;
  /** How long a call waiting for the client's input stays parked. */
  readonly inputTimeoutMs: number;
  /** The broker's identity in discover results and result `_meta`. */
  readonly serverInfo: Implementation;
  readonly keepAliveMs: number;
  /** This replica's id, in front of every `requestState` it issues (a retry landing elsewhere is forwarded here). */
  readonly replicaId: string;
  /** The tool policy and the audit log, which every request passes; none in most tests. */
  readonly gate?: CallGate;
}

/** The results a client may cache (`CacheableResult` in the 2026-07-28 schema). */
const CACHEABLE = new Set([
  'server/discover',
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
]);

/**
 * Cache hints for results the child did not give any: immediately stale (a
 * legacy child announces changes only as they happen) and private (through
 * the broker, every answer is made with one user's Forgejo token).
 */
const DEFAULT_CACHE_HINTS = { ttlMs: 0, cacheScope: 'private' };

/**
 * Serves the 2026-07-28 era statelessly in front of legacy children: each
 * request goes to the user's shared, broker-initialised child; a child's
 * server-to-client request becomes an input-required result whose retry
 * resumes the very call that asked; `subscriptions/listen` streams the
 * child's change notifications.
 */
export class ModernFront implements CallHost {
  readonly #parked = new Map<string, ModernCall>();
  readonly #states: RequestStateCodec;
  readonly #users: UserChannels;

  readonly #options: ModernFrontOptions;

  constructor(options: ModernFrontOptions) {
    this.#options = options;
    this.#states = new RequestStateCodec(options.replicaId);
    this.#users = new UserChannels({
      pool: options.pool,
      log: options.log,
      ...(options.events === undefined ? {} : { events: options.events }),
    });
  }

  /** Number of users with a live channel. */
  get activeUserChannels(): number {
    return this.#users.active;
  }

  /** The user's channel as each of their grants used it, on this replica. */
  sessionsOf(userId: string): LiveSessionView[] {
    return this.#users.sessionsOf(userId);
  }

  /** A revocation: ends the listen streams of the grants `match` accepts, and the channels only they used. */
  endWhere(match: HolderMatch, reason: string): Promise<number> {
    return this.#users.endWhere(match, reason);
  }

  /** Ends every user's channel and refuses new requests. */
  stop(): Promise<void> {
    return this.#users.stop();
  }

  async handle(req: IncomingMessage, res: ServerResponse, principal: Principal, message: JSONRPCRequest): Promise<void> {
    const meta = (message.params?._meta ?? {}) as Record<string, unknown>;
    const clientInfo = (meta[CLIENT_INFO_META_KEY] as Implementation | undefined) ?? { name: 'unknown-client', version: '0' };
    const user = await this.#users.of(principal, clientInfo);
    switch (message.method) {
      case 'server/discover':
        this.#discover(res, user, message.id);
        return;
      case 'subscriptions/listen':
        await this.#listen(res, user, message, principal.grantId);
        return;
    }
    const capabilities = (meta[CLIENT_CAPABILITIES_META_KEY] as ClientCapabilities | undefined) ?? {};
    const logLevel = meta[LOG_LEVEL_META_KEY] as LoggingLevel | undefined;
    if (logLevel !== undefined && logLevel in LOG_SEVERITY) await user.ensureLogLevel(logLevel);
    const params = message.params;
    const requestState = params?.requestState;
    const round: Round = {
      clientId: message.id,
      capabilities,
      logLevel,
      progressToken: (meta.progressToken as string | number | undefined) ?? undefined,
    };
    if (typeof requestState === 'string') {
      this.#resume(res, principal, message, requestState, round);
      return;
    }
    const call = new ModernCall(this, user, message, principal);
    // The retry fields belong to the broker; the child only ever sees the original request.
    const forwarded = forLegacyChild(message);
    const gate = await this.#options.gate?.caller(principal, 'modern');
    const decision = gate?.pass(forwarded, call) ?? { sink: call };
    if ('refused' in decision) {
      new ResponseWriter(res, () => undefined).final(decision.refused);
      return;
    }
    if (message.method === 'tools/call') {
      const mismatch = await this.#paramHeaderProblem(req, user, message);
      if (mismatch !== undefined) {
        new ResponseWriter(res, () => undefined).final(
          { jsonrpc: '2.0', id: message.id, error: { code: JsonRpcCode.headerMismatch, message: `Header mismatch: ${mismatch}` } },
          400,
        );
        return;
      }
    }
    call.attach(this.#writerFor(res, call), round);
    call.handle = user.channel.request(forwarded, decision.sink);
  }

  /** Checks `Mcp-Param-*` headers against the arguments, for tools whose schema declares `x-mcp-header`. */
  async #paramHeaderProblem(req: IncomingMessage, user: UserChannel, message: JSONRPCRequest): Promise<string | undefined> {
    const params = message.params as { name?: unknown; arguments?: unknown } | undefined;
    const hasParamHeaders = Object.keys(req.headers).some((name) => name.startsWith('mcp-param-'));
    const tools = await user.toolsOf();
    const tool = typeof params?.name === 'string' ? tools.get(params.name) : undefined;
    const headers = tool === undefined ? [] : paramHeadersOf(tool);
    if (headers.length === 0 && !hasParamHeaders) return undefined;
    return paramHeaderMismatch(req, headers, params?.arguments ?? {});
  }

  /** A retry carrying input responses: hand them to the child, then wait on the same call. */
  #resume(res: ServerResponse, principal: Principal, message: JSONRPCRequest, state: string, round: Round): void {
    const claims = this.#states.decode(state, Date.now());
    const call = claims === undefined ? undefined : this.#parked.get(claims.parkedId);
    if (claims === undefined || call === undefined || !sameCaller(claims, principal) || claims.request !== requestKey(message)) {
      new ResponseWriter(res, () => undefined).final({
        jsonrpc: '2.0',
        id: message.id,
        error: {
          code: JsonRpcCode.invalidParams,
          message: 'Invalid params: requestState is invalid, expired or belongs to another request',
        },
      });
      return;
    }
    this.#unpark(call);
    const responses = (message.params as { inputResponses?: Record<string, unknown> } | undefined)?.inputResponses ?? {};
    for (const [key, result] of Object.entries(responses)) {
      const waiting = call.waiting.get(key);
      if (waiting === undefined) continue;
      call.waiting.delete(key);
      call.user.channel.answer({ jsonrpc: '2.0', id: waiting.id, result: result as Record<string, unknown> });
    }
    call.attach(this.#writerFor(res, call), round);
  }

  #writerFor(res: ServerResponse, call: ModernCall): ResponseWriter {
    return new ResponseWriter(res, () => call.clientGone());
  }

  /** Answers a round with an input-required result and parks the call until the retry. */
  park(call: ModernCall, clientId: RequestId, writer: ResponseWriter): void {
    const parkedId = call.parkedId;
    const expiresAt = Date.now() + this.#options.inputTimeoutMs;
    const caller = call.principal;
    const requestState = this.#states.encode({
      userId: caller.userId,
      clientId: caller.clientId,
      grantId: caller.grantId,
      parkedId,
      request: requestKey(call.request),
      expiresAt,
    });
    writer.final({
      jsonrpc: '2.0',
      id: clientId,
      result: { resultType: 'input_required', inputRequests: call.inputRequests(), requestState },
    });
    this.#parked.set(parkedId, call);
    call.expiry = setTimeout(() => {
      // The client never came back: the child stops waiting too.
      this.#parked.delete(parkedId);
      call.abandon('the client did not provide the requested input in time');
    }, this.#options.inputTimeoutMs);
    call.expiry.unref();
  }

  #unpark(call: ModernCall): void {
    this.#parked.delete(call.parkedId);
    if (call.expiry !== undefined) clearTimeout(call.expiry);
    call.expiry = undefined;
  }

  /** A final result in the modern shape: `resultType`, cache hints where the schema has them, the server's identity. */
  stamp(response: ClientResponse, method: string): ClientResponse {
    const through = passedThrough(response);
    if (through !== undefined && !through.raw.resultHas('_meta')) return this.#stampPassedThrough(through.raw, response.id, method);
    if (!isResultResponse(response)) return response;
    const result = response.result as Record<string, unknown>;
    const meta = (result._meta as Record<string, unknown> | undefined) ?? {};
    const stamped: Record<string, unknown> = {
      ...(CACHEABLE.has(method) ? DEFAULT_CACHE_HINTS : {}),
      ...result,
      resultType: result.resultType ?? 'complete',
      _meta: { ...meta, [SERVER_INFO_META_KEY]: meta[SERVER_INFO_META_KEY] ?? this.#options.serverInfo },
    };
    return { ...response, result: stamped };
  }

  /** The same stamp for an answer passed through as bytes: the fields it lacks go in front of the result's own. */
  #stampPassedThrough(raw: RawAnswer, id: RequestId, method: string): ClientResponse {
    const fields: Record<string, unknown> = CACHEABLE.has(method) ? { ...DEFAULT_CACHE_HINTS } : {};
    if (!raw.resultHas('resultType')) fields.resultType = 'complete';
    fields._meta = { [SERVER_INFO_META_KEY]: this.#options.serverInfo };
    const members = Object.entries(fields).filter(([key]) => !raw.resultHas(key));
    return passThrough(raw, id, members.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)},`).join(''));
  }

  #discover(res: ServerResponse, user: UserChannel, id: RequestId): void {
    const result: Record<string, unknown> = {
      resultType: 'complete',
      ...DEFAULT_CACHE_HINTS,
      supportedVersions: ALL_VERSIONS,
      capabilities: user.server.capabilities,
      _meta: { [SERVER_INFO_META_KEY]: this.#options.serverInfo },
    };
    if (user.server.instructions !== undefined) result.instructions = user.server.instructions;
    new ResponseWriter(res, () => undefined).final({ jsonrpc: '2.0', id, result });
  }

  async #listen(res: ServerResponse, user: UserChannel, message: JSONRPCRequest, grantId: string): Promise<void> {
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
    const uris =
      caps.resources?.subscribe === true && Array.isArray(requested.resourceSubscriptions)
        ? requested.resourceSubscriptions.filter((u) => typeof u === 'string')
        : [];
    if (uris.length > 0) agreed.resourceSubscriptions = uris;

    const subscription = { [SUBSCRIPTION_ID_META_KEY]: message.id };
    const writer = new ResponseWriter(res, () => {
      user.removeListener(listener);
      for (const uri of uris) void user.unsubscribeResource(uri);
    });
    const listener: ChangeListener = {
      grantId,
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
    writer.openStream(this.#options.keepAliveMs);
    writer.event({
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      params: { _meta: subscription, notifications: agreed },
    });
    user.addListener(listener);
    for (const uri of uris) await user.subscribeResource(uri);
  }
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

/**
 * The request as the child gets it: without the retry fields (the broker
 * answers those), and without the 2026-07-28 protocol-version claim, since
 * the child speaks the version it negotiated at initialize (an HTTP upstream's
 * client transport would turn the claim into a `MCP-Protocol-Version: 2026-07-28`
 * header, which a legacy server refuses).
 */
function forLegacyChild(message: JSONRPCRequest): JSONRPCRequest {
  const params = message.params;
  const meta = params?._meta;
  const claimsVersion = meta !== undefined && PROTOCOL_VERSION_META_KEY in meta;
  if (params === undefined || (!('inputResponses' in params) && !('requestState' in params) && !claimsVersion)) return message;
  // Copied without the members rather than deleted from a copy: `delete` turns an object into a slow dictionary.
  const rest = without(params, RETRY_FIELDS);
  if (claimsVersion) rest._meta = without(meta, VERSION_CLAIM);
  return { ...message, params: rest };
}

const RETRY_FIELDS: ReadonlySet<string> = new Set(['inputResponses', 'requestState']);
const VERSION_CLAIM: ReadonlySet<string> = new Set([PROTOCOL_VERSION_META_KEY]);

function without(value: Readonly<Record<string, unknown>>, omitted: ReadonlySet<string>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) if (!omitted.has(key)) copy[key] = value[key];
  return copy;
}

function withMeta(notification: JSONRPCNotification, meta: Record<string, unknown>): JSONRPCNotification {
  const params = (notification.params ?? {}) as Record<string, unknown>;
  return { ...notification, params: { ...params, _meta: { ...(params._meta as Record<string, unknown> | undefined), ...meta } } };
}
