import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { CLIENT_REDIRECT, consentFields, pkce, TestBrowser } from '../support/oauth.js';
import {
  authorizeUrl,
  consentPage,
  exchangeCode,
  OAUTH_FORGEJO_SCOPES as FORGEJO_SCOPES,
  OAuthHarness,
  signIn,
} from '../support/brokers.js';

describe('OAuth authorization server: discovery and the happy path', () => {
  let harness: OAuthHarness;
  before(async () => {
    harness = await OAuthHarness.start();
  });
  after(async () => {
    await harness.close();
  });

  it('answers /mcp without a token with the RFC 9728 challenge', async () => {
    const response = await fetch(harness.url('/mcp'));
    assert.equal(response.status, 401);
    assert.equal(
      response.headers.get('www-authenticate'),
      `Bearer resource_metadata="${harness.url('/.well-known/oauth-protected-resource/mcp')}"`,
    );
  });

  it('publishes protected resource metadata at the resource path and at the root', async () => {
    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const response = await fetch(harness.url(path));
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('access-control-allow-origin'), '*');
      const metadata = (await response.json()) as Record<string, unknown>;
      assert.equal(metadata.resource, harness.url('/mcp'));
      assert.deepEqual(metadata.authorization_servers, [harness.brokerUrl]);
    }
  });

  it('publishes RFC 8414 authorization server metadata', async () => {
    const response = await fetch(harness.url('/.well-known/oauth-authorization-server'));
    const metadata = (await response.json()) as Record<string, unknown>;
    assert.equal(metadata.issuer, harness.brokerUrl);
    assert.equal(metadata.authorization_endpoint, harness.url(OAUTH_PATHS.authorize));
    assert.equal(metadata.token_endpoint, harness.url(OAUTH_PATHS.token));
    assert.equal(metadata.registration_endpoint, harness.url(OAUTH_PATHS.register));
    assert.equal(metadata.revocation_endpoint, harness.url(OAUTH_PATHS.revoke));
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    assert.equal(metadata.authorization_response_iss_parameter_supported, true);
    assert.equal(metadata.client_id_metadata_document_supported, true);
    assert.deepEqual(metadata.response_types_supported, ['code']);
  });

  it('answers CORS preflights on the public endpoints', async () => {
    const response = await fetch(harness.url(OAUTH_PATHS.token), { method: 'OPTIONS' });
    assert.equal(response.status, 204);
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
  });

  it('signs a user in through consent and Forgejo, and issues tokens the authenticator accepts', async () => {
    const client = await harness.register();
    const browser = new TestBrowser();
    const { verifier, challenge } = await pkce();
    harness.forgejo.setAutoLogin('alice');

    const consent = await browser.follow(authorizeUrl(harness, client.clientId, challenge), CLIENT_REDIRECT);
    assert.equal(consent.kind, 'page');
    if (consent.kind !== 'page') return;
    assert.equal(consent.response.status, 200);
    const csp = consent.response.headers.get('content-security-policy') ?? '';
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(consent.html, />Approve</);
    assert.match(consent.html, />Deny</);
    assert.match(consent.html, /Test MCP client/);
    assert.match(consent.html, /127\.0\.0\.1:9/, 'shows the redirect host');
    assert.match(consent.html, new RegExp(new URL(harness.forgejo.url).host.replace(/\./g, '\\.')), 'names the forge');
    assert.match(consent.html, /registered itself/, 'flags an unverified client');
    assert.match(consent.html, /localhost/, 'warns about a loopback redirect');
    assert.equal(harness.forgejo.stats.codeExchanges, 0, 'nobody went to Forgejo before consent');

    const fields = consentFields(consent.html);
    const arrival = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, { form: { ...fields, decision: 'approve' } });
    assert.equal(arrival.kind, 'redirect');
    if (arrival.kind !== 'redirect') return;
    assert.equal(arrival.params.get('state'), 'client-state-123');
    assert.equal(arrival.params.get('iss'), harness.brokerUrl);
    const code = arrival.params.get('code');
    assert.ok(code);
    assert.equal(harness.forgejo.grant('alice')?.scope, FORGEJO_SCOPES, 'the fixed scope string went to Forgejo');

    const tokens = await exchangeCode(harness, client.clientId, code, verifier);
    assert.equal(tokens.status, 200);
    assert.equal(tokens.headers.get('cache-control'), 'no-store');
    assert.equal(tokens.body.token_type, 'Bearer');
    assert.equal(typeof tokens.body.access_token, 'string');
    assert.equal(typeof tokens.body.refresh_token, 'string');
    assert.equal(tokens.body.expires_in, 3600);

    const mcp = await harness.mcp(tokens.body.access_token as string);
    assert.equal(mcp.status, 200);
    assert.equal(mcp.body.userId, '1001');
    assert.equal(mcp.body.forgejoLogin, 'alice');
    assert.equal(mcp.body.clientId, client.clientId);

    // The Forgejo credential is the user's, usable by the rotator.
    const access = await harness.credentials.access('1001', 60_000);
    assert.equal(typeof access.accessToken, 'string');
    assert.notEqual(access.accessToken, tokens.body.access_token, 'a broker token is never a Forgejo token');

    // Refresh rotates.
    const refreshed = await harness.token({
      grant_type: 'refresh_token',
      client_id: client.clientId,
      refresh_token: tokens.body.refresh_token as string,
    });
    assert.equal(refreshed.status, 200);
    assert.notEqual(refreshed.body.refresh_token, tokens.body.refresh_token);
    assert.equal((await harness.mcp(refreshed.body.access_token as string)).status, 200);
  });

  it('skips the consent page for a returning user who approved the client, and asks again for another client', async () => {
    const browser = new TestBrowser();
    const first = await harness.register({ client_name: 'First client' });
    const { challenge } = await pkce();
    const params = await signIn(harness, browser, first.clientId, 'bob', challenge);
    assert.ok(params.get('code'));
    const exchangesBefore = harness.forgejo.stats.codeExchanges;

    // Same browser, same client: no page, no trip to Forgejo.
    const again = await browser.follow(authorizeUrl(harness, first.clientId, challenge), CLIENT_REDIRECT);
    assert.equal(again.kind, 'redirect');
    if (again.kind === 'redirect') assert.ok(again.params.get('code'));
    assert.equal(harness.forgejo.stats.codeExchanges, exchangesBefore);

    // Another client: the page again, naming the signed-in user.
    const second = await harness.register({ client_name: 'Second client' });
    const html = await consentPage(harness, browser, second.clientId, challenge);
    assert.match(html, /Second client/);
    assert.match(html, /Signed in as<\/dt><dd>bob/);
    // Approving needs no Forgejo trip: the user is known and their credential alive.
    const done = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...consentFields(html), decision: 'approve' },
    });
    assert.equal(done.kind, 'redirect');
    assert.equal(harness.forgejo.stats.codeExchanges, exchangesBefore);
  });

  it('returns access_denied with state and iss when the user presses Deny', async () => {
    const client = await harness.register();
    const browser = new TestBrowser();
    const { challenge } = await pkce();
    const html = await consentPage(harness, browser, client.clientId, challenge);
    const denied = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...consentFields(html), decision: 'deny' },
    });
    assert.equal(denied.kind, 'redirect');
    if (denied.kind !== 'redirect') return;
    assert.equal(denied.params.get('error'), 'access_denied');
    assert.equal(denied.params.get('state'), 'client-state-123');
    assert.equal(denied.params.get('iss'), harness.brokerUrl);
    assert.equal(denied.params.get('code'), null);
  });

  it('lets a signed-in user list approvals and revoke one, which ends that client grants', async () => {
    const browser = new TestBrowser();
    const client = await harness.register({ client_name: 'Revocable client' });
    const { challenge, verifier } = await pkce();
    const params = await signIn(harness, browser, client.clientId, 'alice', challenge);
    const tokens = await exchangeCode(harness, client.clientId, params.get('code') as string, verifier);

    const anonymous = await new TestBrowser().request(harness.url(OAUTH_PATHS.consents));
    assert.equal(anonymous.status, 401);

    const list = await browser.request(harness.url(OAUTH_PATHS.consents));
    assert.equal(list.status, 200);
    const html = await list.text();
    assert.match(html, /Revocable client/);
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';

    const forged = await browser.request(harness.url(OAUTH_PATHS.consents), { form: { client_id: client.clientId, csrf: 'forged' } });
    assert.equal(forged.status, 403);
    assert.equal((await harness.mcp(tokens.body.access_token as string)).status, 200);

    const revoked = await browser.request(harness.url(OAUTH_PATHS.consents), { form: { client_id: client.clientId, csrf } });
    assert.equal(revoked.status, 303);
    assert.equal((await harness.mcp(tokens.body.access_token as string)).status, 401);
    const again = await browser.follow(authorizeUrl(harness, client.clientId, challenge), CLIENT_REDIRECT);
    assert.equal(again.kind, 'page', 'consent is asked again');
  });

  it('passes a refusal at Forgejo back to the client as access_denied, and a Forgejo failure as server_error', async () => {
    for (const [upstreamError, expected] of [
      ['access_denied', 'access_denied'],
      ['server_error', 'server_error'],
    ] as const) {
      const client = await harness.register();
      const browser = new TestBrowser();
      const { challenge } = await pkce();
      const html = await consentPage(harness, browser, client.clientId, challenge);
      // Stop where the broker sends the browser to Forgejo, and answer as Forgejo would.
      const toForgejo = await browser.follow(harness.url(OAUTH_PATHS.consent), harness.forgejo.url, {
        form: { ...consentFields(html), decision: 'approve' },
      });
      assert.equal(toForgejo.kind, 'redirect');
      if (toForgejo.kind !== 'redirect') return;
      assert.equal(toForgejo.params.get('code_challenge_method'), 'S256');
      const callback = new URL(harness.url(OAUTH_PATHS.callback));
      callback.searchParams.set('error', upstreamError);
      callback.searchParams.set('state', toForgejo.params.get('state') ?? '');
      const back = await browser.follow(callback.href, CLIENT_REDIRECT);
      assert.equal(back.kind, 'redirect');
      if (back.kind !== 'redirect') return;
      assert.equal(back.params.get('error'), expected);
      assert.equal(back.params.get('state'), 'client-state-123');
      assert.equal(back.params.get('code'), null);
    }
  });
});
