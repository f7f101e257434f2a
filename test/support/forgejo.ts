/**
 * Forgejo as tests see it: the recording front before the stand-in
 * (`ForgejoFront`), the two API calls a child makes (`TestForge`), and the
 * fingerprint of a Forgejo token as the stand-in child reports it.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ForgejoStandin } from '../../src/standin/forgejo.js';
import { teamJson, type StandinTeam } from '../../src/standin/forgejo-user.js';

// --- the recording front
/**
 * Forgejo as the end-to-end tests see it on the wire: a pass-through in
 * front of the Forgejo stand-in that records every request and every token
 * pair the stand-in's token endpoint hands out. The broker, the browser and
 * the children all talk to the front (it is the broker's FORGEJO_URL), so
 * the tests know exactly which Forgejo tokens exist, and the stand-in itself
 * says whose each one is (`GET /api/v1/user`).
 *
 * The only rewrite: the discovery document names the front instead of the
 * stand-in, as Forgejo's names its own AppURL.
 */

/** What the stand-in child's `token_fingerprint` tool answers for a token. */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 12);
}

export interface IssuedForgejoTokens {
  readonly grantType: string;
  readonly accessToken: string;
  readonly refreshToken: string;
}

const HOP_BY_HOP = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade']);

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

export class ForgejoFront {
  /** Token pairs the stand-in issued, in order (code exchanges and refreshes). */
  readonly issued: IssuedForgejoTokens[] = [];
  /** Every request, as `METHOD /path`. */
  readonly requests: string[] = [];
  readonly #server: Server;
  readonly #standin: ForgejoStandin;
  #url = '';

  private constructor(server: Server, standin: ForgejoStandin) {
    this.#server = server;
    this.#standin = standin;
  }

  static async start(standin: ForgejoStandin): Promise<ForgejoFront> {
    const holder: { front?: ForgejoFront } = {};
    const server = createServer((req, res) => {
      const front = holder.front;
      if (front === undefined) {
        res.writeHead(503).end();
        return;
      }
      front.#forward(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(String(error));
        else res.destroy();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const front = new ForgejoFront(server, standin);
    front.#url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    holder.front = front;
    return front;
  }

  /** The base URL to configure as FORGEJO_URL. */
  get url(): string {
    return this.#url;
  }

  count(method: string, path: string): number {
    return this.requests.filter((entry) => entry === `${method} ${path}`).length;
  }

  /** Whose token this is, in the stand-in's own words; undefined when it is not (or no longer) valid. */
  async ownerOf(accessToken: string): Promise<string | undefined> {
    const response = await fetch(`${this.#standin.url}/api/v1/user`, { headers: { authorization: `token ${accessToken}` } });
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    return ((await response.json()) as { login: string }).login;
  }

  /** Every access token issued so far, by fingerprint, with the login it belongs to. */
  async ownersByFingerprint(): Promise<Map<string, string>> {
    const owners = new Map<string, string>();
    for (const { accessToken } of this.issued) {
      const login = await this.ownerOf(accessToken);
      if (login !== undefined) owners.set(tokenFingerprint(accessToken), login);
    }
    return owners;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const target = new URL(req.url ?? '/', this.#standin.url);
    this.requests.push(`${method} ${target.pathname}`);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
    }
    const body = method === 'GET' || method === 'HEAD' ? undefined : await readAll(req);
    const upstream = await fetch(target, {
      method,
      headers,
      body: body === undefined ? undefined : new Uint8Array(body),
      redirect: 'manual',
    });
    let payload = Buffer.from(await upstream.arrayBuffer());
    if (target.pathname === '/.well-known/openid-configuration' && upstream.ok) {
      payload = Buffer.from(payload.toString('utf8').replaceAll(this.#standin.url, this.#url));
    }
    if (target.pathname === '/login/oauth/access_token' && upstream.status === 200) {
      const grantType = new URLSearchParams(body?.toString('utf8') ?? '').get('grant_type') ?? '';
      const tokens = JSON.parse(payload.toString('utf8')) as { access_token: string; refresh_token: string };
      this.issued.push({ grantType, accessToken: tokens.access_token, refreshToken: tokens.refresh_token });
    }
    const out: Record<string, string | string[]> = {};
    upstream.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.has(name) && name !== 'set-cookie') out[name] = value;
    });
    const cookies = upstream.headers.getSetCookie();
    if (cookies.length > 0) out['set-cookie'] = cookies;
    out['content-length'] = String(payload.length);
    res.writeHead(upstream.status, out);
    res.end(payload);
  }
}

// --- the forge of the in-process broker
export interface ForgeUser {
  readonly id: number;
  readonly login: string;
  /** Organization teams, as `GET /api/v1/user/teams` lists them. */
  readonly teams?: readonly StandinTeam[];
}

/**
 * The two Forgejo API calls a child makes (`/api/v1/version` at start,
 * `/api/v1/user` for get_me), and the one the tool policy makes
 * (`/api/v1/user/teams`), on a real loopback server, for core tests that
 * need no OAuth. Tokens are added as the test mints them.
 */
export class TestForge {
  private readonly tokens = new Map<string, ForgeUser>();
  versionStatus = 200;
  /** `GET /api/v1/user/teams` requests answered. */
  teamRequests = 0;
  /** `GET /api/v1/user/teams` requests held unanswered (`holdTeams`). */
  teamRequestsHeld = 0;
  #teamsHeld: Promise<void> | undefined;

  /** Holds every `GET /api/v1/user/teams` until the returned function is called (Forgejo slow to answer). */
  holdTeams(): () => void {
    let release!: () => void;
    this.#teamsHeld = new Promise((resolve) => (release = resolve));
    return () => {
      this.#teamsHeld = undefined;
      release();
    };
  }

  private readonly server: Server = createServer((req, res) => this.serve(req.url ?? '', req.headers.authorization, res));
  url = '';

  static async start(): Promise<TestForge> {
    const forge = new TestForge();
    forge.server.listen(0, '127.0.0.1');
    await once(forge.server, 'listening');
    forge.url = `http://127.0.0.1:${(forge.server.address() as AddressInfo).port}`;
    return forge;
  }

  addToken(token: string, user: ForgeUser): void {
    this.tokens.set(token, user);
  }

  private serve(path: string, authorization: string | undefined, res: import('node:http').ServerResponse): void {
    if (path === '/api/v1/version') {
      res.writeHead(this.versionStatus, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ version: '11.0.0+gitea-1.22.0' }));
      return;
    }
    const token = /^(?:token|bearer) (.+)$/i.exec(authorization ?? '')?.[1];
    const user = token === undefined ? undefined : this.tokens.get(token);
    if (path.startsWith('/api/v1/user/teams') && this.#teamsHeld !== undefined) {
      this.teamRequestsHeld++;
      void this.#teamsHeld.then(() => this.serve(path, authorization, res));
      return;
    }
    if (path.startsWith('/api/v1/user/teams')) {
      this.teamRequests++;
      res.writeHead(user === undefined ? 401 : 200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          user === undefined ? { message: 'invalid token' } : (user.teams ?? []).map((team, i) => teamJson(team, i, this.url)),
        ),
      );
      return;
    }
    if (path === '/api/v1/user') {
      res.writeHead(user === undefined ? 401 : 200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          user === undefined
            ? { message: 'invalid token' }
            : { id: user.id, login: user.login, full_name: user.login, email: `${user.login}@example.test` },
        ),
      );
      return;
    }
    res.writeHead(404).end();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The demo child's whole catalogue, sorted: the real forgejo-mcp's tool names the stand-in has, and its own get_me. */
export const DEMO_TOOL_NAMES: readonly string[] = [
  'create_issue',
  'create_issue_comment',
  'get_issue_by_index',
  'get_me',
  'get_my_user_info',
  'get_pull_request_by_index',
  'list_issue_comments',
  'list_my_repos',
  'list_repo_issues',
  'list_repo_pull_requests',
];
