/**
 * Stand-in Forgejo for tests and the demo: its OAuth2 provider, the API calls the
 * broker makes (`/api/v1/version`, `/api/v1/user`) and the repository API forgejo-mcp's
 * tools call (forgejo-repositories.ts), on a real `node:http` server on loopback.
 *
 * It follows Forgejo's own handlers (routers/web/auth/oauth.go), quirks included:
 * - Redirect URIs match exactly, case-insensitively, trailing slash ignored; for public
 *   clients an http loopback redirect URI matches whatever its port (RFC 8252).
 * - Errors before the redirect URI is trusted (unknown client, unregistered redirect URI)
 *   are a 400 page; later ones redirect with `error`, `error_description` and `state`.
 * - PKCE S256 and plain; public clients must use it, confidential ones may skip it.
 * - One grant per (user, application), holding the scope string of its first
 *   authorization. A confidential client with an existing grant gets a code on that grant
 *   at once, whatever scope it asks for now (the grant keeps its scope); where Forgejo
 *   asks the user to grant access (public clients) a different scope string fails with
 *   `server_error` "a grant exists with different scope".
 * - Token endpoint: form body, client credentials in the body or HTTP Basic (not
 *   URL-decoded, as in Forgejo); every error is HTTP 400 `{error, error_description}`;
 *   success is `{access_token, token_type: "bearer", expires_in, refresh_token}`, no `scope`
 *   (no id_token either: the key set is empty). One deliberate difference: a code must be
 *   redeemed with the redirect URI it was issued for (Forgejo only checks it is registered).
 * - `invalidateRefreshTokens` (Forgejo >= 9 default): every issued pair bumps the grant's
 *   counter and a refresh token carrying an older counter is refused with
 *   `unauthorized_client` "token was already used". A deleted grant is `invalid_grant`
 *   "grant does not exist"; an expired or unknown refresh token is `unauthorized_client`
 *   "unable to parse refresh token". Older access tokens stay valid until they expire.
 * - A token request it received is handled to the end even when the client stops waiting
 *   (Forgejo's handler does not watch the connection): a refresh whose answer the client
 *   never read has spent its refresh token all the same.
 * - Granular scopes: with any `read:*`/`write:*`/`all` in the grant's scope string,
 *   `GET /api/v1/user` needs `read:user` (or `write:user`, `all`), else 403; with none,
 *   the token has full access.
 *
 * It shows a login form instead of Forgejo's separate login and grant pages; the form
 * posts back to the authorize endpoint. Test controls are on the returned handle.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { escapeHtml, renderMessagePage, renderPage } from '../oauth/pages.js';
import { createRepositoryApi, type StandinRepositorySeed } from './forgejo-repositories.js';
import { teamJson, type StandinUser } from './forgejo-user.js';

export type { StandinTeam, StandinUser } from './forgejo-user.js';

export interface StandinApplication {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUris: readonly string[];
  /** Defaults to true (the broker is a confidential client). */
  readonly confidential?: boolean;
}

export interface ForgejoStandinOptions {
  readonly users: readonly StandinUser[];
  readonly applications: readonly StandinApplication[];
  /** Defaults to 127.0.0.1 and 0 (any free port). */
  readonly host?: string;
  readonly port?: number;
  /** `/api/v1/version`'s answer. */
  readonly version?: string;
  /** Defaults to 3600 (Forgejo's ACCESS_TOKEN_EXPIRATION_TIME). */
  readonly accessTokenLifetimeSeconds?: number;
  /** Defaults to 730 h (Forgejo's REFRESH_TOKEN_EXPIRATION_TIME). */
  readonly refreshTokenLifetimeSeconds?: number;
  /** Forgejo >= 9 defaults to true, Gitea to false. */
  readonly invalidateRefreshTokens?: boolean;
  /** A login that is signed in on every authorize request, so no form is shown. */
  readonly autoLogin?: string;
  /** Repositories (with issues and pull requests) it starts with. */
  readonly repositories?: readonly StandinRepositorySeed[];
}

/** Forgejo's token endpoint response. */
export interface StandinTokenResponse {
  readonly access_token: string;
  readonly token_type: 'bearer';
  readonly expires_in: number;
  readonly refresh_token: string;
}

export interface StandinStats {
  /** Every POST to the token endpoint, failed or not. */
  readonly tokenRequests: number;
  /** Successful authorization_code exchanges. */
  readonly codeExchanges: number;
  /** Successful refresh_token grants. */
  readonly refreshes: number;
  /** refresh_token grants answered with an error (injected failures excluded). */
  readonly rejectedRefreshes: number;
}

/** A token request the stand-in holds until the test lets it through. */
export interface HeldTokenRequest {
  /** Resolves once the request arrived (its body read) and is held. */
  readonly arrived: Promise<void>;
  /** Resolves once the client stopped waiting: its connection closed before any answer. */
  readonly abandoned: Promise<void>;
  /** Lets the request be handled, whether or not its client still waits; resolves once it was. */
  release(): Promise<void>;
}

export interface ForgejoStandin {
  /** Base URL without trailing slash; also the OIDC issuer. */
  readonly url: string;
  readonly stats: StandinStats;
  close(): Promise<void>;
  /** Mints a token pair for a user as the token endpoint would (creating the grant if needed). */
  issueTokens(login: string, options?: { clientId?: string; scope?: string }): StandinTokenResponse;
  /** Deletes the user's grant for the application (default: the first one): its tokens die. */
  deleteGrant(login: string, clientId?: string): boolean;
  /** The user's grant for the application, for assertions. */
  grant(login: string, clientId?: string): { readonly scope: string; readonly counter: number } | undefined;
  /** Signs this login in on every authorize request (undefined: show the form again). */
  setAutoLogin(login: string | undefined): void;
  /** The next `count` token requests answer `status` (default 500) without doing anything. */
  failTokenRequests(count: number, status?: number): void;
  /** The next `count` token requests wait `ms` before being handled (handled even if their client gave up). */
  delayTokenRequests(count: number, ms: number): void;
  /** Holds the next refresh_token grant request (code exchanges pass) until `release()`. */
  holdNextRefresh(): HeldTokenRequest;
  /** Moves the stand-in's clock forward, so tokens and codes expire without waiting. */
  advanceClock(seconds: number): void;
}

const DEFAULT_VERSION = '11.0.0+gitea-1.22.0';
const AUTHORIZATION_CODE_LIFETIME_MS = 10 * 60 * 1000;
const MAX_BODY_BYTES = 1024 * 1024;
const SESSION_COOKIE = 'standin_session';
const GRANULAR_CATEGORIES = ['activitypub', 'admin', 'issue', 'misc', 'notification', 'organization', 'package', 'repository', 'user'];

interface Grant {
  readonly userId: number;
  readonly clientId: string;
  readonly scope: string;
  counter: number;
}

interface AuthorizationCode {
  readonly grant: Grant;
  readonly redirectUri: string;
  readonly codeChallenge: string;
  readonly codeChallengeMethod: string;
  readonly expiresAt: number;
}

interface IssuedToken {
  readonly grant: Grant;
  readonly counter: number;
  readonly expiresAt: number;
}

/** The authorize parameters a login form carries through as hidden fields. */
const AUTHORIZE_PARAMS = [
  'client_id',
  'redirect_uri',
  'response_type',
  'state',
  'scope',
  'code_challenge',
  'code_challenge_method',
  'nonce',
] as const;

type AuthorizeParams = Record<(typeof AUTHORIZE_PARAMS)[number], string>;

type AuthorizeCheck =
  | { readonly kind: 'page'; readonly message: string }
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'ok'; readonly app: StandinApplication; readonly params: AuthorizeParams };

class TokenError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
  ) {
    super(`${error}: ${description}`);
  }
}

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

function normaliseRedirectUri(uri: string): string {
  return uri.toLowerCase().replace(/\/$/, '');
}

/** Forgejo's OAuth2Application.ContainsRedirectURI. */
function containsRedirectUri(app: StandinApplication, redirectUri: string): boolean {
  const registered = app.redirectUris.map(normaliseRedirectUri);
  if (registered.includes(normaliseRedirectUri(redirectUri))) return true;
  if (app.confidential !== false) return false;
  let parsed: URL;
  try {
    parsed = new URL(redirectUri);
  } catch {
    return false;
  }
  const loopback = parsed.hostname === '127.0.0.1' || parsed.hostname === '[::1]';
  if (parsed.protocol !== 'http:' || parsed.port === '' || !loopback) return false;
  parsed.port = '';
  return registered.includes(normaliseRedirectUri(parsed.href));
}

function errorRedirect(redirectUri: string, error: string, description: string, state: string): string {
  const location = new URL(redirectUri);
  location.searchParams.set('error', error);
  location.searchParams.set('error_description', description);
  location.searchParams.set('state', state);
  return location.href;
}

/** The token's effective scopes: the granular ones in the grant's scope string, or `all`. */
function effectiveScopes(scope: string): Set<string> {
  const isGranular = (item: string): boolean => {
    const [access, category = ''] = item.split(':', 2);
    return item === 'all' || ((access === 'read' || access === 'write') && GRANULAR_CATEGORIES.includes(category));
  };
  const granular = scope.split(/[\s,]+/).filter(isGranular);
  return new Set(granular.length === 0 ? ['all'] : granular);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

/**
 * Pages in the broker's look, without its Content-Security-Policy: the login form's
 * answer redirects through the broker to wherever its client listens, which a
 * form-action list drawn up here could not name.
 */
function sendHtml(res: ServerResponse, status: number, html: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/html;charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(html);
}

function redirect(res: ServerResponse, location: string, headers: Record<string, string> = {}): void {
  res.writeHead(303, { location, ...headers });
  res.end();
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Form or JSON body as flat string fields, as Forgejo's form binding reads them. */
async function readFields(req: IncomingMessage): Promise<URLSearchParams> {
  const body = await readBody(req);
  if ((req.headers['content-type'] ?? '').startsWith('application/json')) {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    return new URLSearchParams(Object.entries(parsed).map(([key, value]) => [key, String(value)]));
  }
  return new URLSearchParams(body);
}

/** `token X` (lowercase, as Forgejo) or `Bearer X` (any case). */
function bearerToken(req: IncomingMessage): string | undefined {
  const parts = (req.headers.authorization ?? '').trim().split(/\s+/);
  if (parts.length !== 2) return undefined;
  const [kind, token] = parts as [string, string];
  return kind === 'token' || kind.toLowerCase() === 'bearer' ? token : undefined;
}

function basicCredentials(req: IncomingMessage): { id: string; secret: string } | undefined {
  const [kind, data] = (req.headers.authorization ?? '').split(' ', 2);
  if (kind?.toLowerCase() !== 'basic' || data === undefined) return undefined;
  const decoded = Buffer.from(data, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new TokenError('invalid_request', 'cannot parse basic auth header');
  return { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, value] = part.trim().split('=', 2);
    if (key === name) return value;
  }
  return undefined;
}

export async function startForgejoStandin(options: ForgejoStandinOptions): Promise<ForgejoStandin> {
  const accessLifetimeSeconds = options.accessTokenLifetimeSeconds ?? 3600;
  const refreshLifetimeSeconds = options.refreshTokenLifetimeSeconds ?? 730 * 3600;
  const invalidateRefreshTokens = options.invalidateRefreshTokens ?? true;
  const version = options.version ?? DEFAULT_VERSION;
  const firstApplication = options.applications[0];

  const grants = new Map<string, Grant>();
  const codes = new Map<string, AuthorizationCode>();
  const accessTokens = new Map<string, IssuedToken>();
  const refreshTokens = new Map<string, IssuedToken>();
  const sessions = new Map<string, StandinUser>();
  const pendingDelays = new Set<NodeJS.Timeout>();
  const refreshHolds: { hold: (res: ServerResponse) => Promise<void>; handled: () => void }[] = [];
  const stats = { tokenRequests: 0, codeExchanges: 0, refreshes: 0, rejectedRefreshes: 0 };
  let clockOffsetMs = 0;
  let autoLogin = options.autoLogin;
  let failures = { remaining: 0, status: 500 };
  let delays = { remaining: 0, ms: 0 };
  let url = '';

  const now = (): number => Date.now() + clockOffsetMs;
  const repositoryApi = createRepositoryApi({ users: options.users, seeds: options.repositories ?? [], baseUrl: () => url, now });
  const grantKey = (userId: number, clientId: string): string => `${userId}\u0000${clientId}`;
  const findApp = (clientId: string): StandinApplication | undefined => options.applications.find((app) => app.clientId === clientId);
  const findUser = (login: string): StandinUser | undefined =>
    options.users.find((user) => user.login.toLowerCase() === login.toLowerCase() || user.email.toLowerCase() === login.toLowerCase());
  const requireUser = (login: string): StandinUser => {
    const user = findUser(login);
    if (user === undefined) throw new Error(`stand-in Forgejo has no user ${login}`);
    return user;
  };
  if (autoLogin !== undefined) requireUser(autoLogin);
  const appIdOrFirst = (clientId: string | undefined): string => {
    const id = clientId ?? firstApplication?.clientId;
    if (id === undefined) throw new Error('stand-in Forgejo has no application');
    return id;
  };

  function getOrCreateGrant(user: StandinUser, clientId: string, scope: string): Grant {
    const key = grantKey(user.id, clientId);
    const existing = grants.get(key);
    if (existing !== undefined) return existing;
    const created: Grant = { userId: user.id, clientId, scope, counter: 1 };
    grants.set(key, created);
    return created;
  }

  const grantIsLive = (grant: Grant): boolean => grants.get(grantKey(grant.userId, grant.clientId)) === grant;

  /** Forgejo's newAccessTokenResponse. */
  function tokenResponse(grant: Grant): StandinTokenResponse {
    if (invalidateRefreshTokens) grant.counter += 1;
    const accessToken = randomToken();
    const refreshToken = randomToken();
    accessTokens.set(accessToken, { grant, counter: grant.counter, expiresAt: now() + accessLifetimeSeconds * 1000 });
    refreshTokens.set(refreshToken, { grant, counter: grant.counter, expiresAt: now() + refreshLifetimeSeconds * 1000 });
    return { access_token: accessToken, token_type: 'bearer', expires_in: accessLifetimeSeconds, refresh_token: refreshToken };
  }

  /** The grant behind a live access token, or undefined (unknown, expired, grant deleted). */
  function accessGrant(token: string | undefined): Grant | undefined {
    const issued = token === undefined ? undefined : accessTokens.get(token);
    if (issued === undefined || issued.expiresAt <= now() || !grantIsLive(issued.grant)) return undefined;
    return issued.grant;
  }

  function checkAuthorize(params: URLSearchParams): AuthorizeCheck {
    const fields = Object.fromEntries(AUTHORIZE_PARAMS.map((name) => [name, params.get(name) ?? ''])) as AuthorizeParams;
    const app = findApp(fields.client_id);
    if (app === undefined) return { kind: 'page', message: 'unauthorized_client: Client ID not registered' };
    if (!containsRedirectUri(app, fields.redirect_uri)) return { kind: 'page', message: 'invalid_request: Unregistered Redirect URI' };
    const fail = (error: string, description: string): AuthorizeCheck => ({
      kind: 'redirect',
      location: errorRedirect(fields.redirect_uri, error, description, fields.state),
    });
    if (fields.response_type !== 'code') return fail('unsupported_response_type', 'Only code response type is supported.');
    switch (fields.code_challenge_method) {
      case 'S256':
      case 'plain':
        break;
      case '':
        if (app.confidential === false) return fail('invalid_request', 'PKCE is required for public clients');
        break;
      default:
        return fail('invalid_request', 'unsupported code challenge method');
    }
    return { kind: 'ok', app, params: fields };
  }

  /** Issues a code for a signed-in user and returns where to send the browser. */
  function authorizeUser(app: StandinApplication, params: AuthorizeParams, user: StandinUser): string {
    const existing = grants.get(grantKey(user.id, app.clientId));
    if (existing !== undefined && app.confidential === false && existing.scope !== params.scope) {
      return errorRedirect(params.redirect_uri, 'server_error', 'a grant exists with different scope', params.state);
    }
    const grant = existing ?? getOrCreateGrant(user, app.clientId, params.scope);
    const code = randomToken();
    codes.set(code, {
      grant,
      redirectUri: params.redirect_uri,
      codeChallenge: params.code_challenge,
      codeChallengeMethod: params.code_challenge_method,
      expiresAt: now() + AUTHORIZATION_CODE_LIFETIME_MS,
    });
    const location = new URL(params.redirect_uri);
    location.searchParams.set('code', code);
    if (params.state !== '') location.searchParams.set('state', params.state);
    return location.href;
  }

  function loginPage(res: ServerResponse, app: StandinApplication, params: AuthorizeParams, status: number, error?: string): void {
    const hidden = AUTHORIZE_PARAMS.map((name) => `<input type="hidden" name="${name}" value="${escapeHtml(params[name])}">`).join('');
    const body = `<p>to authorize <strong>${escapeHtml(app.clientId)}</strong> (scope: <code>${escapeHtml(params.scope || '(none)')}</code>)</p>
${error === undefined ? '' : `<p class="warn" role="alert">${escapeHtml(error)}</p>`}
<form method="post" action="/login/oauth/authorize">${hidden}
<label for="user_name">Username or email address</label><input id="user_name" name="user_name" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<div class="actions"><button type="submit" class="primary">Sign in</button></div>
</form>`;
    sendHtml(res, status, renderPage('Sign in to Forgejo', body));
  }

  function handleAuthorizeGet(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    const check = checkAuthorize(query);
    if (check.kind === 'page') return sendHtml(res, 400, renderMessagePage('Authorization failed', check.message));
    if (check.kind === 'redirect') return redirect(res, check.location);
    const sessionUser = sessions.get(cookieValue(req, SESSION_COOKIE) ?? '');
    const user = sessionUser ?? (autoLogin === undefined ? undefined : requireUser(autoLogin));
    if (user === undefined) return loginPage(res, check.app, check.params, 200);
    redirect(res, authorizeUser(check.app, check.params, user));
  }

  async function handleAuthorizePost(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readFields(req);
    const check = checkAuthorize(form);
    if (check.kind === 'page') return sendHtml(res, 400, renderMessagePage('Authorization failed', check.message));
    if (check.kind === 'redirect') return redirect(res, check.location);
    const user = findUser(form.get('user_name') ?? '');
    if (user === undefined || user.password !== form.get('password')) {
      return loginPage(res, check.app, check.params, 200, 'Username or password is incorrect.');
    }
    const session = randomToken();
    sessions.set(session, user);
    redirect(res, authorizeUser(check.app, check.params, user), {
      'set-cookie': `${SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Lax`,
    });
  }

  /** Forgejo's handleAuthorizationCode. */
  function exchangeCode(app: StandinApplication, form: URLSearchParams): StandinTokenResponse {
    const redirectUri = form.get('redirect_uri') ?? '';
    if (redirectUri !== '' && !containsRedirectUri(app, redirectUri))
      throw new TokenError('unauthorized_client', 'unexpected redirect URI');
    const codeValue = form.get('code') ?? '';
    const code = codes.get(codeValue);
    if (code === undefined || code.expiresAt <= now()) throw new TokenError('unauthorized_client', 'client is not authorized');
    if (!verifierMatches(code, form.get('code_verifier') ?? '')) throw new TokenError('unauthorized_client', 'failed PKCE code challenge');
    if (code.grant.clientId !== app.clientId) throw new TokenError('invalid_grant', 'invalid grant');
    // Stricter than Forgejo, as RFC 6749 4.1.3 asks: the code is bound to its redirect URI.
    if (normaliseRedirectUri(redirectUri) !== normaliseRedirectUri(code.redirectUri)) {
      throw new TokenError('unauthorized_client', 'unexpected redirect URI');
    }
    codes.delete(codeValue);
    if (!grantIsLive(code.grant)) throw new TokenError('invalid_grant', 'grant does not exist');
    stats.codeExchanges += 1;
    return tokenResponse(code.grant);
  }

  /** Forgejo's handleRefreshToken. */
  function refresh(form: URLSearchParams): StandinTokenResponse {
    const issued = refreshTokens.get(form.get('refresh_token') ?? '');
    if (issued === undefined || issued.expiresAt <= now()) throw new TokenError('unauthorized_client', 'unable to parse refresh token');
    if (!grantIsLive(issued.grant)) throw new TokenError('invalid_grant', 'grant does not exist');
    if (invalidateRefreshTokens && issued.counter !== issued.grant.counter) {
      throw new TokenError('unauthorized_client', 'token was already used');
    }
    stats.refreshes += 1;
    return tokenResponse(issued.grant);
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.tokenRequests += 1;
    const form = await readFields(req);
    const grantType = form.get('grant_type');
    const held = grantType === 'refresh_token' ? refreshHolds.shift() : undefined;
    if (held !== undefined) await held.hold(res);
    if (delays.remaining > 0) {
      delays.remaining -= 1;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          pendingDelays.delete(timer);
          resolve();
        }, delays.ms);
        pendingDelays.add(timer);
      });
    }
    if (failures.remaining > 0) {
      failures.remaining -= 1;
      res.writeHead(failures.status, { 'content-type': 'text/plain' }).end('injected failure');
      return;
    }
    try {
      handleTokenGrant(req, res, form, grantType);
    } finally {
      held?.handled();
    }
  }

  function handleTokenGrant(req: IncomingMessage, res: ServerResponse, form: URLSearchParams, grantType: string | null): void {
    try {
      let clientId = form.get('client_id') ?? '';
      let clientSecret = form.get('client_secret') ?? '';
      if (clientId === '' || clientSecret === '') {
        const basic = basicCredentials(req);
        if (basic !== undefined) {
          if (clientId !== '' && clientId !== basic.id) {
            throw new TokenError('invalid_request', 'client_id in request body inconsistent with Authorization header');
          }
          if (clientSecret !== '' && clientSecret !== basic.secret) {
            throw new TokenError('invalid_request', 'client_secret in request body inconsistent with Authorization header');
          }
          clientId = basic.id;
          clientSecret = basic.secret;
        }
      }
      if (grantType !== 'authorization_code' && grantType !== 'refresh_token') {
        throw new TokenError('unsupported_grant_type', 'Only refresh_token or authorization_code grant type is supported');
      }
      const app = findApp(clientId);
      if (app === undefined) throw new TokenError('invalid_client', `cannot load client with client id: '${clientId}'`);
      if (app.confidential !== false && app.clientSecret !== clientSecret) {
        const description = clientSecret === '' ? 'invalid empty client secret' : 'invalid client secret';
        throw new TokenError(grantType === 'refresh_token' ? 'invalid_client' : 'unauthorized_client', description);
      }
      sendJson(res, 200, grantType === 'authorization_code' ? exchangeCode(app, form) : refresh(form));
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      if (grantType === 'refresh_token') stats.rejectedRefreshes += 1;
      sendJson(res, 400, { error: error.error, error_description: error.description });
    }
  }

  function handleApiUser(req: IncomingMessage, res: ServerResponse): void {
    const grant = accessGrant(bearerToken(req));
    const user = grant === undefined ? undefined : options.users.find((candidate) => candidate.id === grant.userId);
    if (grant === undefined || user === undefined) return sendJson(res, 401, { message: 'token is required', url: `${url}/api/swagger` });
    const scopes = effectiveScopes(grant.scope);
    if (!scopes.has('all') && !scopes.has('read:user') && !scopes.has('write:user')) {
      return sendJson(res, 403, {
        message: `token does not have at least one of required scope(s): [read:user]`,
        url: `${url}/api/swagger`,
      });
    }
    sendJson(res, 200, {
      id: user.id,
      login: user.login,
      login_name: '',
      source_id: 0,
      full_name: user.fullName,
      email: user.email,
      avatar_url: `${url}/avatars/${user.id}`,
      html_url: `${url}/${user.login}`,
      language: 'en-US',
      is_admin: false,
      restricted: false,
      active: true,
      prohibit_login: false,
      visibility: 'public',
      username: user.login,
    });
  }

  function handleUserinfo(req: IncomingMessage, res: ServerResponse): void {
    const grant = accessGrant(bearerToken(req));
    const user = grant === undefined ? undefined : options.users.find((candidate) => candidate.id === grant.userId);
    if (user === undefined) {
      res.writeHead(401, { 'content-type': 'text/plain;charset=utf-8', 'www-authenticate': 'Bearer realm=""' });
      res.end('no valid authorization');
      return;
    }
    sendJson(res, 200, {
      sub: String(user.id),
      name: user.fullName,
      preferred_username: user.login,
      email: user.email,
      picture: `${url}/avatars/${user.id}`,
    });
  }

  async function handleIntrospect(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let basic: { id: string; secret: string } | undefined;
    try {
      basic = basicCredentials(req);
    } catch {
      basic = undefined;
    }
    const app = basic === undefined ? undefined : findApp(basic.id);
    if (app === undefined || app.clientSecret !== basic?.secret) {
      res.writeHead(401, { 'content-type': 'text/plain;charset=utf-8', 'www-authenticate': 'Basic realm=""' });
      res.end('no valid authorization');
      return;
    }
    const token = (await readFields(req)).get('token') ?? '';
    const issued = accessTokens.get(token) ?? refreshTokens.get(token);
    if (issued === undefined || issued.expiresAt <= now() || !grantIsLive(issued.grant)) return sendJson(res, 200, { active: false });
    const user = options.users.find((candidate) => candidate.id === issued.grant.userId);
    sendJson(res, 200, {
      active: true,
      scope: issued.grant.scope,
      username: user?.login,
      iss: url,
      aud: [issued.grant.clientId],
      sub: String(issued.grant.userId),
      exp: Math.floor(issued.expiresAt / 1000),
    });
  }

  function discovery(): Record<string, unknown> {
    return {
      issuer: url,
      authorization_endpoint: `${url}/login/oauth/authorize`,
      token_endpoint: `${url}/login/oauth/access_token`,
      jwks_uri: `${url}/login/oauth/keys`,
      userinfo_endpoint: `${url}/login/oauth/userinfo`,
      introspection_endpoint: `${url}/login/oauth/introspect`,
      response_types_supported: ['code', 'id_token'],
      id_token_signing_alg_values_supported: ['RS256'],
      subject_types_supported: ['public'],
      scopes_supported: ['openid', 'profile', 'email', 'groups'],
      claims_supported: [
        'aud',
        'exp',
        'iat',
        'iss',
        'sub',
        'name',
        'preferred_username',
        'profile',
        'picture',
        'website',
        'locale',
        'updated_at',
        'email',
        'email_verified',
        'groups',
      ],
      code_challenge_methods_supported: ['plain', 'S256'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
    };
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestUrl = new URL(req.url ?? '/', url);
    const endpoint = `${req.method ?? 'GET'} ${requestUrl.pathname}`;
    switch (endpoint) {
      case 'GET /.well-known/openid-configuration':
        return sendJson(res, 200, discovery());
      case 'GET /login/oauth/keys':
        return sendJson(res, 200, { keys: [] });
      case 'GET /login/oauth/authorize':
        return handleAuthorizeGet(req, res, requestUrl.searchParams);
      case 'POST /login/oauth/authorize':
        return handleAuthorizePost(req, res);
      case 'POST /login/oauth/access_token':
        return handleToken(req, res);
      case 'GET /login/oauth/userinfo':
      case 'POST /login/oauth/userinfo':
        return handleUserinfo(req, res);
      case 'POST /login/oauth/introspect':
        return handleIntrospect(req, res);
      case 'GET /api/v1/version':
        return sendJson(res, 200, { version });
      case 'GET /api/v1/user':
        return handleApiUser(req, res);
      case 'GET /api/v1/user/teams':
        return handleApiUserTeams(req, res, requestUrl);
      default:
        return handleRepositoryApi(req, res, requestUrl);
    }
  }

  /** `GET /api/v1/user/teams`: the token's user's teams across organizations, paged (`page`, `limit`, default 30), read:user as /user. */
  function handleApiUserTeams(req: IncomingMessage, res: ServerResponse, requestUrl: URL): void {
    const grant = accessGrant(bearerToken(req));
    const user = grant === undefined ? undefined : options.users.find((candidate) => candidate.id === grant.userId);
    if (grant === undefined || user === undefined) return sendJson(res, 401, { message: 'token is required', url: `${url}/api/swagger` });
    const scopes = effectiveScopes(grant.scope);
    if (!scopes.has('all') && !scopes.has('read:user') && !scopes.has('write:user')) {
      return sendJson(res, 403, {
        message: `token does not have at least one of required scope(s): [read:user]`,
        url: `${url}/api/swagger`,
      });
    }
    const teams = (user.teams ?? []).map((membership, index) => teamJson(membership, index, url));
    const page = Math.max(1, Number(requestUrl.searchParams.get('page') ?? '1') || 1);
    const limit = Math.max(1, Number(requestUrl.searchParams.get('limit') ?? '30') || 30);
    sendJson(res, 200, teams.slice((page - 1) * limit, page * limit), { 'x-total-count': String(teams.length) });
  }

  async function handleRepositoryApi(req: IncomingMessage, res: ServerResponse, requestUrl: URL): Promise<void> {
    if (!requestUrl.pathname.startsWith('/api/v1/')) return sendJson(res, 404, { message: 'not found' });
    const grant = accessGrant(bearerToken(req));
    const user = grant === undefined ? undefined : options.users.find((candidate) => candidate.id === grant.userId);
    if (grant === undefined || user === undefined) return sendJson(res, 401, { message: 'token is required', url: `${url}/api/swagger` });
    const handled = await repositoryApi.handle(req, res, { user, scopes: effectiveScopes(grant.scope) }, requestUrl);
    if (!handled) sendJson(res, 404, { message: 'not found' });
  }

  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: (error as Error).message });
      else res.destroy();
    });
  });
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  url = `http://${host}:${address.port}`;

  return {
    url,
    stats,
    async close() {
      for (const timer of pendingDelays) clearTimeout(timer);
      pendingDelays.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
    issueTokens(login, issueOptions = {}) {
      const clientId = appIdOrFirst(issueOptions.clientId);
      return tokenResponse(getOrCreateGrant(requireUser(login), clientId, issueOptions.scope ?? ''));
    },
    deleteGrant(login, clientId) {
      return grants.delete(grantKey(requireUser(login).id, appIdOrFirst(clientId)));
    },
    grant(login, clientId) {
      const grant = grants.get(grantKey(requireUser(login).id, appIdOrFirst(clientId)));
      return grant === undefined ? undefined : { scope: grant.scope, counter: grant.counter };
    },
    setAutoLogin(login) {
      if (login !== undefined) requireUser(login);
      autoLogin = login;
    },
    failTokenRequests(count, status = 500) {
      failures = { remaining: count, status };
    },
    delayTokenRequests(count, ms) {
      delays = { remaining: count, ms };
    },
    holdNextRefresh() {
      let arrive!: () => void;
      let abandon!: () => void;
      let release!: () => void;
      let handled!: () => void;
      const arrived = new Promise<void>((resolve) => (arrive = resolve));
      const abandoned = new Promise<void>((resolve) => (abandon = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      const done = new Promise<void>((resolve) => (handled = resolve));
      refreshHolds.push({
        hold: (res) => {
          res.once('close', () => {
            if (!res.writableFinished) abandon();
          });
          arrive();
          return released;
        },
        handled,
      });
      return {
        arrived,
        abandoned,
        release: () => {
          release();
          return done;
        },
      };
    },
    advanceClock(seconds) {
      clockOffsetMs += seconds * 1000;
    },
  };
}

/** Forgejo's OAuth2AuthorizationCode.ValidateCodeChallenge. */
function verifierMatches(code: AuthorizationCode, verifier: string): boolean {
  switch (code.codeChallengeMethod) {
    case 'S256':
      return createHash('sha256').update(verifier).digest('base64url') === code.codeChallenge;
    case 'plain':
      return verifier === code.codeChallenge;
    case '':
      return true;
    default:
      return false;
  }
}
