/**
 * The stand-in forgejo-mcp's `--transport http` mode: the multi-tenant MCP Streamable HTTP
 * server of the real forgejo-mcp v2.34+/v3, its quirks included. The contract is written in
 * forgejo-mcp.ts's header; this file is the server.
 */
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { WebStandardStreamableHTTPServerTransport, type AuthInfo, type McpServer, type ServerContext } from '@modelcontextprotocol/server';

/** The real server's HTTP limits (v2), except the write deadline, which `--write-timeout-ms` sets. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const KEEP_ALIVE_TIMEOUT_MS = 120_000;
const MAX_HEADER_BYTES = 64 * 1024;

/**
 * No SSE keep-alive comments: a response writes nothing until its first message, so a silent
 * call cut at the deadline gets no response at all, whatever the deadline.
 */
const NO_KEEP_ALIVE = 0;

const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);
const AUTHORIZATION = /^(bearer|token)[ \t]+(\S+)[ \t]*$/i;

/** Whose Forgejo token a tool call uses: stdio's one token, or the token of the HTTP request it serves. */
export interface RequestCredentials {
  /** The Forgejo token of the MCP request `ctx` serves, read afresh on every call. */
  token(ctx: ServerContext): string;
  /** Forgejo answered 401 to a call made with that token. */
  refused(ctx: ServerContext): void;
}

/** What `GET /stats` answers. */
interface Stats {
  /** GET requests to `/mcp` being answered now: the sessions' open SSE streams (and refusals on their way). */
  getStreams: number;
  refusedMissingAuthorization: number;
  refusedMalformedAuthorization: number;
  requests: number;
  sessions: number;
  tokensSeen: string[];
}

export interface HttpOptions {
  readonly host: string;
  readonly port: number;
  /** Host names (or `host:port`) accepted besides the loopback names. */
  readonly allowedHosts: readonly string[];
  /** Origins accepted; a request with any other Origin is refused. */
  readonly allowedOrigins: readonly string[];
  /** The token a request without Authorization acts with: only with `--allow-operator-token-fallback` and a token of its own. */
  readonly operatorToken: string | undefined;
  readonly stateless: boolean;
  readonly writeTimeoutMs: number;
  readonly debug: boolean;
  /** A new MCP server with every tool, reading tokens from `httpCredentials`. */
  readonly newServer: () => McpServer;
  readonly log: (message: string) => void;
}

export interface HttpStandin {
  /** `http://HOST:PORT/mcp`, with the port it got. */
  readonly url: string;
  /** Ends every session and the server. */
  close(): Promise<void>;
}

/** The Node response as the routes see it: they only wait for it to close. */
interface Closing {
  once(event: 'close', listener: () => void): unknown;
}

interface Session {
  readonly server: McpServer;
  readonly transport: WebStandardStreamableHTTPServerTransport;
}

/** First 12 hex chars of sha256(token): how `token_fingerprint` and `/stats` name a token. */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 12);
}

/** The HTTP requests (by the AuthInfo made for each) whose token Forgejo refused. */
const refusedByForgejo = new WeakSet<AuthInfo>();

/** The token of the HTTP request a tool call came with; each HTTP request gets an AuthInfo of its own. */
export const httpCredentials: RequestCredentials = {
  token(ctx) {
    const authInfo = ctx.http?.authInfo;
    if (authInfo === undefined) throw new Error('a request reached a tool without the token of its HTTP request');
    return authInfo.token;
  },
  refused(ctx) {
    if (ctx.http?.authInfo !== undefined) refusedByForgejo.add(ctx.http.authInfo);
  },
};

function jsonError(status: number, error: string, description: string, headers: Record<string, string> = {}): Response {
  return Response.json({ error, error_description: description }, { status, headers });
}

const jsonRpcError = (status: number, message: string, code: number, headers: Record<string, string> = {}): Response =>
  Response.json({ jsonrpc: '2.0', error: { code, message }, id: null }, { status, headers });

/** Starts the server; resolves once it listens, with the port it got. */
export async function serveHttp(options: HttpOptions): Promise<HttpStandin> {
  const standin = new ForgejoMcpHttp(options);
  return standin.listen();
}

class ForgejoMcpHttp {
  readonly #options: HttpOptions;
  readonly #sessions = new Map<string, Session>();
  readonly #stats = { getStreams: 0, refusedMissingAuthorization: 0, refusedMalformedAuthorization: 0, requests: 0 };
  readonly #tokensSeen = new Set<string>();
  readonly #server: Server;
  /**
   * Node request -> Web Request -> route -> Web Response -> Node response. Streamed bodies are
   * marked chunked, as in src/legacy/session.ts: otherwise the adapter waits a timer for a second chunk.
   */
  readonly #listener = getRequestListener(
    async (request, env: { outgoing: Closing }) => {
      const response = await this.#route(request, env.outgoing);
      if (response.body !== null && !response.headers.has('content-length')) response.headers.set('transfer-encoding', 'chunked');
      return response;
    },
    { overrideGlobalObjects: false },
  );

  constructor(options: HttpOptions) {
    this.#options = options;
    this.#server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => this.#handle(req, res));
    this.#server.headersTimeout = HEADERS_TIMEOUT_MS;
    this.#server.requestTimeout = REQUEST_TIMEOUT_MS;
    this.#server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  }

  async listen(): Promise<HttpStandin> {
    this.#server.listen(this.#options.port, this.#options.host);
    await once(this.#server, 'listening');
    const { port } = this.#server.address() as AddressInfo;
    const host = this.#options.host.includes(':') ? `[${this.#options.host}]` : this.#options.host;
    return { url: `http://${host}:${port}/mcp`, close: () => this.#close() };
  }

  async #close(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(sessions.map((session) => session.server.close()));
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  /** The Node-level part: the write deadline and the Host and Origin checks, before any parsing. */
  #handle(req: IncomingMessage, res: ServerResponse): void {
    // The real server's write timeout: whatever the response is (an SSE stream included), it is cut at the deadline.
    const deadline = setTimeout(() => res.destroy(), this.#options.writeTimeoutMs);
    res.once('close', () => clearTimeout(deadline));
    if (req.method === 'GET' && req.url?.startsWith('/mcp') === true) {
      this.#stats.getStreams += 1;
      res.once('close', () => (this.#stats.getStreams -= 1));
    }

    const refusal = this.#refuseHostOrOrigin(req.headers.host, req.headers.origin);
    if (refusal !== undefined) {
      if (this.#options.debug) this.#options.log(`refused ${req.method} ${req.url}: ${refusal}`);
      res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'forbidden', error_description: refusal }));
      return;
    }
    void this.#listener(req, res);
  }

  #refuseHostOrOrigin(host: string | undefined, origin: string | undefined): string | undefined {
    if (!this.#hostAllowed(host)) return `Host ${host ?? '(none)'} is not allowed`;
    if (origin !== undefined && !this.#options.allowedOrigins.some((allowed) => allowed.toLowerCase() === origin.toLowerCase())) {
      return `Origin ${origin} is not allowed`;
    }
    return undefined;
  }

  #hostAllowed(host: string | undefined): boolean {
    if (host === undefined) return false;
    let hostname: string;
    try {
      hostname = new URL(`http://${host}`).hostname;
    } catch {
      return false;
    }
    const whole = host.toLowerCase();
    if (LOOPBACK_HOSTS.has(hostname)) return true;
    // An entry with a port names that host and port; one without names the host on any port.
    return this.#options.allowedHosts.some((allowed) => [whole, hostname].includes(allowed.toLowerCase()));
  }

  async #route(request: Request, outgoing: Closing): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === '/stats' && request.method === 'GET') return Response.json(this.#statsNow());
    if (pathname !== '/mcp') return jsonError(404, 'not_found', `no route for ${pathname}`);
    this.#stats.requests += 1;

    const authInfo = this.#authenticate(request.headers.get('authorization'));
    if (typeof authInfo === 'string') {
      if (this.#options.debug) this.#options.log(`refused ${request.method} /mcp: ${authInfo}`);
      return jsonError(401, 'unauthorized', authInfo, { 'www-authenticate': 'Bearer' });
    }

    const response = await this.#serveMcp(request, authInfo, outgoing);
    return request.method === 'POST' ? this.#withForgejoVerdict(response, authInfo, request.signal) : response;
  }

  #statsNow(): Stats {
    return { ...this.#stats, sessions: this.#sessions.size, tokensSeen: [...this.#tokensSeen] };
  }

  /** The request's AuthInfo (one per request, carrying its token), or why it is refused; counts refusals. */
  #authenticate(header: string | null): AuthInfo | string {
    if (header === null) {
      if (this.#options.operatorToken !== undefined) return { token: this.#options.operatorToken, clientId: 'operator', scopes: [] };
      this.#stats.refusedMissingAuthorization += 1;
      return 'the Authorization header is required';
    }
    const match = AUTHORIZATION.exec(header);
    if (match === null) {
      this.#stats.refusedMalformedAuthorization += 1;
      return 'the Authorization header must be "Bearer <token>" or "token <token>"';
    }
    const token = match[2] as string;
    this.#tokensSeen.add(tokenFingerprint(token));
    return { token, clientId: 'forgejo-token', scopes: [] };
  }

  async #serveMcp(request: Request, authInfo: AuthInfo, outgoing: Closing): Promise<Response> {
    if (!['POST', 'GET', 'DELETE'].includes(request.method)) {
      return jsonRpcError(405, 'Method not allowed.', -32000, { allow: 'GET, POST, DELETE' });
    }
    if (this.#options.stateless) {
      if (request.method !== 'POST') return jsonRpcError(405, 'Method not allowed.', -32000, { allow: 'POST' });
      return this.#serveStateless(request, authInfo, outgoing);
    }
    const sessionId = request.headers.get('mcp-session-id');
    if (sessionId === null) {
      if (request.method !== 'POST') return jsonRpcError(400, 'Bad Request: Mcp-Session-Id header is required', -32000);
      return this.#openSession(request, authInfo);
    }
    const session = this.#sessions.get(sessionId);
    if (session === undefined) return jsonRpcError(404, 'Session not found', -32001);
    return session.transport.handleRequest(request, { authInfo });
  }

  /** `--stateless`: a fresh server and transport for each POST, gone once its response is. */
  async #serveStateless(request: Request, authInfo: AuthInfo, outgoing: Closing): Promise<Response> {
    const server = this.#options.newServer();
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, keepAliveMs: NO_KEEP_ALIVE });
    await server.connect(transport);
    outgoing.once('close', () => void server.close());
    return transport.handleRequest(request, { authInfo });
  }

  /**
   * A POST without a session id goes to a new session's transport, which answers it as the SDK
   * does; the session is kept only if that was an initialize (the transport then has an id).
   */
  async #openSession(request: Request, authInfo: AuthInfo): Promise<Response> {
    const server = this.#options.newServer();
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      keepAliveMs: NO_KEEP_ALIVE,
      onsessioninitialized: (sessionId) => {
        this.#sessions.set(sessionId, { server, transport });
        if (this.#options.debug) this.#options.log(`session ${sessionId} opened`);
      },
    });
    // A DELETE closes the transport, and so the server.
    server.server.onclose = () => {
      if (transport.sessionId !== undefined && this.#sessions.delete(transport.sessionId) && this.#options.debug) {
        this.#options.log(`session ${transport.sessionId} closed`);
      }
    };
    await server.connect(transport);
    const response = await transport.handleRequest(request, { authInfo });
    if (transport.sessionId === undefined) await server.close();
    return response;
  }

  /**
   * The stand-in's rendering of Forgejo refusing the request's token: that HTTP request is
   * answered 401 (`invalid_token`) instead of its result. The SSE response is held until its
   * first event; if a tool met Forgejo's 401 by then, the event is dropped for the 401. (A tool
   * that sent a notification before calling Forgejo would have committed the 200 already; no
   * forge tool does.)
   */
  async #withForgejoVerdict(response: Response, authInfo: AuthInfo, signal: AbortSignal): Promise<Response> {
    if (response.body === null || !response.headers.get('content-type')?.startsWith('text/event-stream')) return response;
    const reader = response.body.getReader();
    const onAbort = (): void => void reader.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    const first = await reader.read();
    signal.removeEventListener('abort', onAbort);
    if (refusedByForgejo.has(authInfo)) {
      await reader.cancel();
      return jsonError(401, 'invalid_token', 'Forgejo refused the token (401)', { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.done) controller.close();
        else controller.enqueue(first.value);
      },
      async pull(controller) {
        const next = await reader.read();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, { status: response.status, headers: response.headers });
  }
}
