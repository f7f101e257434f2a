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
import { createHash, randomBytes } from 'node:crypto';

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
  private readonly cookies = new Map<string, Map<string, string>>();

  constructor(private readonly user: Credentials) {}

  private async request(url: string, form?: URLSearchParams): Promise<Response> {
    const target = new URL(url);
    const jar = this.cookies.get(target.hostname) ?? new Map<string, string>();
    const headers: Record<string, string> = {};
    if (jar.size > 0) headers.cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
    if (form !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers.origin = target.origin;
    }
    const response = await fetch(url, {
      method: form === undefined ? 'GET' : 'POST',
      headers,
      ...(form === undefined ? {} : { body: form.toString() }),
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';')[0] ?? '';
      const index = pair.indexOf('=');
      if (index <= 0) continue;
      if (/max-age=0/i.test(line)) jar.delete(pair.slice(0, index));
      else jar.set(pair.slice(0, index), pair.slice(index + 1));
    }
    this.cookies.set(target.hostname, jar);
    return response;
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

export interface Pkce {
  readonly verifier: string;
  readonly challenge: string;
}

export function pkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
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
export async function obtainToken(mcpUrl: string, user: Credentials, clientName: string): Promise<TokenSet> {
  const metadata = await discoverBroker(mcpUrl);
  // Nothing listens there: the user agent stops at the redirect and reads its query, as a native client would.
  const redirectUri = 'http://127.0.0.1:9/callback';
  const client = await registerClient(metadata, clientName, [redirectUri]);
  const { verifier, challenge } = pkce();
  const state = randomBytes(16).toString('base64url');
  const arrival = await new UserAgent(user).run(authorizationUrl(metadata, client.clientId, redirectUri, challenge, state), redirectUri);
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
    accessToken: stringField(body, 'access_token', 'token response'),
    ...(typeof refreshToken === 'string' ? { refreshToken } : {}),
    ...(typeof expiresIn === 'number' ? { expiresIn } : {}),
  };
}
