/**
 * RFC 7591 registration as clients really send it: what the broker cannot
 * use is left out of what it registers, what would fill its disk is
 * refused, and the answer says what was registered.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { CLIENT_REDIRECT, pkce, TestBrowser } from '../support/oauth.js';
import { OAuthHarness, signedInTokens, signIn } from '../support/brokers.js';

async function register(
  harness: OAuthHarness,
  body: unknown,
  path: string = OAUTH_PATHS.register,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(harness.url(path), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown>, headers: response.headers };
}

describe('dynamic client registration', () => {
  let harness: OAuthHarness;
  before(async () => {
    harness = await OAuthHarness.start({ maxUnusedClients: 5 });
  });
  after(async () => {
    await harness.close();
  });

  it('registers the grant types it grants, whatever else was listed, and ignores fields it has no use for', async () => {
    const answer = await register(harness, {
      client_name: 'Claude',
      redirect_uris: [CLIENT_REDIRECT],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'claudeai',
      application_type: 'native',
      logo_uri: 'https://claude.ai/logo.png',
      software_id: 'x',
    });
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.grant_types, ['authorization_code', 'refresh_token']);
    assert.equal(answer.body.token_endpoint_auth_method, 'client_secret_post');
    assert.ok(answer.body.client_secret);
    assert.equal(answer.body.scope, undefined);
  });

  it('a client that listed only authorization_code is still given refresh tokens', async () => {
    const answer = await register(harness, {
      redirect_uris: [CLIENT_REDIRECT],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'none',
    });
    assert.deepEqual(answer.body.grant_types, ['authorization_code', 'refresh_token']);
    const tokens = await signedInTokens(harness, { clientId: answer.body.client_id as string });
    assert.ok(tokens.refreshToken);
  });

  it('refuses what cannot sign in or would fill the store', async () => {
    const cases: [unknown, string, RegExp][] = [
      [
        { redirect_uris: [CLIENT_REDIRECT], grant_types: ['client_credentials'], token_endpoint_auth_method: 'none' },
        'invalid_client_metadata',
        /authorization_code/,
      ],
      [
        { redirect_uris: [CLIENT_REDIRECT], token_endpoint_auth_method: 'private_key_jwt' },
        'invalid_client_metadata',
        /token_endpoint_auth_method/,
      ],
      [
        { redirect_uris: [CLIENT_REDIRECT], response_types: ['token'], token_endpoint_auth_method: 'none' },
        'invalid_client_metadata',
        /response_types/,
      ],
      [
        { redirect_uris: Array.from({ length: 11 }, (_, i) => `http://127.0.0.1/cb${i}`), token_endpoint_auth_method: 'none' },
        'invalid_redirect_uri',
        /at most 10/,
      ],
      [
        { redirect_uris: [`https://client.example/${'x'.repeat(2001)}`], token_endpoint_auth_method: 'none' },
        'invalid_redirect_uri',
        /longer than 2000/,
      ],
    ];
    for (const [body, error, reason] of cases) {
      const answer = await register(harness, body);
      assert.equal(answer.status, 400, JSON.stringify(body).slice(0, 200));
      assert.equal(answer.body.error, error);
      assert.match(answer.body.error_description as string, reason);
    }
  });

  it('stops registering with 429 and Retry-After once too many clients never signed in; a sign-in makes room', async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof register>> | undefined;
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      last = await register(harness, { redirect_uris: [CLIENT_REDIRECT], token_endpoint_auth_method: 'none' });
      statuses.push(last.status);
      if (last.status === 201) ids.push(last.body.client_id as string);
    }
    assert.ok(statuses.includes(429), `statuses: ${statuses.join(' ')}`);
    assert.equal(last?.status, 429);
    assert.equal(last?.body.error, 'temporarily_unavailable');
    assert.ok(Number(last?.headers.get('retry-after')) > 0);
    // One of them signs in: it no longer counts as unused.
    const { challenge } = await pkce();
    await signIn(harness, new TestBrowser(), ids[0] as string, 'alice', challenge);
    assert.equal((await register(harness, { redirect_uris: [CLIENT_REDIRECT], token_endpoint_auth_method: 'none' })).status, 201);
  });
});

describe('endpoints at the root, for clients that ignore the metadata URLs', () => {
  it('/register, /authorize and /token are the same endpoints as under /oauth', async () => {
    const harness = await OAuthHarness.start();
    try {
      const answer = await register(harness, { redirect_uris: [CLIENT_REDIRECT], token_endpoint_auth_method: 'none' }, '/register');
      assert.equal(answer.status, 201);
      const page = await new TestBrowser().request(
        `${harness.url('/authorize')}?${new URLSearchParams({ response_type: 'code', client_id: answer.body.client_id as string, redirect_uri: CLIENT_REDIRECT, code_challenge: (await pkce()).challenge, code_challenge_method: 'S256' }).toString()}`,
      );
      assert.equal(page.status, 200);
      assert.match(await page.text(), /Approve/);
      const token = await fetch(harness.url('/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: 'nope',
          client_id: answer.body.client_id as string,
        }).toString(),
      });
      assert.equal(token.status, 400);
      assert.equal(((await token.json()) as { error: string }).error, 'invalid_grant');
    } finally {
      await harness.close();
    }
  });
});

describe('after BROKER_PUBLIC_URL changes', () => {
  it('a refresh for the old resource is invalid_grant (sign in again), not tokens /mcp would refuse', async () => {
    const harness = await OAuthHarness.start();
    try {
      const client = await harness.register();
      const tokens = await signedInTokens(harness, client);
      // The operator moves the broker to another public URL and restarts it.
      const original = harness.brokerUrl;
      await harness.shutDownBroker();
      harness.brokerUrl = original.replace('127.0.0.1', 'localhost');
      await harness.open();
      harness.brokerUrl = original;
      // The client re-discovered the broker and names the new resource.
      const refresh = await harness.token({
        grant_type: 'refresh_token',
        client_id: client.clientId,
        refresh_token: tokens.refreshToken,
        resource: harness.url('/mcp').replace('127.0.0.1', 'localhost'),
      });
      assert.equal(refresh.status, 400);
      assert.equal(refresh.body.error, 'invalid_grant');
      assert.match(refresh.body.error_description as string, /sign in again/);
      assert.equal(refresh.body.access_token, undefined);
    } finally {
      await harness.close();
    }
  });
});
