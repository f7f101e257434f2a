import type { IncomingMessage, ServerResponse } from 'node:http';
import { isJsonContentType } from '@modelcontextprotocol/server';
import { isAuthFailure, type Authenticator, type Principal } from '../auth/principal.js';
import { BrokerError } from '../errors/errors.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import { EraClassifier } from '../jsonrpc/era.js';
import type { LegacyFront } from '../legacy/front.js';
import type { LegacyBody } from '../legacy/session.js';
import { sessionOwner } from '../legacy/session-id.js';
import type { ModernFront } from '../modern/front.js';
import { RequestStateCodec } from '../modern/request-state.js';
import { validateModernRequest } from '../modern/validate.js';
import type { FleetView, ReplicaInfo } from '../replicas/fleet.js';
import { rendezvousOwner, STOPPING_HEADER, type ReplicaForwarder } from '../replicas/forward.js';
import { parseJsonBody, readBody } from './body.js';
import { sendBrokerError, sendJsonRpcError, toBrokerError } from './errors.js';

/** Request headers a browser client sends to /mcp, for CORS preflights. */
const MCP_REQUEST_HEADERS =
  'Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID';

export interface McpEndpointOptions {
  readonly publicUrl: URL;
  /** Origins besides the broker's own that may call `/mcp` from a browser. */
  readonly allowedOrigins: readonly string[];
  readonly authenticator: Authenticator;
  readonly legacy: LegacyFront;
  readonly modern: ModernFront;
  readonly maxBodyBytes: number;
  readonly retryAfterSeconds: number;
  /** True once the broker is stopping: new requests go to another replica (see `#handOff`), or are refused with 503. */
  readonly draining: () => boolean;
  /** Several replicas: requests that belong to another one are forwarded there. Absent: one broker. */
  readonly fleet?: Fleet;
  /**
   * A client opens the GET stream of its legacy session: the session's
   * upstream starts listening first (shared mode), until `open` settles when
   * the session is not live yet (`ChannelPool.listen`).
   */
  readonly listen?: (sessionId: string, userId: string, open: Promise<unknown>) => Promise<void>;
}

/** This replica among the others, for routing. */
export interface Fleet {
  readonly selfId: string;
  readonly view: FleetView;
  readonly forwarder: ReplicaForwarder;
  /** Shared mode: a legacy session whose owner is gone is carried on here (it is state); else it is gone with its owner's child. */
  readonly sessionsOutliveOwners: boolean;
}

/**
 * The `WWW-Authenticate` value of every refused `/mcp` request (RFC 6750 §3,
 * RFC 9728 §5.1): the bare challenge without an error, else with its reason.
 */
export function bearerChallenge(resourceMetadataUrl: string, error?: string, description?: string): string {
  const parts = [`resource_metadata="${resourceMetadataUrl}"`];
  if (error !== undefined) parts.push(`error="${error}"`);
  if (description !== undefined) parts.push(`error_description="${description.replaceAll('"', "'")}"`);
  return `Bearer ${parts.join(', ')}`;
}

/** Resolves the request's bearer token, or answers 401 with the RFC 9728 challenge and returns undefined. */
export async function authenticateBearer(
  req: IncomingMessage,
  res: ServerResponse,
  authenticator: Authenticator,
): Promise<Principal | undefined> {
  const header = req.headers.authorization;
  const match = header === undefined ? null : /^Bearer +([\x21-\x7e]+) *$/i.exec(header);
  const { resourceMetadataUrl } = authenticator;
  if (match === null) {
    const challenge =
      header === undefined
        ? bearerChallenge(resourceMetadataUrl)
        : bearerChallenge(resourceMetadataUrl, 'invalid_request', 'Use the Bearer scheme');
    sendJsonRpcError(res, 401, JsonRpcCode.requestRefused, 'Unauthorized: a Bearer token is required', { 'www-authenticate': challenge });
    return undefined;
  }
  const result = await authenticator.authenticate(match[1] as string);
  if (isAuthFailure(result)) {
    sendJsonRpcError(res, 401, JsonRpcCode.requestRefused, `Unauthorized: ${result.description}`, {
      'www-authenticate': bearerChallenge(resourceMetadataUrl, result.error, result.description),
    });
    return undefined;
  }
  return result;
}

/**
 * `/mcp`: origin check, bearer authentication, body reading, era
 * classification, and every refusal rendered as a JSON-RPC error; accepted
 * requests go to the legacy or the modern front.
 */
export class McpEndpoint {
  readonly #options: McpEndpointOptions;
  readonly #allowedOrigins: Set<string>;
  readonly #eras = new EraClassifier();

  constructor(options: McpEndpointOptions) {
    this.#options = options;
    this.#allowedOrigins = new Set([options.publicUrl.origin, ...options.allowedOrigins]);
  }

  async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const origin = req.headers.origin;
    if (origin !== undefined && !this.#allowedOrigins.has(origin)) {
      sendJsonRpcError(res, 403, JsonRpcCode.requestRefused, `Forbidden: Origin ${origin} is not allowed`);
      return;
    }
    if (origin !== undefined) {
      // A browser client on an allowed origin (MCP Inspector's web UI, say) may read what it needs.
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'Origin');
      res.setHeader('access-control-expose-headers', 'Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
        'access-control-allow-headers': MCP_REQUEST_HEADERS,
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    if (req.method !== 'POST' && req.method !== 'GET' && req.method !== 'DELETE') {
      sendJsonRpcError(res, 405, JsonRpcCode.requestRefused, 'Method not allowed.', { allow: 'GET, POST, DELETE, OPTIONS' });
      return;
    }
    try {
      const forwardable = this.#forwardable(req);
      if (this.#options.draining()) {
        if (await this.#handOff(req, res)) return;
        // Alone, a stopping broker refuses (the client retries after the restart). With other replicas, what cannot be
        // handed on (forwarded here by one that has not seen this one go) is served while the sessions still live.
        if (this.#otherReplicas().length === 0) throw new BrokerError('unavailable', 'The broker is shutting down');
      }
      let raw: Buffer | undefined;
      // Session traffic goes to the replica whose session it is, before anything else is spent on it here.
      const owner = forwardable ? this.#sessionOwner(req) : undefined;
      if (owner !== undefined) {
        raw = await this.#readRaw(req);
        // Not reached: it died since its last heartbeat. Served here as a session this replica does not know (404, or carried on).
        if (await this.#forward(owner, req, res, raw)) return;
      }
      // Shared mode: a session whose owner is gone is carried on by one replica, which the store names.
      const carrier = forwardable ? await this.#carrier(req, owner?.id) : undefined;
      if (carrier !== undefined) {
        raw ??= await this.#readRaw(req);
        if (await this.#forward(carrier, req, res, raw)) return;
      }
      const principal = await authenticateBearer(req, res, this.#options.authenticator);
      if (principal === undefined) return;
      raw ??= await this.#readRaw(req);
      const body = raw === undefined ? undefined : parseJsonBody(raw);
      await this.#dispatch(req, res, principal, body, forwardable ? raw : undefined);
    } catch (thrown) {
      const error = toBrokerError(thrown);
      if (error === undefined) throw thrown;
      if (error.kind === 'unavailable' && this.#options.draining()) res.setHeader(STOPPING_HEADER, '1');
      sendBrokerError(res, error, {
        retryAfterSeconds: this.#options.retryAfterSeconds,
        ...(error.kind === 'credential_revoked'
          ? { challenge: this.#challenge('invalid_token', 'The Forgejo sign-in has ended; sign in again') }
          : {}),
      });
    }
  }

  /**
   * Routes by era, as the 2026-07-28 versioning page describes: a request
   * carrying the per-request `_meta` envelope is served statelessly; anything
   * else (initialize, session traffic, GET, DELETE) is the legacy session path.
   */
  async #dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    principal: Principal,
    body: unknown,
    forwardableBody: Buffer | undefined,
  ): Promise<void> {
    const outcome = this.#eras.classify({
      httpMethod: req.method ?? 'GET',
      protocolVersionHeader: single(req.headers['mcp-protocol-version']),
      mcpMethodHeader: single(req.headers['mcp-method']),
      mcpNameHeader: single(req.headers['mcp-name']),
      body,
    });
    if (outcome.kind === 'legacy') {
      // A legacy POST's body passed the classifier's JSON-RPC schema checks, every message of a batch too; GET and DELETE have none.
      const legacyBody = body as LegacyBody;
      const sessionId = single(req.headers['mcp-session-id']);
      if (req.method !== 'GET' || sessionId === undefined || this.#options.listen === undefined) {
        await this.#options.legacy.handle(req, res, principal, legacyBody);
        return;
      }
      // What the upstream sends for no request reaches the client only if the upstream's stream is open before the client's is.
      let served!: () => void;
      const open = new Promise<void>((resolve) => (served = resolve));
      await this.#options.listen(sessionId, principal.userId, open);
      await this.#options.legacy.handle(req, res, principal, legacyBody).finally(served);
      return;
    }
    const id = requestIdOf(body);
    if (outcome.kind === 'reject') {
      sendJsonRpcError(res, outcome.httpStatus, outcome.code, outcome.message, {}, { id, data: outcome.data });
      return;
    }
    if (!isJsonContentType(req.headers['content-type'] ?? null)) {
      sendJsonRpcError(res, 415, JsonRpcCode.requestRefused, 'Unsupported Media Type: Content-Type must be application/json', {}, { id });
      return;
    }
    if (outcome.messageKind === 'notification') {
      // 2026-07-28 defines no client notifications over HTTP; accepted and ignored.
      res.writeHead(202).end();
      return;
    }
    const rejection = validateModernRequest(req, outcome.message, outcome.classification.revision ?? '');
    if (rejection !== undefined) {
      sendJsonRpcError(res, rejection.httpStatus, rejection.code, rejection.message, {}, { id, data: rejection.data });
      return;
    }
    // A user's 2026-07-28 traffic has one owner in the fleet (one child, one tool list); a retry goes where its call is parked.
    const owner = forwardableBody === undefined ? undefined : this.#modernOwner(principal, outcome.message.params);
    if (owner !== undefined && (await this.#forward(owner, req, res, forwardableBody))) return;
    await this.#options.modern.handle(req, res, principal, outcome.message);
  }

  /** Whether this request may still be forwarded: one forwarded here already is served here, never sent on. */
  #forwardable(req: IncomingMessage): boolean {
    const fleet = this.#options.fleet;
    if (fleet === undefined) return false;
    const mark = fleet.forwarder.mark(req);
    if (mark.kind === 'invalid') {
      throw new BrokerError(
        'forbidden',
        'Forbidden: a forwarded request failed the replica check (is BROKER_ENCRYPTION_KEY the same on every replica?)',
      );
    }
    return mark.kind === 'none';
  }

  /**
   * Shared mode, a session this replica does not hold whose first owner is
   * gone (or just failed, `unreachable`): the live replica that carries it
   * now, when that is another one. A store lookup, only for such sessions.
   */
  async #carrier(req: IncomingMessage, unreachable: string | undefined): Promise<ReplicaInfo | undefined> {
    const fleet = this.#options.fleet;
    const sessionId = single(req.headers['mcp-session-id']);
    if (fleet === undefined || !fleet.sessionsOutliveOwners || sessionId === undefined) return undefined;
    const first = sessionOwner(sessionId);
    if (first === undefined || first === fleet.selfId || this.#options.legacy.holds(sessionId)) return undefined;
    if (first !== unreachable && fleet.view.find(first)?.url !== undefined) return undefined;
    const reachable = (id: string): boolean => id !== unreachable && (id === fleet.selfId || fleet.view.find(id)?.url !== undefined);
    return this.#other(await this.#options.legacy.carrierOf(sessionId, reachable));
  }

  /** The live replica that owns the request's legacy session, when that is another one. */
  #sessionOwner(req: IncomingMessage): ReplicaInfo | undefined {
    const sessionId = single(req.headers['mcp-session-id']);
    const owner = sessionId === undefined ? undefined : sessionOwner(sessionId);
    return this.#other(owner);
  }

  #modernOwner(principal: Principal, params: { readonly [key: string]: unknown } | undefined): ReplicaInfo | undefined {
    const fleet = this.#options.fleet;
    if (fleet === undefined) return undefined;
    const state = params?.requestState;
    if (typeof state === 'string') return this.#other(RequestStateCodec.ownerOf(state));
    const reachable = fleet.view.live().filter((replica) => replica.id === fleet.selfId || replica.url !== undefined);
    return this.#other(rendezvousOwner(principal.userId, reachable)?.id);
  }

  /** A live replica other than this one that can be reached; undefined for this one, a gone one, or none. */
  #other(id: string | undefined): ReplicaInfo | undefined {
    const fleet = this.#options.fleet;
    if (fleet === undefined || id === undefined || id === fleet.selfId) return undefined;
    const replica = fleet.view.find(id);
    return replica?.url === undefined ? undefined : replica;
  }

  /**
   * A stopping replica hands each new request to the replica that serves it
   * once this one is gone, so its clients see no refusal: a session of another
   * replica goes there; in shared mode one of this replica's sessions goes to
   * the replica that carries it on (claimed for it now); anything else to the
   * user's owner among the others. In stdio mode a session of this replica
   * ends with it: 404 now, and its client starts a new one elsewhere. False
   * when there is no other replica to hand to.
   */
  async #handOff(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const fleet = this.#options.fleet;
    const others = this.#otherReplicas();
    if (fleet === undefined || others.length === 0 || !this.#forwardable(req)) return false;
    const sessionId = single(req.headers['mcp-session-id']);
    let target: ReplicaInfo | undefined;
    if (sessionId !== undefined) {
      target = this.#sessionOwner(req);
      if (target === undefined && !fleet.sessionsOutliveOwners) throw new BrokerError('not_found', 'Session not found');
      if (target === undefined) {
        const heir = rendezvousOwner(sessionId, others);
        const reachable = (id: string): boolean => id !== fleet.selfId && fleet.view.find(id)?.url !== undefined;
        target = this.#other(await this.#options.legacy.carrierOf(sessionId, reachable, heir?.id));
      }
    } else {
      const principal = await authenticateBearer(req, res, this.#options.authenticator);
      if (principal === undefined) return true;
      target = rendezvousOwner(principal.userId, others);
    }
    if (target === undefined) return false;
    return this.#forward(target, req, res, await this.#readRaw(req));
  }

  /** The live replicas besides this one that can be reached. */
  #otherReplicas(): readonly ReplicaInfo[] {
    const fleet = this.#options.fleet;
    return fleet === undefined ? [] : fleet.view.live().filter((replica) => replica.id !== fleet.selfId && replica.url !== undefined);
  }

  /** Forwards to the owner; false (nothing sent) when it cannot be reached: it died since its last heartbeat. */
  async #forward(owner: ReplicaInfo, req: IncomingMessage, res: ServerResponse, raw: Buffer | undefined): Promise<boolean> {
    const fleet = this.#options.fleet;
    if (fleet === undefined || owner.url === undefined) return false;
    try {
      await fleet.forwarder.forward(req, res, owner.url, raw);
      return true;
    } catch {
      return false;
    }
  }

  async #readRaw(req: IncomingMessage): Promise<Buffer | undefined> {
    return req.method === 'POST' ? readBody(req, this.#options.maxBodyBytes) : undefined;
  }

  #challenge(error?: string, description?: string): string {
    return bearerChallenge(this.#options.authenticator.resourceMetadataUrl, error, description);
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The id of a single JSON-RPC request body, to echo on an error; undefined otherwise. */
function requestIdOf(body: unknown): string | number | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const id = (body as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? id : undefined;
}
