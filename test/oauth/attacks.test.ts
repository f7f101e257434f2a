import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { sha256Hex } from '../../src/oauth/tokens.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import { CLIENT_REDIRECT, consentFields, pkce, TestBrowser } from '../support/oauth.js';
import {
  authorizeUrl,
  consentPage,
  exchangeCode,
  OAuthHarness,
  type RegisteredTestClient,
  signedInTokens,
  signIn,
} from '../support/brokers.js';

/** What the broker has issued so far, read straight from its database. */
function issued(harness: OAuthHarness): { codes: number; accessTokens: number; refreshTokens: number; liveGrants: number } {
  const db = new Database(join(harness.dataDir, DATABASE_FILE), { readonly: true });
  try {
    const count = (sql: string): number => (db.prepare(sql).get() as { n: number }).n;
    return {
      codes: count('SELECT count(*) AS n FROM authorization_codes'),
      accessTokens: count('SELECT count(*) AS n FROM access_tokens'),
      refreshTokens: count('SELECT count(*) AS n FROM refresh_tokens'),
      liveGrants: count('SELECT count(*) AS n FROM grants WHERE revoked_at IS NULL'),
    };
  } finally {
    db.close();
  }
}

describe('OAuth attacks: each refused with the right error, nothing issued', () => {
  let harness: OAuthHarness;
  let client: RegisteredTestClient;
  before(async () => {
    harness = await OAuthHarness.start({ refreshGraceMs: 10_000 });
    client = await harness.register();
  });
  after(async () => {
    await harness.close();
  });

  it('PKCE missing: invalid_request back to the client, no request kept', async () => {
    const before = issued(harness);
    const url = new URL(authorizeUrl(harness, client.clientId, 'x'));
    url.searchParams.delete('code_challenge');
    url.searchParams.delete('code_challenge_method');
    const arrival = await new TestBrowser().follow(url.href, CLIENT_REDIRECT);
    assert.equal(arrival.kind, 'redirect');
    if (arrival.kind !== 'redirect') return;
    assert.equal(arrival.params.get('error'), 'invalid_request');
    assert.equal(arrival.params.get('state'), 'client-state-123');
    assert.equal(arrival.params.get('iss'), harness.brokerUrl);
    assert.equal(arrival.params.get('code'), null);
    assert.deepEqual(issued(harness), before);
  });

  it('PKCE plain (explicit or by omitting the method): invalid_request', async () => {
    const { verifier } = await pkce();
    for (const method of ['plain', undefined]) {
      const url = new URL(authorizeUrl(harness, client.clientId, verifier));
      if (method === undefined) url.searchParams.delete('code_challenge_method');
      else url.searchParams.set('code_challenge_method', method);
      const arrival = await new TestBrowser().follow(url.href, CLIENT_REDIRECT);
      assert.equal(arrival.kind, 'redirect');
      if (arrival.kind === 'redirect') {
        assert.equal(arrival.params.get('error'), 'invalid_request');
        assert.match(arrival.params.get('error_description') ?? '', /S256/);
      }
    }
  });

  it('wrong code_verifier: invalid_grant, no token, and the code is spent', async () => {
    const { challenge, verifier } = await pkce();
    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
    const code = params.get('code') as string;
    const before = issued(harness);
    const wrong = await exchangeCode(harness, client.clientId, code, (await pkce()).verifier);
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, 'invalid_grant');
    assert.equal(wrong.body.access_token, undefined);
    const late = await exchangeCode(harness, client.clientId, code, verifier);
    assert.equal(late.body.error, 'invalid_grant');
    const now = issued(harness);
    assert.equal(now.accessTokens, before.accessTokens);
    assert.equal(now.refreshTokens, before.refreshTokens);
  });

  it('missing code_verifier at the token endpoint: invalid_request', async () => {
    const { challenge } = await pkce();
    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
    const response = await harness.token({
      grant_type: 'authorization_code',
      client_id: client.clientId,
      code: params.get('code') as string,
      redirect_uri: CLIENT_REDIRECT,
    });
    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'invalid_request');
  });

  it('redirect URI mismatch at /authorize: an error page, never a redirect', async () => {
    const before = issued(harness);
    for (const redirectUri of ['https://attacker.example/callback', 'http://127.0.0.1:9/other', `${CLIENT_REDIRECT}?x=1`]) {
      const { challenge } = await pkce();
      const response = await new TestBrowser().request(authorizeUrl(harness, client.clientId, challenge, { redirect_uri: redirectUri }));
      assert.equal(response.status, 400);
      assert.equal(response.headers.get('location'), null);
      assert.match(await response.text(), /redirect_uri is not registered/);
    }
    assert.deepEqual(issued(harness), before);
  });

  it('a loopback redirect URI matches on any port (RFC 8252)', async () => {
    const { challenge } = await pkce();
    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge, 'http://127.0.0.1:45678/callback');
    assert.ok(params.get('code'));
  });

  it('redirect URI mismatch at /token: invalid_grant', async () => {
    const { challenge, verifier } = await pkce();
    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
    const response = await exchangeCode(harness, client.clientId, params.get('code') as string, verifier, {
      redirect_uri: 'http://127.0.0.1:10/callback',
    });
    assert.equal(response.body.error, 'invalid_grant');
    assert.equal(response.body.access_token, undefined);
  });

  it('code replay: invalid_grant, and the tokens of the first exchange die', async () => {
    const first = await signedInTokens(harness, client);
    const replay = await exchangeCode(harness, client.clientId, first.code, first.verifier);
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');
    assert.equal(replay.body.access_token, undefined);
    const mcp = await harness.mcp(first.accessToken);
    assert.equal(mcp.status, 401);
    assert.match(mcp.challenge ?? '', /error="invalid_token"/);
    const refresh = await harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: first.refreshToken });
    assert.equal(refresh.body.error, 'invalid_grant');
  });

  it('an expired code: invalid_grant', async () => {
    const { challenge, verifier } = await pkce();
    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
    harness.clockOffsetMs += 61_000;
    try {
      const response = await exchangeCode(harness, client.clientId, params.get('code') as string, verifier);
      assert.equal(response.body.error, 'invalid_grant');
    } finally {
      harness.clockOffsetMs -= 61_000;
    }
  });

  it('a code exchanged by another client: invalid_grant', async () => {
    const other = await harness.register();
    const { challenge, verifier } = await pkce();
    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
    const response = await exchangeCode(harness, other.clientId, params.get('code') as string, verifier);
    assert.equal(response.body.error, 'invalid_grant');
  });

  it('refresh token reuse within the grace period gets the same pair; later reuse revokes the grant', async () => {
    const start = await signedInTokens(harness, client);
    const rotate = { grant_type: 'refresh_token', client_id: client.clientId, refresh_token: start.refreshToken };
    const first = await harness.token(rotate);
    assert.equal(first.status, 200);
    const retried = await harness.token(rotate);
    assert.equal(retried.status, 200, 'a lost response can be retried');
    assert.equal(retried.body.access_token, first.body.access_token);
    assert.equal(retried.body.refresh_token, first.body.refresh_token);

    harness.clockOffsetMs += 11_000;
    try {
      const reused = await harness.token(rotate);
      assert.equal(reused.status, 400);
      assert.equal(reused.body.error, 'invalid_grant');
      assert.equal(reused.body.access_token, undefined);
      // The whole grant is gone: the tokens issued by the rotation too.
      assert.equal((await harness.mcp(first.body.access_token as string)).status, 401);
      const next = await harness.token({ ...rotate, refresh_token: first.body.refresh_token as string });
      assert.equal(next.body.error, 'invalid_grant');
    } finally {
      harness.clockOffsetMs -= 11_000;
    }
  });

  it('refresh token reuse after its successor was used revokes the grant, even within the grace period', async () => {
    const start = await signedInTokens(harness, client);
    const first = await harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: start.refreshToken });
    const second = await harness.token({
      grant_type: 'refresh_token',
      client_id: client.clientId,
      refresh_token: first.body.refresh_token as string,
    });
    assert.equal(second.status, 200);
    const reused = await harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: start.refreshToken });
    assert.equal(reused.body.error, 'invalid_grant');
    assert.equal((await harness.mcp(second.body.access_token as string)).status, 401);
  });

  it('token for another resource: invalid_target at /authorize and /token; a token bound elsewhere is refused at /mcp', async () => {
    const { challenge, verifier } = await pkce();
    const arrival = await new TestBrowser().follow(
      authorizeUrl(harness, client.clientId, challenge, { resource: 'https://other.example/mcp' }),
      CLIENT_REDIRECT,
    );
    assert.equal(arrival.kind, 'redirect');
    if (arrival.kind === 'redirect') assert.equal(arrival.params.get('error'), 'invalid_target');

    const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
    const response = await exchangeCode(harness, client.clientId, params.get('code') as string, verifier, {
      resource: 'https://other.example/mcp',
    });
    assert.equal(response.body.error, 'invalid_target');
    assert.equal(response.body.access_token, undefined);

    // A token whose grant names another resource (as another broker would issue) is not accepted here.
    const at = harness.now();
    await harness.store.codes.create({
      codeHash: 'foreign-code',
      clientId: client.clientId,
      userId: '1001',
      redirectUri: CLIENT_REDIRECT,
      codeChallenge: challenge,
      resource: 'https://other.example/mcp',
      scope: null,
      createdAt: at,
      expiresAt: at + 60_000,
    });
    await harness.store.codes.consume('foreign-code', at);
    await harness.store.grants.createFromCode(
      'foreign-code',
      {
        grantId: 'foreign',
        userId: '1001',
        clientId: client.clientId,
        resource: 'https://other.example/mcp',
        scope: null,
        createdAt: at,
        revokedAt: null,
      },
      { accessTokenHash: sha256Hex('foreign-token'), accessExpiresAt: at + 60_000 },
    );
    const mcp = await harness.mcp('foreign-token');
    assert.equal(mcp.status, 401);
    assert.match(mcp.challenge ?? '', /not issued for this resource/);
  });

  it('revoked tokens: a revoked access token is refused; a revoked refresh token ends its grant', async () => {
    const tokens = await signedInTokens(harness, client);
    const revokeAccess = await fetch(harness.url(OAUTH_PATHS.revoke), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.accessToken, client_id: client.clientId }).toString(),
    });
    assert.equal(revokeAccess.status, 200);
    const mcp = await harness.mcp(tokens.accessToken);
    assert.equal(mcp.status, 401);
    assert.match(mcp.challenge ?? '', /error="invalid_token"/);

    const revokeRefresh = await fetch(harness.url(OAUTH_PATHS.revoke), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.refreshToken, client_id: client.clientId, token_type_hint: 'refresh_token' }).toString(),
    });
    assert.equal(revokeRefresh.status, 200);
    const refresh = await harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: tokens.refreshToken });
    assert.equal(refresh.body.error, 'invalid_grant');

    // Unknown tokens are fine to revoke (RFC 7009 §2.2); another client's are not.
    const unknown = await fetch(harness.url(OAUTH_PATHS.revoke), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: 'nonsense', client_id: client.clientId }).toString(),
    });
    assert.equal(unknown.status, 200);
    const other = await harness.register();
    const victim = await signedInTokens(harness, client);
    const foreign = await fetch(harness.url(OAUTH_PATHS.revoke), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: victim.accessToken, client_id: other.clientId }).toString(),
    });
    assert.equal(foreign.status, 400);
    assert.equal((await harness.mcp(victim.accessToken)).status, 200);
  });

  it('an expired access token is refused with invalid_token', async () => {
    const tokens = await signedInTokens(harness, client);
    harness.clockOffsetMs += 3_601_000;
    try {
      const mcp = await harness.mcp(tokens.accessToken);
      assert.equal(mcp.status, 401);
      assert.match(mcp.challenge ?? '', /expired/);
    } finally {
      harness.clockOffsetMs -= 3_601_000;
    }
  });

  it('consent skipped: a Forgejo callback the broker never started is refused, and a known user still sees the page', async () => {
    const before = issued(harness);
    // The attacker drives Forgejo's authorize with the broker's application directly.
    harness.forgejo.setAutoLogin('alice');
    const forged = new URL('/login/oauth/authorize', harness.forgejo.url);
    forged.search = new URLSearchParams({
      client_id: 'broker-app',
      redirect_uri: harness.url(OAUTH_PATHS.callback),
      response_type: 'code',
      state: 'attacker-state',
    }).toString();
    const browser = new TestBrowser();
    const arrival = await browser.follow(forged.href, CLIENT_REDIRECT);
    assert.equal(arrival.kind, 'page');
    if (arrival.kind === 'page') {
      assert.equal(arrival.response.status, 400);
      assert.match(arrival.html, /expired or was already completed/);
    }
    assert.deepEqual(issued(harness), before);

    // A signed-in user who never approved this client gets the page, not a code.
    const fresh = await harness.register({ client_name: 'Never approved' });
    const signedIn = new TestBrowser();
    const { challenge } = await pkce();
    await signIn(harness, signedIn, client.clientId, 'alice', challenge);
    assert.match(await consentPage(harness, signedIn, fresh.clientId, challenge), /Never approved/);
  });

  it('CSRF on the consent form: another browser, a wrong token or a foreign origin is refused', async () => {
    const victim = new TestBrowser();
    const { challenge } = await pkce();
    const fields = consentFields(await consentPage(harness, victim, client.clientId, challenge));
    const before = issued(harness);

    // The attacker knows the form fields but not the victim's browser-binding cookie.
    const attacker = await new TestBrowser().follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...fields, decision: 'approve' },
    });
    assert.equal(attacker.kind, 'page');
    if (attacker.kind === 'page') assert.equal(attacker.response.status, 403);

    const wrongToken = await victim.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...fields, csrf: 'forged', decision: 'approve' },
    });
    assert.equal(wrongToken.kind, 'page');
    if (wrongToken.kind === 'page') assert.equal(wrongToken.response.status, 403);

    const crossSite = await victim.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...fields, decision: 'approve' },
      headers: { origin: 'https://attacker.example', 'sec-fetch-site': 'cross-site' },
    });
    assert.equal(crossSite.kind, 'page');
    if (crossSite.kind === 'page') assert.equal(crossSite.response.status, 403);

    assert.deepEqual(issued(harness), before);
    assert.equal(await harness.store.consents.has('1001', client.clientId), true, 'only the earlier, genuine approval exists');
  });

  it('unknown client: an error page at /authorize, invalid_client at /token', async () => {
    const { challenge, verifier } = await pkce();
    const response = await new TestBrowser().request(authorizeUrl(harness, 'no-such-client', challenge));
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('location'), null);
    assert.match(await response.text(), /unknown client/);
    const token = await exchangeCode(harness, 'no-such-client', 'code', verifier);
    assert.equal(token.status, 401);
    assert.equal(token.body.error, 'invalid_client');
  });

  it('registration refuses redirect URIs that are neither https, loopback http nor a private-use scheme', async () => {
    for (const uri of ['http://example.com/cb', 'javascript:alert(1)', 'https://example.com/cb#frag', 'data:text/html,x', 'not a uri']) {
      const response = await fetch(harness.url(OAUTH_PATHS.register), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: [uri], token_endpoint_auth_method: 'none' }),
      });
      assert.equal(response.status, 400, uri);
      assert.equal(((await response.json()) as { error: string }).error, 'invalid_redirect_uri');
    }
    const native = await harness.register({ redirect_uris: ['com.example.app:/oauth', 'https://app.example/cb', 'http://[::1]/cb'] });
    assert.ok(native.clientId);
  });

  it('unsupported response_type and grant_type are refused', async () => {
    const { challenge } = await pkce();
    const arrival = await new TestBrowser().follow(
      authorizeUrl(harness, client.clientId, challenge, { response_type: 'token' }),
      CLIENT_REDIRECT,
    );
    assert.equal(arrival.kind, 'redirect');
    if (arrival.kind === 'redirect') assert.equal(arrival.params.get('error'), 'unsupported_response_type');
    const token = await harness.token({ grant_type: 'password', client_id: client.clientId });
    assert.equal(token.body.error, 'unsupported_grant_type');
  });
});

describe('OAuth confidential clients', () => {
  let harness: OAuthHarness;
  before(async () => {
    harness = await OAuthHarness.start();
  });
  after(async () => {
    await harness.close();
  });

  const basic = (id: string, value: string): Record<string, string> => ({
    authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(value)}`).toString('base64')}`,
  });

  for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
    it(`registered with ${method}: either way of sending the secret works; a wrong secret or none is refused`, async () => {
      const client = await harness.register({ token_endpoint_auth_method: method });
      assert.ok(client.clientSecret);
      const secret = client.clientSecret;
      const code = async (): Promise<Record<string, string>> => {
        const { challenge, verifier } = await pkce();
        const params = await signIn(harness, new TestBrowser(), client.clientId, 'alice', challenge);
        return {
          grant_type: 'authorization_code',
          code: params.get('code') as string,
          redirect_uri: CLIENT_REDIRECT,
          code_verifier: verifier,
        };
      };
      const first = await code();

      const wrongBasic = await harness.token(first, basic(client.clientId, 'wrong'));
      assert.equal(wrongBasic.status, 401);
      assert.equal(wrongBasic.body.error, 'invalid_client');
      // RFC 6749 §5.2: after HTTP Basic, the 401 says how to authenticate.
      assert.match(wrongBasic.headers.get('www-authenticate') ?? '', /^Basic realm="/);
      const wrongPost = await harness.token({ ...first, client_id: client.clientId, client_secret: 'wrong' });
      assert.equal(wrongPost.status, 401);
      assert.equal(wrongPost.body.error, 'invalid_client');
      assert.equal(wrongPost.headers.get('www-authenticate'), null);
      const none = await harness.token({ ...first, client_id: client.clientId });
      assert.equal(none.body.error, 'invalid_client');
      const both = await harness.token({ ...first, client_id: client.clientId, client_secret: secret }, basic(client.clientId, secret));
      assert.equal(both.body.error, 'invalid_request');

      const viaBasic = await harness.token(first, basic(client.clientId, secret));
      assert.equal(viaBasic.status, 200, JSON.stringify(viaBasic.body));
      const viaPost = await harness.token({ ...(await code()), client_id: client.clientId, client_secret: secret });
      assert.equal(viaPost.status, 200, JSON.stringify(viaPost.body));
    });
  }
});

describe('OAuth limits and housekeeping', () => {
  it('rate-limits the token endpoint per client address with 429 and Retry-After', async () => {
    const harness = await OAuthHarness.start({ rateLimit: { burst: 3, perMinute: 1 } });
    try {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 4; i++) {
        const response = await harness.token({ grant_type: 'refresh_token', client_id: 'x', refresh_token: 'y' });
        statuses.push(response.status);
        retryAfter = response.headers.get('retry-after');
      }
      assert.deepEqual(statuses, [401, 401, 401, 429]);
      assert.ok(Number(retryAfter) >= 1);
    } finally {
      await harness.close();
    }
  });

  it('removes registered clients that never completed a sign-in, and keeps those that did', async () => {
    const harness = await OAuthHarness.start({ unusedClientTtlMs: 60_000 });
    try {
      const unused = await harness.register();
      const used = await harness.register();
      const { challenge } = await pkce();
      await signIn(harness, new TestBrowser(), used.clientId, 'alice', challenge);
      harness.clockOffsetMs += 61_000;
      await harness.server.sweep();
      const gone = await new TestBrowser().request(authorizeUrl(harness, unused.clientId, challenge));
      assert.equal(gone.status, 400);
      assert.match(await gone.text(), /unknown client/);
      assert.ok(await harness.store.clients.find(used.clientId));
    } finally {
      await harness.close();
    }
  });

  it('loses nothing across a broker restart: tokens work and refresh, the returning user needs no consent', async () => {
    const harness = await OAuthHarness.start();
    try {
      const client = await harness.register();
      const browser = new TestBrowser();
      const { challenge, verifier } = await pkce();
      const params = await signIn(harness, browser, client.clientId, 'alice', challenge);
      const tokens = await exchangeCode(harness, client.clientId, params.get('code') as string, verifier);

      await harness.shutDownBroker();
      await harness.open();

      assert.equal((await harness.mcp(tokens.body.access_token as string)).status, 200);
      const refreshed = await harness.token({
        grant_type: 'refresh_token',
        client_id: client.clientId,
        refresh_token: tokens.body.refresh_token as string,
      });
      assert.equal(refreshed.status, 200);
      const again = await browser.follow(authorizeUrl(harness, client.clientId, challenge), CLIENT_REDIRECT);
      assert.equal(again.kind, 'redirect', 'remembered consent and sign-in survive');
      assert.ok((await harness.credentials.access('1001', 0)).accessToken);
    } finally {
      await harness.close();
    }
  });

  it('a Forgejo access token refused before its expiry (the application revoked at Forgejo): the grant is revoked, and the next sign-in, consent remembered, revives none of its tokens', async () => {
    const harness = await OAuthHarness.start();
    try {
      const client = await harness.register();
      const browser = new TestBrowser();
      const { challenge, verifier } = await pkce();
      const params = await signIn(harness, browser, client.clientId, 'alice', challenge);
      const tokens = await exchangeCode(harness, client.clientId, params.get('code') as string, verifier);
      const revoked: string[] = [];
      harness.credentials.onCredentialRevoked((userId) => revoked.push(userId));

      harness.forgejo.deleteGrant('alice');
      await assert.rejects(harness.credentials.access('1001', Number.MAX_SAFE_INTEGER), /sign in again/);
      assert.deepEqual(revoked, ['1001']);
      const mcp = await harness.mcp(tokens.body.access_token as string);
      assert.equal(mcp.status, 401);
      assert.match(mcp.challenge ?? '', /invalid_token/);
      const refreshToken = tokens.body.refresh_token as string;
      const refused = await harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: refreshToken });
      assert.equal(refused.body.error, 'invalid_grant');

      // Consent is remembered: the browser goes straight to Forgejo and back with a code.
      const again = await browser.follow(authorizeUrl(harness, client.clientId, challenge), CLIENT_REDIRECT);
      assert.equal(again.kind, 'redirect', 'no consent page');
      if (again.kind !== 'redirect') return;
      assert.equal((await harness.mcp(tokens.body.access_token as string)).status, 401, 'the old access token stays dead');
      const stale = await harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: refreshToken });
      assert.equal(stale.body.error, 'invalid_grant', 'the old refresh token stays dead');
      const fresh = await exchangeCode(harness, client.clientId, again.params.get('code') as string, verifier);
      assert.equal((await harness.mcp(fresh.body.access_token as string)).status, 200, 'the new authorization serves');
    } finally {
      await harness.close();
    }
  });
});
