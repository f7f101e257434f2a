import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as oauth from 'oauth4webapi';

import { ForgejoClient } from '../../src/forgejo/client.js';
import { ForgejoCredentialManager } from '../../src/forgejo/credentials.js';
import { silentLogger } from '../../src/log/logger.js';
import { authenticateBearer } from '../../src/http/mcp-endpoint.js';
import { MCP_PATH } from '../../src/http/route.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { createOAuthServer, type OAuthServer, type OAuthServerOptions } from '../../src/oauth/server.js';
import { startForgejoStandin, type ForgejoStandin, type StandinUser } from '../../src/standin/forgejo.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

export const FORGEJO_APP = { clientId: 'broker-app', clientSecret: 'broker-app-secret' };
export const FORGEJO_SCOPES = 'read:user write:issue read:repository';
export const USERS: readonly StandinUser[] = [
  { id: 1001, login: 'alice', password: 'alice-pw', fullName: 'Alice', email: 'alice@example.test' },
  { id: 1002, login: 'bob', password: 'bob-pw', fullName: 'Bob', email: 'bob@example.test' },
];
/** A redirect URI nobody listens on: the tests stop at the redirect and read its query. */
export const CLIENT_REDIRECT = 'http://127.0.0.1:9/callback';

export type HarnessOptions = Partial<
  Pick<
    OAuthServerOptions,
    'lifetimes' | 'refreshGraceMs' | 'rateLimit' | 'cimd' | 'unusedClientTtlMs' | 'maxUnusedClients' | 'metadataDocuments'
  >
>;

/**
 * The broker's OAuth routes on a real loopback server, with the Forgejo
 * stand-in, a real SQLite file and a clock the test can move. `/mcp`
 * authenticates as the product's endpoint does, and answers the principal.
 */
export class OAuthHarness {
  readonly http: Server;
  readonly forgejo: ForgejoStandin;
  readonly dataDir: string;
  readonly key: Buffer;
  readonly options: HarnessOptions;
  brokerUrl = '';
  store!: Store;
  server!: OAuthServer;
  credentials!: ForgejoCredentialManager;
  /** Added to the real time: lets codes and tokens expire without waiting. */
  clockOffsetMs = 0;

  private constructor(http: Server, forgejo: ForgejoStandin, dataDir: string, options: HarnessOptions) {
    this.http = http;
    this.forgejo = forgejo;
    this.dataDir = dataDir;
    this.key = randomBytes(32);
    this.options = options;
  }

  static async start(options: HarnessOptions = {}): Promise<OAuthHarness> {
    // The server must listen before the harness exists: Forgejo needs the broker's callback URL.
    const ready: { harness?: OAuthHarness } = {};
    const http = createServer((req, res) => {
      const url = new URL(req.url ?? '/', ready.harness?.brokerUrl ?? 'http://127.0.0.1');
      void (async () => {
        const harness = ready.harness;
        if (harness === undefined) throw new Error('harness not ready');
        if (await harness.server.routes(req, res, url)) return;
        if (url.pathname === MCP_PATH) {
          // The product's authentication and challenge; an authenticated request is answered with its principal.
          const result = await authenticateBearer(req, res, harness.server.authenticator);
          if (result === undefined) return;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(result));
          return;
        }
        res.writeHead(404);
        res.end();
      })().catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    const brokerUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const forgejo = await startForgejoStandin({
      users: USERS,
      applications: [{ ...FORGEJO_APP, redirectUris: [`${brokerUrl}${OAUTH_PATHS.callback}`] }],
    });
    const dataDir = await mkdtemp(join(tmpdir(), 'broker-oauth-test-'));
    const harness = new OAuthHarness(http, forgejo, dataDir, options);
    harness.brokerUrl = brokerUrl;
    await harness.open();
    ready.harness = harness;
    return harness;
  }

  now = (): number => Date.now() + this.clockOffsetMs;

  /** Opens store, credential manager and OAuth server on the data directory (again, after `shutDownBroker`). */
  async open(): Promise<void> {
    this.store = await openSqliteStore({ dataDir: this.dataDir, encryptionKey: this.key });
    const client = new ForgejoClient({
      forgejoUrl: new URL(this.forgejo.url),
      clientId: FORGEJO_APP.clientId,
      clientSecret: FORGEJO_APP.clientSecret,
      scopes: FORGEJO_SCOPES,
      redirectUri: `${this.brokerUrl}${OAUTH_PATHS.callback}`,
      now: this.now,
    });
    this.credentials = new ForgejoCredentialManager({
      credentials: this.store.credentials,
      forgejo: client,
      logger: silentLogger(),
      now: this.now,
    });
    this.server = createOAuthServer({
      publicUrl: new URL(this.brokerUrl),
      store: this.store,
      forgejo: client,
      logins: this.credentials,
      logger: silentLogger(),
      now: this.now,
      rateLimit: { burst: 10_000, perMinute: 10_000 },
      cimd: { allowPrivateNetwork: true },
      ...this.options,
    });
  }

  /** Stops the broker's OAuth state as a process exit would, keeping the data directory. */
  async shutDownBroker(): Promise<void> {
    this.server.close();
    this.credentials.close();
    await this.store.close();
  }

  async close(): Promise<void> {
    await this.shutDownBroker();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    await this.forgejo.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  url(path: string): string {
    return `${this.brokerUrl}${path}`;
  }

  /** RFC 7591 registration of a client; public unless a method is given. */
  async register(metadata: Record<string, unknown> = {}): Promise<RegisteredTestClient> {
    const response = await fetch(this.url(OAUTH_PATHS.register), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'Test MCP client',
        redirect_uris: [CLIENT_REDIRECT],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
        ...metadata,
      }),
    });
    if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${await response.text()}`);
    const body = (await response.json()) as { client_id: string; client_secret?: string };
    return { clientId: body.client_id, clientSecret: body.client_secret };
  }

  /** POST to the token endpoint as a public client (or with the given extra headers). */
  async token(
    params: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
    const response = await fetch(this.url(OAUTH_PATHS.token), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(params).toString(),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown>, headers: response.headers };
  }

  /** GET /mcp with a bearer token: the principal (200) or the challenge (401). */
  async mcp(accessToken: string): Promise<{ status: number; body: Record<string, unknown>; challenge: string | null }> {
    const response = await fetch(this.url('/mcp'), { headers: { authorization: `Bearer ${accessToken}` } });
    return {
      status: response.status,
      body: (await response.json()) as Record<string, unknown>,
      challenge: response.headers.get('www-authenticate'),
    };
  }
}

export interface RegisteredTestClient {
  readonly clientId: string;
  readonly clientSecret?: string | undefined;
}

export interface Pkce {
  readonly verifier: string;
  readonly challenge: string;
}

export async function pkce(): Promise<Pkce> {
  const verifier = oauth.generateRandomCodeVerifier();
  return { verifier, challenge: await oauth.calculatePKCECodeChallenge(verifier) };
}

/**
 * A browser without JavaScript: a cookie jar per host (as browsers share
 * cookies across ports), redirects followed by hand so each hop can be seen.
 */
export class TestBrowser {
  readonly #cookies = new Map<string, Map<string, string>>();

  async request(
    url: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const target = new URL(url);
    const jar = this.#cookies.get(target.hostname) ?? new Map<string, string>();
    const headers: Record<string, string> = { ...init.headers };
    if (jar.size > 0) headers.cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
    let body: string | undefined;
    if (init.form !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(url, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const index = pair?.indexOf('=') ?? -1;
      if (pair === undefined || index <= 0) continue;
      const name = pair.slice(0, index);
      const value = pair.slice(index + 1);
      if (/max-age=0/i.test(line)) jar.delete(name);
      else jar.set(name, value);
    }
    this.#cookies.set(target.hostname, jar);
    return response;
  }

  /** Follows redirects until a page is shown or the browser is sent to `stopAt`; returns that response and URL. */
  async follow(
    url: string,
    stopAt: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Arrival> {
    let response = await this.request(url, init);
    let current = url;
    for (let hops = 0; hops < 10; hops++) {
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || location === null)
        return { kind: 'page', url: current, response, html: await response.text() };
      const next = new URL(location, current).href;
      if (next.startsWith(stopAt)) return { kind: 'redirect', url: next, params: new URL(next).searchParams };
      current = next;
      response = await this.request(current);
    }
    throw new Error('too many redirects');
  }
}

export type Arrival =
  | { readonly kind: 'page'; readonly url: string; readonly response: Response; readonly html: string }
  | { readonly kind: 'redirect'; readonly url: string; readonly params: URLSearchParams };

/** The hidden fields of the consent form. */
export function consentFields(html: string): { request: string; csrf: string } {
  const request = /name="request" value="([^"]+)"/.exec(html)?.[1];
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  if (request === undefined || csrf === undefined) throw new Error(`not a consent page:\n${html}`);
  return { request, csrf };
}

export function authorizeUrl(harness: OAuthHarness, clientId: string, challenge: string, extra: Record<string, string> = {}): string {
  const url = new URL(harness.url(OAUTH_PATHS.authorize));
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: CLIENT_REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'client-state-123',
    resource: harness.url('/mcp'),
    ...extra,
  }).toString();
  return url.href;
}

/** Follows an authorization request that must stop at the consent page (the client not yet approved); the page's HTML. */
export async function consentPage(harness: OAuthHarness, browser: TestBrowser, clientId: string, challenge: string): Promise<string> {
  const arrival = await browser.follow(authorizeUrl(harness, clientId, challenge), CLIENT_REDIRECT);
  if (arrival.kind !== 'page') assert.fail(`expected the consent page, the browser was sent to ${arrival.url}`);
  return arrival.html;
}

/**
 * The whole sign-in in one browser: authorize, consent (Approve), Forgejo
 * login (the stand-in signs `login` in automatically), callback; returns the
 * client's authorization response parameters.
 */
export async function signIn(
  harness: OAuthHarness,
  browser: TestBrowser,
  clientId: string,
  login: string,
  challenge: string,
  redirectUri = CLIENT_REDIRECT,
): Promise<URLSearchParams> {
  harness.forgejo.setAutoLogin(login);
  const arrival = await browser.follow(authorizeUrl(harness, clientId, challenge, { redirect_uri: redirectUri }), redirectUri);
  if (arrival.kind === 'redirect') return arrival.params;
  const fields = consentFields(arrival.html);
  const after = await browser.follow(harness.url(OAUTH_PATHS.consent), redirectUri, { form: { ...fields, decision: 'approve' } });
  if (after.kind !== 'redirect') throw new Error(`sign-in did not complete:\n${after.html}`);
  return after.params;
}

/** Exchanges an authorization code as a public client. */
export async function exchangeCode(
  harness: OAuthHarness,
  clientId: string,
  code: string,
  verifier: string,
  extra: Record<string, string> = {},
) {
  return harness.token({
    grant_type: 'authorization_code',
    client_id: clientId,
    code,
    redirect_uri: CLIENT_REDIRECT,
    code_verifier: verifier,
    resource: harness.url('/mcp'),
    ...extra,
  });
}

/** A whole sign-in of `login` with `client` and the code exchanged: the tokens, and the code and verifier used. */
export async function signedInTokens(harness: OAuthHarness, client: RegisteredTestClient, login = 'alice') {
  const { verifier, challenge } = await pkce();
  const params = await signIn(harness, new TestBrowser(), client.clientId, login, challenge);
  const code = params.get('code');
  assert.ok(code);
  const tokens = await exchangeCode(harness, client.clientId, code, verifier);
  assert.equal(tokens.status, 200);
  return { code, verifier, accessToken: tokens.body.access_token as string, refreshToken: tokens.body.refresh_token as string };
}
