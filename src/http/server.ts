import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { classifyInboundRequest, isJsonContentType } from '@modelcontextprotocol/server';
import { isAuthFailure, type Authenticator, type Principal } from '../auth/principal.js';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { Logger } from '../log/logger.js';
import type { BrokerMetrics } from '../metrics/metrics.js';
import type { LegacyFront } from '../legacy/front.js';
import type { ModernFront } from '../modern/front.js';
import { validateModernRequest } from '../modern/validate.js';
import type { ChannelPool } from '../pool/pool.js';
import { parseJsonBody, readBody } from './body.js';
import { sendBrokerError, sendJson, sendJsonRpcError } from './errors.js';
import type { RouteHandler } from './route.js';

/** How long an idle keep-alive connection stays open. */
const IDLE_CONNECTION_MS = 65_000;
/** Node looks for requests past their deadline at most this often (its default, 30 s, lets a deadline overshoot by that much). */
const DEADLINE_CHECK_MS = 1_000;

export const MCP_PATH = '/mcp';

/** Request headers a browser client sends to /mcp, for CORS preflights. */
const MCP_REQUEST_HEADERS = 'Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID';

export interface BrokerServerOptions {
  readonly publicUrl: URL;
  /** Origins besides the broker's own that may call `/mcp` from a browser. */
  readonly allowedOrigins: readonly string[];
  readonly authenticator: Authenticator;
  readonly pool: ChannelPool;
  readonly legacy: LegacyFront;
  readonly modern: ModernFront;
  /** Route groups tried, in order, before `/mcp` (OAuth endpoints, metadata). */
  readonly routes: readonly RouteHandler[];
  readonly maxBodyBytes: number;
  /** BROKER_HEADERS_TIMEOUT: a request's headers must arrive within this (408, connection closed). */
  readonly headersTimeoutMs: number;
  /** BROKER_BODY_TIMEOUT: the whole request, body included, must arrive within this; responses are not bounded. */
  readonly bodyTimeoutMs: number;
  readonly retryAfterSeconds: number;
  readonly log: Logger;
  /** Prometheus metrics, counted here; absent in most tests. */
  readonly metrics?: BrokerMetrics;
  /** Whether /metrics is served here too; false when BROKER_METRICS_LISTEN gives it a listener of its own. Default true. */
  readonly serveMetrics?: boolean;
  /** Extra readiness checks (the store writes, Forgejo answers, …): why not ready, or undefined. */
  readonly notReadyBecause?: () => Promise<string | undefined>;
}

/** The broker's HTTP face: health, the mounted route groups and the authenticated `/mcp` endpoint. */
export class BrokerServer {
  readonly server: http.Server;
  private draining = false;
  private readonly sockets = new Set<Socket>();
  private readonly allowedOrigins: Set<string>;

  constructor(private readonly options: BrokerServerOptions) {
    this.allowedOrigins = new Set([options.publicUrl.origin, ...options.allowedOrigins]);
    // Node's own bounds (60 s for headers, 300 s for the request, checked every 30 s) let a
    // client that trickles headers or stalls a body hold a connection and its buffers for minutes.
    // The request deadline ends once the request has arrived, so SSE responses are never cut.
    this.server = http.createServer(
      {
        headersTimeout: options.headersTimeoutMs,
        requestTimeout: options.bodyTimeoutMs,
        connectionsCheckingInterval: Math.max(10, Math.min(DEADLINE_CHECK_MS, Math.floor(options.headersTimeoutMs / 4))),
      },
      (req, res) => void this.serve(req, res),
    );
    // Node's 5 s default races clients and proxies that reuse an idle connection just as the
    // server closes it ("socket hang up"); keep idle connections longer than the usual 60 s
    // proxy idle timeout, so the client side is always the one to close first.
    this.server.keepAliveTimeout = IDLE_CONNECTION_MS;
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  /**
   * Graceful stop: refuse new connections and requests, let requests waiting
   * on a child finish (bounded), end every session and its child, then close
   * what is left (idle keep-alive and SSE connections).
   */
  async shutdown(graceMs: number): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.options.pool.inflight > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    await Promise.all([this.options.legacy.stop(), this.options.modern.stop(), this.options.pool.stop()]);
    // Give the final SSE frames a moment to flush before the sockets go.
    await new Promise((resolve) => setImmediate(resolve));
    this.server.closeAllConnections();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', this.options.publicUrl);
      if (this.draining) res.setHeader('Connection', 'close');
      const metrics = this.options.metrics;
      if (metrics !== undefined) res.once('finish', () => metrics.httpResponse(routeGroup(url.pathname), res.statusCode));
      if (url.pathname === '/metrics' && metrics !== undefined && this.options.serveMetrics !== false) {
        const { contentType, body } = await metrics.render();
        res.writeHead(200, { 'Content-Type': contentType }).end(body);
        return;
      }
      if (url.pathname === '/healthz') {
        sendJson(res, 200, { status: 'ok' });
        return;
      }
      if (url.pathname === '/readyz') {
        const reason = this.draining ? 'shutting down' : await this.options.notReadyBecause?.();
        sendJson(res, reason === undefined ? 200 : 503, reason === undefined ? { status: 'ready' } : { status: 'not ready', reason });
        return;
      }
      if (url.pathname === MCP_PATH) {
        await this.serveMcp(req, res);
        return;
      }
      for (const route of this.options.routes) {
        if (await route(req, res, url)) return;
      }
      sendJson(res, 404, { error: 'not_found' });
    } catch (error) {
      if (!req.complete && req.destroyed) {
        // Cut before it fully arrived (a deadline, a client gone): the client's doing, not a broker failure.
        this.options.log.debug({ event: 'request_cut', err: errorMessage(error), path: req.url?.split('?')[0] }, 'request cut before it arrived');
        return;
      }
      this.options.log.error({ event: 'http_error', err: errorMessage(error), path: req.url?.split('?')[0] }, 'request failed');
      if (!res.headersSent) sendJsonRpcError(res, 500, JsonRpcCode.internalError, 'Internal error');
      else res.destroy();
    }
  }

  private async serveMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const origin = req.headers.origin;
    if (origin !== undefined && !this.allowedOrigins.has(origin)) {
      sendJsonRpcError(res, 403, JsonRpcCode.requestRefused, `Forbidden: Origin ${origin} is not allowed`);
      return;
    }
    if (origin !== undefined) {
      // A browser client on an allowed origin (MCP Inspector's web UI, say) may read what it needs.
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Expose-Headers', 'Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, POST, DELETE, OPTIONS',
        'Access-Control-Allow-Headers': MCP_REQUEST_HEADERS,
        'Access-Control-Max-Age': '600',
      });
      res.end();
      return;
    }
    if (req.method !== 'POST' && req.method !== 'GET' && req.method !== 'DELETE') {
      sendJsonRpcError(res, 405, JsonRpcCode.requestRefused, 'Method not allowed.', { Allow: 'GET, POST, DELETE, OPTIONS' });
      return;
    }
    try {
      if (this.draining) throw new BrokerError('unavailable', 'The broker is shutting down');
      const principal = await this.authenticate(req, res);
      if (principal === undefined) return;
      const body = req.method === 'POST' ? parseJsonBody(await readBody(req, this.options.maxBodyBytes)) : undefined;
      await this.dispatch(req, res, principal, body);
    } catch (error) {
      if (!isBrokerError(error)) throw error;
      sendBrokerError(res, error, {
        retryAfterSeconds: this.options.retryAfterSeconds,
        ...(error.kind === 'credential_revoked' ? { challenge: this.challenge('invalid_token', 'The Forgejo sign-in has ended; sign in again') } : {}),
      });
    }
  }

  /**
   * Routes by era, as the 2026-07-28 versioning page describes: a request
   * carrying the per-request `_meta` envelope is served statelessly; anything
   * else (initialize, session traffic, GET, DELETE) is the legacy session path.
   */
  private async dispatch(req: IncomingMessage, res: ServerResponse, principal: Principal, body: unknown): Promise<void> {
    const outcome = classifyInboundRequest({
      httpMethod: req.method ?? 'GET',
      protocolVersionHeader: single(req.headers['mcp-protocol-version']),
      mcpMethodHeader: single(req.headers['mcp-method']),
      mcpNameHeader: single(req.headers['mcp-name']),
      body,
    });
    if (outcome.kind === 'legacy') {
      await this.options.legacy.handle(req, res, principal, body);
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
    await this.options.modern.handle(req, res, principal, outcome.message);
  }

  /** Resolves the bearer token, or answers 401 with the RFC 9728 challenge and returns undefined. */
  private async authenticate(req: IncomingMessage, res: ServerResponse): Promise<Principal | undefined> {
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer +([\x21-\x7e]+) *$/i.exec(header);
    if (match === null) {
      const challenge = header === undefined ? this.challenge() : this.challenge('invalid_request', 'Use the Bearer scheme');
      sendJsonRpcError(res, 401, JsonRpcCode.requestRefused, 'Unauthorized: a Bearer token is required', { 'WWW-Authenticate': challenge });
      return undefined;
    }
    const result = await this.options.authenticator.authenticate(match[1] as string);
    if (isAuthFailure(result)) {
      sendJsonRpcError(res, 401, JsonRpcCode.requestRefused, `Unauthorized: ${result.description}`, {
        'WWW-Authenticate': this.challenge(result.error, result.description),
      });
      return undefined;
    }
    return result;
  }

  private challenge(error?: string, description?: string): string {
    const parts = [`resource_metadata="${this.options.authenticator.resourceMetadataUrl}"`];
    if (error !== undefined) parts.push(`error="${error}"`);
    if (description !== undefined) parts.push(`error_description="${description.replaceAll('"', "'")}"`);
    return `Bearer ${parts.join(', ')}`;
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

/** A small, fixed set of route labels, so metrics never grow with what clients send. */
function routeGroup(pathname: string): string {
  if (pathname === MCP_PATH) return 'mcp';
  if (pathname.startsWith('/oauth/')) return 'oauth';
  if (pathname.startsWith('/.well-known/')) return 'metadata';
  if (pathname === '/healthz' || pathname === '/readyz' || pathname === '/metrics') return 'operations';
  return 'other';
}
