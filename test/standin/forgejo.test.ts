import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as oauth from 'oauth4webapi';
import { renderPage } from '../../src/oauth/pages.js';
import { startForgejoStandin, type ForgejoStandin, type ForgejoStandinOptions } from '../../src/standin/forgejo.js';

const BROKER_REDIRECT = 'https://broker.example.test/oauth/callback';
const PUBLIC_REDIRECT = 'http://127.0.0.1/callback';

const USERS: ForgejoStandinOptions['users'] = [
  { id: 1, login: 'alice', password: 'alice-pw', fullName: 'Alice A.', email: 'alice@example.test' },
  { id: 2, login: 'bob', password: 'bob-pw', fullName: 'Bob B.', email: 'bob@example.test' },
];
const APPLICATIONS: ForgejoStandinOptions['applications'] = [
  { clientId: 'broker', clientSecret: 'gto_broker_secret', redirectUris: [BROKER_REDIRECT] },
  { clientId: 'other', clientSecret: 'gto_other_secret', redirectUris: ['https://other.example.test/cb'] },
  { clientId: 'public-app', clientSecret: '', redirectUris: [PUBLIC_REDIRECT], confidential: false },
];

const insecure = { [oauth.allowInsecureRequests]: true };
const broker: oauth.Client = { client_id: 'broker' };
// Forgejo does not URL-decode HTTP Basic credentials and oauth4webapi's ClientSecretBasic
// percent-encodes the `_` (and `=`) of Forgejo's `gto_…` secrets: client_secret_post it is.
const brokerAuth = oauth.ClientSecretPost('gto_broker_secret');

async function start(t: { after(fn: () => Promise<void>): void }, overrides: Partial<ForgejoStandinOptions> = {}): Promise<ForgejoStandin> {
  const forgejo = await startForgejoStandin({ users: USERS, applications: APPLICATIONS, ...overrides });
  t.after(() => forgejo.close());
  return forgejo;
}

async function discover(forgejo: ForgejoStandin): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(forgejo.url);
  return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...insecure, algorithm: 'oidc' }));
}

interface AuthorizeRequest {
  clientId?: string;
  redirectUri?: string;
  scope?: string;
  state?: string;
  challenge?: string;
  method?: string;
  responseType?: string;
}

function authorizeUrl(forgejo: ForgejoStandin, request: AuthorizeRequest = {}): URL {
  const url = new URL('/login/oauth/authorize', forgejo.url);
  url.searchParams.set('client_id', request.clientId ?? 'broker');
  url.searchParams.set('redirect_uri', request.redirectUri ?? BROKER_REDIRECT);
  url.searchParams.set('response_type', request.responseType ?? 'code');
  url.searchParams.set('state', request.state ?? 'st4te');
  url.searchParams.set('scope', request.scope ?? 'read:user');
  if (request.challenge !== undefined) {
    url.searchParams.set('code_challenge', request.challenge);
    url.searchParams.set('code_challenge_method', request.method ?? 'S256');
  }
  return url;
}

/** GETs the authorize URL without following the redirect. */
async function authorize(forgejo: ForgejoStandin, request: AuthorizeRequest = {}, cookie?: string): Promise<Response> {
  return fetch(authorizeUrl(forgejo, request), { redirect: 'manual', headers: cookie === undefined ? {} : { cookie } });
}

function location(response: Response): URL {
  assert.equal(response.status, 303, 'a redirect');
  return new URL(response.headers.get('location') ?? '');
}

/** A signed-in user's code, PKCE S256: returns the callback parameters and the verifier. */
async function codeFor(
  forgejo: ForgejoStandin,
  login: string,
  request: AuthorizeRequest = {},
): Promise<{ callback: URL; verifier: string }> {
  const verifier = oauth.generateRandomCodeVerifier();
  forgejo.setAutoLogin(login);
  const response = await authorize(forgejo, { challenge: await oauth.calculatePKCECodeChallenge(verifier), ...request });
  forgejo.setAutoLogin(undefined);
  return { callback: location(response), verifier };
}

async function exchange(
  forgejo: ForgejoStandin,
  callback: URL,
  verifier: string | typeof oauth.nopkce,
  client: oauth.Client = broker,
  auth: oauth.ClientAuth = brokerAuth,
  redirectUri = BROKER_REDIRECT,
): Promise<oauth.TokenEndpointResponse> {
  const as = await discover(forgejo);
  const params = oauth.validateAuthResponse(as, client, callback, oauth.skipStateCheck);
  const response = await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUri, verifier, insecure);
  return oauth.processAuthorizationCodeResponse(as, client, response);
}

async function refresh(forgejo: ForgejoStandin, refreshToken: string): Promise<oauth.TokenEndpointResponse> {
  const as = await discover(forgejo);
  const response = await oauth.refreshTokenGrantRequest(as, broker, brokerAuth, refreshToken, insecure);
  return oauth.processRefreshTokenResponse(as, broker, response);
}

/** Rejects with the token endpoint's error body (as oauth4webapi surfaces it). */
async function rejection(promise: Promise<unknown>): Promise<{ error: string; error_description?: string; status: number }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof oauth.ResponseBodyError, `expected an OAuth error body, got ${String(error)}`);
    return { error: error.error, error_description: error.error_description, status: error.status };
  }
  assert.fail('expected the token request to fail');
}

async function apiUser(forgejo: ForgejoStandin, authorization: string): Promise<Response> {
  return fetch(`${forgejo.url}/api/v1/user`, { headers: { authorization } });
}

async function postToken(forgejo: ForgejoStandin, body: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${forgejo.url}/login/oauth/access_token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(body),
  });
}

void test('discovery names the endpoints, S256 and plain PKCE, and no registration endpoint', async (t) => {
  const forgejo = await start(t);
  const as = await discover(forgejo);
  assert.equal(as.issuer, forgejo.url);
  assert.equal(as.authorization_endpoint, `${forgejo.url}/login/oauth/authorize`);
  assert.equal(as.token_endpoint, `${forgejo.url}/login/oauth/access_token`);
  assert.equal(as.userinfo_endpoint, `${forgejo.url}/login/oauth/userinfo`);
  assert.equal(as.jwks_uri, `${forgejo.url}/login/oauth/keys`);
  assert.equal(as.introspection_endpoint, `${forgejo.url}/login/oauth/introspect`);
  assert.deepEqual([...(as.code_challenge_methods_supported ?? [])].sort(), ['S256', 'plain']);
  assert.equal(as.registration_endpoint, undefined);
  assert.deepEqual(await (await fetch(`${forgejo.url}/login/oauth/keys`)).json(), { keys: [] });
  assert.deepEqual(await (await fetch(`${forgejo.url}/api/v1/version`)).json(), { version: '11.0.0+gitea-1.22.0' });
});

void test('login form: wrong password stays on the form, right password redirects with code and state', async (t) => {
  const forgejo = await start(t);
  const verifier = oauth.generateRandomCodeVerifier();
  const request = { challenge: await oauth.calculatePKCECodeChallenge(verifier), state: 'xyz' };
  const page = await authorize(forgejo, request);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /name="user_name"/);
  assert.match(html, /name="password"/);
  // Drawn in the broker's look: the consent page's shell and style.
  assert.ok(html.startsWith(renderPage('Sign in to Forgejo', '').split('<h1>')[0] ?? ''), 'the broker page shell');
  assert.match(html, /<h1>Sign in to Forgejo<\/h1>/);

  const form = new URLSearchParams(authorizeUrl(forgejo, request).searchParams);
  form.set('user_name', 'alice');
  form.set('password', 'wrong');
  const post = (body: URLSearchParams) => fetch(`${forgejo.url}/login/oauth/authorize`, { method: 'POST', body, redirect: 'manual' });
  const refused = await post(form);
  assert.equal(refused.status, 200);
  assert.match(await refused.text(), /incorrect/);

  form.set('password', 'alice-pw');
  const accepted = await post(form);
  const callback = location(accepted);
  assert.equal(`${callback.origin}${callback.pathname}`, BROKER_REDIRECT);
  assert.equal(callback.searchParams.get('state'), 'xyz');
  const cookie = accepted.headers.get('set-cookie')?.split(';')[0];
  assert.ok(cookie !== undefined);

  const tokens = await exchange(forgejo, callback, verifier);
  assert.equal(tokens.token_type, 'bearer');
  assert.equal(tokens.expires_in, 3600);
  assert.equal(tokens.scope, undefined, 'Forgejo sends no scope');
  assert.equal(typeof tokens.refresh_token, 'string');

  // A signed-in user with a grant goes straight back to the client.
  const again = await authorize(forgejo, { challenge: request.challenge }, cookie);
  assert.ok(location(again).searchParams.has('code'));
});

void test('/api/v1/user and userinfo accept "token X" and "Bearer X" and reject unknown tokens', async (t) => {
  const forgejo = await start(t);
  const { access_token: token } = forgejo.issueTokens('alice');
  for (const authorization of [`token ${token}`, `Bearer ${token}`, `bearer ${token}`]) {
    const response = await apiUser(forgejo, authorization);
    assert.equal(response.status, 200, authorization);
    const user = (await response.json()) as Record<string, unknown>;
    assert.equal(user.login, 'alice');
    assert.equal(user.id, 1);
    assert.equal(user.full_name, 'Alice A.');
    assert.equal(user.email, 'alice@example.test');
  }
  assert.equal((await apiUser(forgejo, 'token nope')).status, 401);
  assert.equal((await fetch(`${forgejo.url}/api/v1/user`)).status, 401);

  const as = await discover(forgejo);
  const info = await oauth.processUserInfoResponse(
    as,
    broker,
    oauth.skipSubjectCheck,
    await oauth.userInfoRequest(as, broker, token, insecure),
  );
  assert.equal(info.sub, '1');
  assert.equal(info.preferred_username, 'alice');
  assert.equal((await fetch(`${forgejo.url}/login/oauth/userinfo`, { headers: { authorization: 'Bearer nope' } })).status, 401);
});

void test('client credentials in the body or in raw HTTP Basic (not URL-decoded, as Forgejo); bad ones are 400', async (t) => {
  const forgejo = await start(t);
  const viaPost = await codeFor(forgejo, 'alice');
  assert.ok((await exchange(forgejo, viaPost.callback, viaPost.verifier)).access_token);

  const tokens = forgejo.issueTokens('alice');
  const refreshForm = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token };
  const basic = (credentials: string) => ({ authorization: `Basic ${Buffer.from(credentials).toString('base64')}` });
  const rawBasic = await postToken(forgejo, refreshForm, basic('broker:gto_broker_secret'));
  assert.equal(rawBasic.status, 200);

  const encodedBasic = await postToken(forgejo, refreshForm, basic('broker:gto%5Fbroker%5Fsecret'));
  assert.deepEqual(await encodedBasic.json(), { error: 'invalid_client', error_description: 'invalid client secret' });
  const viaLibrary = await codeFor(forgejo, 'alice');
  assert.deepEqual(
    await rejection(exchange(forgejo, viaLibrary.callback, viaLibrary.verifier, broker, oauth.ClientSecretBasic('gto_broker_secret'))),
    { error: 'unauthorized_client', error_description: 'invalid client secret', status: 400 },
  );

  const unknown = await postToken(forgejo, { grant_type: 'authorization_code', code: 'x', client_id: 'ghost', client_secret: 's' });
  assert.equal(unknown.status, 400);
  assert.equal(((await unknown.json()) as { error: string }).error, 'invalid_client');
  const badGrantType = await postToken(forgejo, { grant_type: 'password', client_id: 'broker', client_secret: 'gto_broker_secret' });
  assert.equal(badGrantType.status, 400);
  assert.equal(((await badGrantType.json()) as { error: string }).error, 'unsupported_grant_type');
});

void test('codes are single use and bound to client, redirect URI and PKCE verifier', async (t) => {
  const forgejo = await start(t);
  const first = await codeFor(forgejo, 'alice');
  await exchange(forgejo, first.callback, first.verifier);
  assert.equal((await rejection(exchange(forgejo, first.callback, first.verifier))).error_description, 'client is not authorized');

  const wrongVerifier = await codeFor(forgejo, 'alice');
  assert.equal(
    (await rejection(exchange(forgejo, wrongVerifier.callback, oauth.generateRandomCodeVerifier()))).error_description,
    'failed PKCE code challenge',
  );
  // A failed verifier does not burn the code (as in Forgejo); the right one still works.
  await exchange(forgejo, wrongVerifier.callback, wrongVerifier.verifier);

  const otherClient = await codeFor(forgejo, 'alice');
  const stolen = await rejection(
    exchange(
      forgejo,
      otherClient.callback,
      otherClient.verifier,
      { client_id: 'other' },
      oauth.ClientSecretPost('gto_other_secret'),
      'https://other.example.test/cb',
    ),
  );
  assert.deepEqual(stolen, { error: 'invalid_grant', error_description: 'invalid grant', status: 400 });

  const otherRedirect = await codeFor(forgejo, 'alice');
  const code = otherRedirect.callback.searchParams.get('code') ?? '';
  const response = await postToken(forgejo, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: 'https://evil.example.test/cb',
    code_verifier: otherRedirect.verifier,
    client_id: 'broker',
    client_secret: 'gto_broker_secret',
  });
  assert.equal(response.status, 400);
  assert.deepEqual(await response.json(), { error: 'unauthorized_client', error_description: 'unexpected redirect URI' });
});

void test('PKCE: plain works, confidential clients may skip it, public clients may not', async (t) => {
  const forgejo = await start(t);
  const plain = await codeFor(forgejo, 'alice', { challenge: 'plain-verifier-'.padEnd(50, 'x'), method: 'plain' });
  assert.ok((await exchange(forgejo, plain.callback, 'plain-verifier-'.padEnd(50, 'x'))).access_token);

  forgejo.setAutoLogin('alice');
  const withoutPkce = location(await authorize(forgejo));
  assert.ok((await exchange(forgejo, withoutPkce, oauth.nopkce)).access_token);

  const publicWithoutPkce = location(await authorize(forgejo, { clientId: 'public-app', redirectUri: PUBLIC_REDIRECT }));
  assert.equal(publicWithoutPkce.searchParams.get('error'), 'invalid_request');
  assert.equal(publicWithoutPkce.searchParams.get('error_description'), 'PKCE is required for public clients');

  const unsupported = location(await authorize(forgejo, { challenge: 'c', method: 'S512' }));
  assert.equal(unsupported.searchParams.get('error_description'), 'unsupported code challenge method');
});

void test('redirect URIs match exactly, case-insensitively, trailing slash ignored; bad ones are a page, not a redirect', async (t) => {
  const forgejo = await start(t, { autoLogin: 'alice' });
  const variant = location(
    await authorize(forgejo, { redirectUri: 'HTTPS://BROKER.example.test/oauth/callback/', challenge: 'c'.repeat(43) }),
  );
  assert.ok(variant.searchParams.has('code'));

  for (const request of [
    { redirectUri: 'https://broker.example.test/oauth/callback/evil' },
    { redirectUri: 'https://evil.example.test/oauth/callback' },
    { clientId: 'ghost' },
  ]) {
    const response = await authorize(forgejo, request);
    assert.equal(response.status, 400, JSON.stringify(request));
    assert.equal(response.headers.get('location'), null);
  }
  const wrongType = location(await authorize(forgejo, { responseType: 'token' }));
  assert.equal(wrongType.searchParams.get('error'), 'unsupported_response_type');
  assert.equal(wrongType.searchParams.get('state'), 'st4te');

  // Public clients: an http loopback redirect matches whatever its port (RFC 8252).
  const loopback = location(
    await authorize(forgejo, { clientId: 'public-app', redirectUri: 'http://127.0.0.1:53123/callback', challenge: 'c'.repeat(43) }),
  );
  assert.equal(loopback.port, '53123');
  assert.ok(loopback.searchParams.has('code'));
  assert.equal((await authorize(forgejo, { redirectUri: 'https://broker.example.test:8443/oauth/callback' })).status, 400);
});

void test('one grant per user and application; a different scope string fails where Forgejo asks for the grant', async (t) => {
  const forgejo = await start(t, { autoLogin: 'alice' });
  const challenge = 'c'.repeat(43);
  location(await authorize(forgejo, { clientId: 'public-app', redirectUri: PUBLIC_REDIRECT, challenge, scope: 'read:user' }));
  const mismatch = location(
    await authorize(forgejo, { clientId: 'public-app', redirectUri: PUBLIC_REDIRECT, challenge, scope: 'read:user write:issue' }),
  );
  assert.equal(mismatch.searchParams.get('error'), 'server_error');
  assert.equal(mismatch.searchParams.get('error_description'), 'a grant exists with different scope');
  assert.equal(mismatch.searchParams.get('state'), 'st4te');

  // A confidential client with a grant skips the grant page: the code comes on the old grant, old scope.
  location(await authorize(forgejo, { scope: 'read:user', challenge }));
  const confidential = location(await authorize(forgejo, { scope: 'read:user write:issue', challenge }));
  assert.ok(confidential.searchParams.has('code'));
  assert.equal(forgejo.grant('alice')?.scope, 'read:user');

  assert.equal(forgejo.deleteGrant('alice', 'public-app'), true);
  const fresh = location(
    await authorize(forgejo, { clientId: 'public-app', redirectUri: PUBLIC_REDIRECT, challenge, scope: 'read:user write:issue' }),
  );
  assert.ok(fresh.searchParams.has('code'));
  assert.equal(forgejo.grant('alice', 'public-app')?.scope, 'read:user write:issue');
});

void test('every issued pair invalidates older refresh tokens (Forgejo >= 9); old access tokens live on', async (t) => {
  const forgejo = await start(t);
  const first = forgejo.issueTokens('alice');
  const second = await refresh(forgejo, first.refresh_token);
  assert.notEqual(second.refresh_token, first.refresh_token);
  assert.deepEqual(await rejection(refresh(forgejo, first.refresh_token)), {
    error: 'unauthorized_client',
    error_description: 'token was already used',
    status: 400,
  });

  // A second login by the same user supersedes the first credential.
  const login = await codeFor(forgejo, 'alice');
  const third = await exchange(forgejo, login.callback, login.verifier);
  assert.equal((await rejection(refresh(forgejo, second.refresh_token ?? ''))).error_description, 'token was already used');
  assert.ok(await refresh(forgejo, third.refresh_token ?? ''));

  assert.equal((await apiUser(forgejo, `token ${first.access_token}`)).status, 200, 'access tokens stay valid until they expire');
  assert.equal(forgejo.stats.refreshes, 2);
  assert.equal(forgejo.stats.rejectedRefreshes, 2);
  assert.equal(forgejo.stats.codeExchanges, 1);
});

void test('with invalidateRefreshTokens false (Gitea), older refresh tokens keep working', async (t) => {
  const forgejo = await start(t, { invalidateRefreshTokens: false });
  const first = forgejo.issueTokens('alice');
  await refresh(forgejo, first.refresh_token);
  assert.ok((await refresh(forgejo, first.refresh_token)).access_token);
});

void test('a deleted grant kills its tokens: refresh is invalid_grant, the API answers 401', async (t) => {
  const forgejo = await start(t);
  const tokens = forgejo.issueTokens('alice');
  const bobTokens = forgejo.issueTokens('bob');
  assert.equal(forgejo.deleteGrant('alice'), true);
  assert.deepEqual(await rejection(refresh(forgejo, tokens.refresh_token)), {
    error: 'invalid_grant',
    error_description: 'grant does not exist',
    status: 400,
  });
  assert.equal((await apiUser(forgejo, `token ${tokens.access_token}`)).status, 401);
  assert.equal((await apiUser(forgejo, `token ${bobTokens.access_token}`)).status, 200, 'other users are untouched');
});

void test('lifetimes are configurable and the clock can be moved forward', async (t) => {
  const forgejo = await start(t, { accessTokenLifetimeSeconds: 60, refreshTokenLifetimeSeconds: 600 });
  const tokens = forgejo.issueTokens('alice');
  assert.equal(tokens.expires_in, 60);
  forgejo.advanceClock(61);
  assert.equal((await apiUser(forgejo, `token ${tokens.access_token}`)).status, 401, 'access token expired');
  const renewed = await refresh(forgejo, tokens.refresh_token);
  assert.equal((await apiUser(forgejo, `token ${renewed.access_token}`)).status, 200);
  forgejo.advanceClock(601);
  assert.deepEqual(await rejection(refresh(forgejo, renewed.refresh_token ?? '')), {
    error: 'unauthorized_client',
    error_description: 'unable to parse refresh token',
    status: 400,
  });
});

void test('granular scopes: /api/v1/user needs read:user when any granular scope is granted', async (t) => {
  const forgejo = await start(t);
  const cases: [string, number][] = [
    ['', 200],
    ['openid profile email', 200],
    ['read:user', 200],
    ['write:user,read:repository', 200],
    ['all', 200],
    ['read:repository write:issue', 403],
  ];
  for (const [scope, status] of cases) {
    forgejo.deleteGrant('alice');
    const { access_token: token } = forgejo.issueTokens('alice', { scope });
    assert.equal((await apiUser(forgejo, `Bearer ${token}`)).status, status, `scope "${scope}"`);
  }
});

void test('the token endpoint can be made to fail or stall, and counts requests', async (t) => {
  const forgejo = await start(t);
  const tokens = forgejo.issueTokens('alice');
  const form = {
    grant_type: 'refresh_token',
    refresh_token: tokens.refresh_token,
    client_id: 'broker',
    client_secret: 'gto_broker_secret',
  };

  forgejo.failTokenRequests(2, 503);
  assert.equal((await postToken(forgejo, form)).status, 503);
  assert.equal((await postToken(forgejo, form)).status, 503);
  assert.equal((await postToken(forgejo, form)).status, 200, 'the refresh token was not consumed by the failures');

  forgejo.delayTokenRequests(1, 60_000);
  await assert.rejects(
    fetch(`${forgejo.url}/login/oauth/access_token`, { method: 'POST', body: new URLSearchParams(form), signal: AbortSignal.timeout(200) }),
    /abort|timeout/i,
  );
  assert.equal(forgejo.stats.tokenRequests, 4);
});

void test('introspection needs client credentials and reports the grant scope', async (t) => {
  const forgejo = await start(t);
  const { access_token: token } = forgejo.issueTokens('alice', { scope: 'read:user' });
  const introspect = (authorization: string) =>
    fetch(`${forgejo.url}/login/oauth/introspect`, { method: 'POST', headers: { authorization }, body: new URLSearchParams({ token }) });
  assert.equal((await introspect('Basic ' + Buffer.from('broker:nope').toString('base64'))).status, 401);
  const answer = (await (await introspect('Basic ' + Buffer.from('broker:gto_broker_secret').toString('base64'))).json()) as Record<
    string,
    unknown
  >;
  assert.equal(answer.active, true);
  assert.equal(answer.scope, 'read:user');
  assert.equal(answer.username, 'alice');
});
