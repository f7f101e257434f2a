/**
 * The OAuth client side: a browser without JavaScript (`TestBrowser`), PKCE,
 * a user agent that signs in by itself (`UserAgent`, `obtainToken`), and a
 * Client ID Metadata Document server.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https, { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import * as oauth from 'oauth4webapi';

/** A redirect URI nobody listens on: the tests stop at the redirect and read its query. */
export const CLIENT_REDIRECT = 'http://127.0.0.1:9/callback';

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

// --- signing in as a client and a user would
/**
 * The OAuth side of the through-broker conformance runs, done as a real MCP
 * client and a real user would do it, over HTTP only:
 *
 * - `discoverBroker`: 401 challenge on `/mcp` -> protected-resource metadata
 *   (RFC 9728) -> authorization-server metadata (RFC 8414);
 * - `registerClient`: dynamic client registration (RFC 7591);
 * - `UserAgent`: a browser without JavaScript (a cookie jar per host,
 *   redirects followed hop by hop) that fills the pages it is shown: the
 *   broker's consent page (it presses `Approve`) and Forgejo's login form (it
 *   types the user's name and password);
 * - `obtainToken`: all of the above plus authorization code + PKCE (S256) and
 *   the token exchange.
 */

export interface BrokerMetadata {
  readonly resource: string;
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly registrationEndpoint: string;
}

export interface Credentials {
  readonly login: string;
  readonly password: string;
}

export interface RegisteredClient {
  readonly clientId: string;
  readonly clientSecret?: string;
}

export interface TokenSet {
  readonly accessToken: string;
  readonly refreshToken?: string;
  readonly expiresIn?: number;
}

function stringField(body: Record<string, unknown>, name: string, where: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '') throw new Error(`${where}: no ${name}`);
  return value;
}

async function jsonBody(response: Response, where: string): Promise<Record<string, unknown>> {
  const text = await response.text();
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) return body as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new Error(`${where}: HTTP ${response.status}, not a JSON object: ${text.slice(0, 300)}`);
}

/** What an MCP client learns from the broker before it can sign in. */
export async function discoverBroker(mcpUrl: string): Promise<BrokerMetadata> {
  const challenge = await fetch(mcpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  await challenge.body?.cancel();
  const header = challenge.headers.get('www-authenticate') ?? '';
  const metadataUrl = /resource_metadata="([^"]+)"/.exec(header)?.[1];
  if (challenge.status !== 401 || metadataUrl === undefined) {
    throw new Error(`expected a 401 Bearer challenge from ${mcpUrl}, got ${challenge.status} "${header}"`);
  }
  const resourceMetadata = await jsonBody(await fetch(metadataUrl), 'protected resource metadata');
  const resource = stringField(resourceMetadata, 'resource', 'protected resource metadata');
  const servers = resourceMetadata.authorization_servers;
  const issuer = Array.isArray(servers) && typeof servers[0] === 'string' ? servers[0] : undefined;
  if (issuer === undefined) throw new Error('protected resource metadata: no authorization_servers');
  const issuerUrl = new URL(issuer);
  const wellKnown = new URL(`/.well-known/oauth-authorization-server${issuerUrl.pathname.replace(/\/$/, '')}`, issuerUrl);
  const metadata = await jsonBody(await fetch(wellKnown), 'authorization server metadata');
  if (metadata.issuer !== issuer) throw new Error(`authorization server metadata: issuer ${String(metadata.issuer)} is not ${issuer}`);
  return {
    resource,
    issuer,
    authorizationEndpoint: stringField(metadata, 'authorization_endpoint', 'authorization server metadata'),
    tokenEndpoint: stringField(metadata, 'token_endpoint', 'authorization server metadata'),
    registrationEndpoint: stringField(metadata, 'registration_endpoint', 'authorization server metadata'),
  };
}

/** RFC 7591 registration of a public client (`token_endpoint_auth_method: none`). */
export async function registerClient(metadata: BrokerMetadata, name: string, redirectUris: readonly string[]): Promise<RegisteredClient> {
  const response = await fetch(metadata.registrationEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  const body = await jsonBody(response, 'client registration');
  if (response.status !== 201) throw new Error(`client registration: HTTP ${response.status} ${JSON.stringify(body)}`);
  const clientSecret = body.client_secret;
  return {
    clientId: stringField(body, 'client_id', 'client registration'),
    ...(typeof clientSecret === 'string' ? { clientSecret } : {}),
  };
}

interface Form {
  readonly action: string;
  readonly fields: Map<string, string>;
  readonly inputs: Set<string>;
  readonly buttons: Map<string, string[]>;
}

function decodeEntities(value: string): string {
  return value
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&#x27;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

function attribute(tag: string, name: string): string | undefined {
  const match = new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)')`, 'i').exec(tag);
  const value = match?.[2] ?? match?.[3];
  return value === undefined ? undefined : decodeEntities(value);
}

/** The first POST form of a page: hidden values, visible inputs, submit buttons. */
function parseForm(html: string, pageUrl: string): Form | undefined {
  const formMatch = /<form\b[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (formMatch === null) return undefined;
  const formTag = /<form\b[^>]*>/i.exec(formMatch[0])?.[0] ?? '';
  if ((attribute(formTag, 'method') ?? 'get').toLowerCase() !== 'post') return undefined;
  const action = new URL(attribute(formTag, 'action') ?? pageUrl, pageUrl).href;
  const fields = new Map<string, string>();
  const inputs = new Set<string>();
  const buttons = new Map<string, string[]>();
  for (const [tag] of (formMatch[1] ?? '').matchAll(/<(input|button)\b[^>]*>/gi)) {
    const name = attribute(tag, 'name');
    if (name === undefined) continue;
    const type = (attribute(tag, 'type') ?? (tag.toLowerCase().startsWith('<button') ? 'submit' : 'text')).toLowerCase();
    const value = attribute(tag, 'value') ?? '';
    if (type === 'submit') buttons.set(name, [...(buttons.get(name) ?? []), value]);
    else if (type === 'hidden') fields.set(name, value);
    else inputs.add(name);
  }
  return { action, fields, inputs, buttons };
}

/**
 * A browser without JavaScript for one user. On each page it is shown it
 * fills what a person would: user name and password on a login form, and
 * `Approve` on a consent form. It stops when it is redirected to `stopAt`.
 */
export class UserAgent {
  readonly #browser = new TestBrowser();

  constructor(private readonly user: Credentials) {}

  /** Its browser, with the cookies the sign-in left (the broker's sign-in cookie among them). */
  get browser(): TestBrowser {
    return this.#browser;
  }

  private request(url: string, form?: URLSearchParams): Promise<Response> {
    if (form === undefined) return this.#browser.request(url);
    return this.#browser.request(url, { form: Object.fromEntries(form), headers: { origin: new URL(url).origin } });
  }

  private fill(form: Form, pageUrl: string): URLSearchParams {
    const body = new URLSearchParams([...form.fields]);
    for (const input of form.inputs) {
      if (/user|login|email/i.test(input)) body.set(input, this.user.login);
      else if (/pass/i.test(input)) body.set(input, this.user.password);
    }
    const decision = form.buttons.get('decision');
    if (decision !== undefined) {
      const approve = decision.find((value) => /approve|allow|grant/i.test(value));
      if (approve === undefined) throw new Error(`consent page at ${pageUrl} has no Approve button`);
      body.set('decision', approve);
    } else {
      for (const [name, values] of form.buttons) if (values[0] !== undefined) body.set(name, values[0]);
    }
    return body;
  }

  /** Opens `url` and goes on until redirected to `stopAt`; returns that redirect's URL. */
  async run(url: string, stopAt: string, maxSteps = 20): Promise<URL> {
    let current = url;
    let response = await this.request(current);
    for (let step = 0; step < maxSteps; step++) {
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel();
        const next = new URL(location, current);
        if (next.href.startsWith(stopAt)) return next;
        current = next.href;
        response = await this.request(current);
        continue;
      }
      const html = await response.text();
      const form = response.status < 400 ? parseForm(html, current) : undefined;
      if (form === undefined)
        throw new Error(`sign-in stopped at ${current} (HTTP ${response.status}): ${html.replace(/\s+/g, ' ').slice(0, 400)}`);
      response = await this.request(form.action, this.fill(form, current));
      current = form.action;
    }
    throw new Error(`sign-in did not reach ${stopAt} in ${maxSteps} steps`);
  }
}

/** The authorization request a client sends the user to. */
export function authorizationUrl(
  metadata: BrokerMetadata,
  clientId: string,
  redirectUri: string,
  challenge: string,
  state: string,
): string {
  const url = new URL(metadata.authorizationEndpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    resource: metadata.resource,
  }).toString();
  return url.href;
}

/**
 * The whole sign-in of an MCP client for `user`: discovery, registration,
 * authorize, consent (Approve), Forgejo login, code exchange.
 */
export async function obtainToken(
  mcpUrl: string,
  user: Credentials,
  clientName: string,
  agent: UserAgent = new UserAgent(user),
): Promise<TokenSet & { readonly clientId: string }> {
  const metadata = await discoverBroker(mcpUrl);
  // Nothing listens there: the user agent stops at the redirect and reads its query, as a native client would.
  const redirectUri = 'http://127.0.0.1:9/callback';
  const client = await registerClient(metadata, clientName, [redirectUri]);
  const { verifier, challenge } = await pkce();
  const state = randomBytes(16).toString('base64url');
  const arrival = await agent.run(authorizationUrl(metadata, client.clientId, redirectUri, challenge, state), redirectUri);
  const error = arrival.searchParams.get('error');
  if (error !== null) throw new Error(`authorization failed: ${error} ${arrival.searchParams.get('error_description') ?? ''}`);
  if (arrival.searchParams.get('state') !== state) throw new Error('authorization response: state mismatch');
  const code = arrival.searchParams.get('code');
  if (code === null) throw new Error('authorization response: no code');
  const response = await fetch(metadata.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: client.clientId,
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      resource: metadata.resource,
    }).toString(),
  });
  const body = await jsonBody(response, 'token response');
  if (response.status !== 200) throw new Error(`token response: HTTP ${response.status} ${JSON.stringify(body)}`);
  const refreshToken = body.refresh_token;
  const expiresIn = body.expires_in;
  return {
    clientId: client.clientId,
    accessToken: stringField(body, 'access_token', 'token response'),
    ...(typeof refreshToken === 'string' ? { refreshToken } : {}),
    ...(typeof expiresIn === 'number' ? { expiresIn } : {}),
  };
}

// --- a Client ID Metadata Document server
/**
 * A Client ID Metadata Document served by a small real HTTPS (or, for the
 * development case, plain HTTP) server on 127.0.0.1, for the end-to-end
 * CIMD sign-in.
 *
 * Why https on loopback and not plain http: the MCP SDK's client refuses a
 * `clientMetadataUrl` that is not https (`auth()` throws
 * invalid_client_metadata before it sends anything), so the SDK's own CIMD
 * path can only be driven with an https client_id. The broker fetches it
 * because the test configures `BROKER_CIMD_ALLOW_PRIVATE=true` (127.0.0.1
 * is not a public address), and trusts it because `trust()` adds this
 * self-signed certificate (P-256, SAN IP:127.0.0.1, valid 2000-2100, made
 * for these tests only) to the CAs of node:https's global agent, the one
 * the broker's fetch uses, as an operator would with NODE_EXTRA_CA_CERTS.
 */

/** Test-only key: it protects nothing but this loopback test server. */
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+LeH5ykN9AWiNgWJ
fU4LMitsbS9jgo80sMXJVYmH/yWhRANCAAQPbrwbit3MuPez9bMB2nJ/KMkYefym
375iJTYeRr0pbJs8jgMT/R/fFzQ9qWORwFr5UDDgo29/NFrHNPfmGzrx
-----END PRIVATE KEY-----
`;

const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIB2jCCAYCgAwIBAgIBATAKBggqhkjOPQQDAjBCMUAwPgYDVQQDDDcxMjcuMC4w
LjEgKGZvcmdlam8tbWNwLWJyb2tlciBlMmUgdGVzdCBjbGllbnQgbWV0YWRhdGEp
MCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjBCMUAwPgYDVQQDDDcx
MjcuMC4wLjEgKGZvcmdlam8tbWNwLWJyb2tlciBlMmUgdGVzdCBjbGllbnQgbWV0
YWRhdGEpMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAED268G4rdzLj3s/WzAdpy
fyjJGHn8pt++YiU2Hka9KWybPI4DE/0f3xc0PaljkcBa+VAw4KNvfzRaxzT35hs6
8aNlMGMwDwYDVR0RBAgwBocEfwAAATAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQE
AwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQU+q2h/lmnxcb4A8m5
fmwNkKZI+z8wCgYIKoZIzj0EAwIDSAAwRQIgYvn/+8sHxWXDqSMF5YmGytSYYfDF
p8DLZfzFScmXrNECIQDoa6cLcT1U0XufyLxR90EQTSa3QECf3ihk+3OKMt17Rg==
-----END CERTIFICATE-----
`;

export const CIMD_PATH = '/clients/e2e-mcp-client.json';

/** A JSON document this server publishes: built from its own URL. */
export type PublishedDocument = (url: string) => Record<string, unknown>;

export class ClientMetadataServer {
  /** GET requests for the document at CIMD_PATH. */
  fetches = 0;
  readonly #server: Server;
  readonly #clientId: string;
  readonly #documents: Map<string, PublishedDocument>;
  #restoreTrust: (() => void) | undefined;

  private constructor(server: Server, clientId: string, documents: Map<string, PublishedDocument>) {
    this.#server = server;
    this.#clientId = clientId;
    this.#documents = documents;
  }

  /** Serves `document(clientId)` at `https://127.0.0.1:<port>/clients/e2e-mcp-client.json` (or http). */
  static async start(document: PublishedDocument, protocol: 'https' | 'http' = 'https'): Promise<ClientMetadataServer> {
    const documents = new Map<string, PublishedDocument>([[CIMD_PATH, document]]);
    const holder: { metadata?: ClientMetadataServer } = {};
    const serve = (req: IncomingMessage, res: ServerResponse): void => {
      const metadata = holder.metadata;
      const url = metadata === undefined ? undefined : new URL(req.url ?? '/', metadata.clientId);
      const published = url === undefined ? undefined : documents.get(url.pathname);
      if (req.method !== 'GET' || metadata === undefined || url === undefined || published === undefined) {
        res.writeHead(404).end();
        return;
      }
      if (url.pathname === CIMD_PATH) metadata.fetches += 1;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
      res.end(JSON.stringify(published(url.href)));
    };
    const server = protocol === 'https' ? createHttpsServer({ key: TEST_KEY, cert: TEST_CERT }, serve) : createHttpServer(serve);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const metadata = new ClientMetadataServer(
      server,
      `${protocol}://127.0.0.1:${(server.address() as AddressInfo).port}${CIMD_PATH}`,
      documents,
    );
    holder.metadata = metadata;
    return metadata;
  }

  /** Serves one more document at `path` (a client's metadata document, its JWKS); returns its URL. */
  publish(path: string, document: PublishedDocument): string {
    this.#documents.set(path, document);
    return new URL(path, this.#clientId).href;
  }

  /** The client_id: the document's own URL. */
  get clientId(): string {
    return this.#clientId;
  }

  /** Makes node:https's global agent (the broker's CIMD fetch) trust this server's certificate; undone by `close()`. */
  trust(): void {
    if (this.#restoreTrust !== undefined) return;
    const options = https.globalAgent.options;
    const had = Object.hasOwn(options, 'ca');
    const previous = options.ca;
    options.ca = TEST_CERT;
    this.#restoreTrust = () => {
      if (had) options.ca = previous;
      else delete options.ca;
      https.globalAgent.destroy();
    };
  }

  async close(): Promise<void> {
    this.#restoreTrust?.();
    this.#restoreTrust = undefined;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
