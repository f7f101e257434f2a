import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import { errorMessage } from '../errors/errors.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { Logger } from '../log/logger.js';
import type { BrokerMetrics } from '../metrics/metrics.js';
import { sendJson, sendJsonRpcError } from './errors.js';
import { MCP_PATH, type RouteHandler } from './route.js';

/** How long an idle keep-alive connection stays open. */
const IDLE_CONNECTION_MS = 65_000;
/** Node looks for requests past their deadline at most this often (its default, 30 s, lets a deadline overshoot by that much). */
const DEADLINE_CHECK_MS = 1_000;

export interface BrokerServerOptions {
  readonly publicUrl: URL;
  /** `/mcp` (the McpEndpoint). */
  readonly mcp: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Route groups tried, in order, after the fixed routes (OAuth endpoints, metadata). */
  readonly routes: readonly RouteHandler[];
  /** BROKER_HEADERS_TIMEOUT: a request's headers must arrive within this (408, connection closed). */
  readonly headersTimeoutMs: number;
  /** BROKER_BODY_TIMEOUT: the whole request, body included, must arrive within this; responses are not bounded. */
  readonly bodyTimeoutMs: number;
  readonly log: Logger;
  /** Prometheus metrics, counted here. */
  readonly metrics: BrokerMetrics;
  /** Whether /metrics is served here too; false when BROKER_METRICS_LISTEN gives it a listener of its own. */
  readonly serveMetrics: boolean;
  /** Extra readiness checks (the store writes, Forgejo answers, …): why not ready, or undefined. */
  readonly notReadyBecause?: () => Promise<string | undefined>;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** The HTTP shell: connections and their deadlines, and the routes (health, metrics, the mounted groups, `/mcp`). */
export class BrokerServer {
  readonly server: http.Server;
  readonly #options: BrokerServerOptions;
  /** Every connection, with the number of requests it has open: at 0 it is idle. */
  readonly #connections = new Map<Socket, number>();
  #draining = false;
  /** Set by `serveFrom`: stops taking connections from the borrowed listener. */
  #unmount: (() => void) | undefined;
  #closed: Promise<void> = Promise.resolve();
  #lastRequestAt = 0;

  constructor(options: BrokerServerOptions) {
    this.#options = options;
    // Node's own bounds (60 s for headers, 300 s for the request, checked every 30 s) let a
    // client that trickles headers or stalls a body hold a connection and its buffers for minutes.
    // The request deadline ends once the request has arrived, so SSE responses are never cut.
    this.server = http.createServer(
      {
        headersTimeout: options.headersTimeoutMs,
        requestTimeout: options.bodyTimeoutMs,
        connectionsCheckingInterval: Math.max(10, Math.min(DEADLINE_CHECK_MS, Math.floor(options.headersTimeoutMs / 4))),
      },
      (req, res) => void this.#serve(req, res),
    );
    // Node's 5 s default races clients and proxies that reuse an idle connection just as the
    // server closes it ("socket hang up"); keep idle connections longer than the usual 60 s
    // proxy idle timeout, so the client side is always the one to close first.
    this.server.keepAliveTimeout = IDLE_CONNECTION_MS;
    this.server.on('connection', (socket: Socket) => {
      this.#connections.set(socket, 0);
      socket.once('close', () => this.#connections.delete(socket));
    });
  }

  /** True once the broker is stopping. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Listens on host:port (port 0: any free port) and reports the address it got. */
  listen(host: string, port: number): Promise<ListenAddress> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(addressOf(this.server));
      });
    });
  }

  /**
   * Serves the connections of a server that is already listening (tests: one
   * socket on port 0 kept across broker restarts), instead of listening itself.
   */
  serveFrom(listener: NetServer): ListenAddress {
    const forward = (socket: Socket): void => void this.server.emit('connection', socket);
    listener.on('connection', forward);
    this.#unmount = () => listener.off('connection', forward);
    return addressOf(listener);
  }

  /**
   * Stops being ready (/readyz answers 503) and asks every client to close its
   * connection after the answer it is given. With `keepAccepting` the broker
   * still takes connections until `stopAccepting`; otherwise it stops at once.
   */
  startDraining(keepAccepting = false): void {
    this.#draining = true;
    if (!keepAccepting) this.stopAccepting();
  }

  /** Takes no new connections; idle keep-alive connections close. */
  stopAccepting(): void {
    this.#unmount?.();
    this.#unmount = undefined;
    if (this.server.listening) this.#closed = new Promise((resolve) => this.server.close(() => resolve()));
    // Counted here rather than by node:http, which tracks only the connections of a server that listens itself.
    for (const [socket, open] of this.#connections) if (open === 0) socket.destroy();
  }

  /** How long ago the last request arrived (milliseconds), health checks and /metrics not counted. */
  get quietMs(): number {
    return Date.now() - this.#lastRequestAt;
  }

  /** Closes every connection left (SSE streams, keep-alive), after the last frames had a turn to flush. */
  async closeConnections(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.server.closeAllConnections();
    for (const socket of this.#connections.keys()) socket.destroy();
    await this.#closed;
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { socket } = req;
    this.#connections.set(socket, (this.#connections.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const open = this.#connections.get(socket);
      if (open !== undefined) this.#connections.set(socket, open - 1);
    });
    try {
      const url = new URL(req.url ?? '/', this.#options.publicUrl);
      if (this.#draining) res.setHeader('connection', 'close');
      const { metrics } = this.#options;
      res.once('finish', () => metrics.httpResponse(routeGroup(url.pathname), res.statusCode));
      if (url.pathname === '/metrics' && this.#options.serveMetrics) {
        const { contentType, body } = await metrics.render();
        res.writeHead(200, { 'content-type': contentType }).end(body);
        return;
      }
      if (url.pathname === '/healthz') {
        sendJson(res, 200, { status: 'ok' });
        return;
      }
      if (url.pathname === '/readyz') {
        const reason = this.#draining ? 'shutting down' : await this.#options.notReadyBecause?.();
        sendJson(res, reason === undefined ? 200 : 503, reason === undefined ? { status: 'ready' } : { status: 'not ready', reason });
        return;
      }
      // Traffic, for a drain's quiet: health checks (which go on after a balancer took the broker out) are not.
      this.#lastRequestAt = Date.now();
      if (url.pathname === MCP_PATH) {
        await this.#options.mcp(req, res);
        return;
      }
      for (const route of this.#options.routes) {
        if (await route(req, res, url)) return;
      }
      sendJson(res, 404, { error: 'not_found' });
    } catch (error) {
      if (!req.complete && req.destroyed) {
        // Cut before it fully arrived (a deadline, a client gone): the client's doing, not a broker failure.
        this.#options.log.debug(
          { event: 'request_cut', err: errorMessage(error), path: req.url?.split('?')[0] },
          'request cut before it arrived',
        );
        return;
      }
      this.#options.log.error({ event: 'http_error', err: errorMessage(error), path: req.url?.split('?')[0] }, 'request failed');
      if (!res.headersSent) sendJsonRpcError(res, 500, JsonRpcCode.internalError, 'Internal error');
      else res.destroy();
    }
  }
}

function addressOf(server: NetServer): ListenAddress {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
  return { host: address.address, port: address.port };
}

/** A small, fixed set of route labels, so metrics never grow with what clients send. */
function routeGroup(pathname: string): string {
  if (pathname === MCP_PATH) return 'mcp';
  if (pathname.startsWith('/oauth/')) return 'oauth';
  if (pathname.startsWith('/.well-known/')) return 'metadata';
  if (pathname === '/healthz' || pathname === '/readyz' || pathname === '/metrics') return 'operations';
  return 'other';
}
