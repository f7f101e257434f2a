import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/client';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { CLIENT_REDIRECT, consentFields, TestBrowser } from '../support/oauth.js';
import { OAuthHarness } from '../support/brokers.js';
import { InMemoryOAuthClientProvider } from '../support/mcp-clients.js';

/**
 * A real OAuth client, the MCP SDK's `auth()`: discovery from the 401
 * challenge's metadata, RFC 7591 registration, PKCE, resource indicator, the
 * RFC 9207 issuer check, code exchange and refresh, all against the broker.
 */
describe('MCP SDK client-side OAuth against the broker', () => {
  let harness: OAuthHarness;
  before(async () => {
    harness = await OAuthHarness.start();
  });
  after(async () => {
    await harness.close();
  });

  it('registers, authorizes through consent and Forgejo, exchanges the code and refreshes', async () => {
    const provider = new InMemoryOAuthClientProvider();
    const serverUrl = harness.url('/mcp');
    assert.equal(await auth(provider, { serverUrl }), 'REDIRECT');
    const authorizationUrl = provider.authorizationUrl;
    assert.ok(authorizationUrl);
    assert.equal(authorizationUrl.origin + authorizationUrl.pathname, harness.url(OAUTH_PATHS.authorize));
    assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorizationUrl.searchParams.get('resource'), serverUrl);

    const browser = new TestBrowser();
    harness.forgejo.setAutoLogin('alice');
    const page = await browser.follow(authorizationUrl.href, CLIENT_REDIRECT);
    assert.equal(page.kind, 'page');
    if (page.kind !== 'page') return;
    assert.match(page.html, /MCP SDK test client/);
    const back = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...consentFields(page.html), decision: 'approve' },
    });
    assert.equal(back.kind, 'redirect');
    if (back.kind !== 'redirect') return;

    const code = back.params.get('code') ?? undefined;
    const iss = back.params.get('iss') ?? undefined;
    assert.equal(await auth(provider, { serverUrl, authorizationCode: code, iss }), 'AUTHORIZED');
    const tokens = provider.tokens();
    assert.ok(tokens?.access_token);
    assert.equal((await harness.mcp(tokens.access_token)).body.forgejoLogin, 'alice');

    // With a refresh token in hand, auth() refreshes instead of redirecting.
    assert.equal(await auth(provider, { serverUrl }), 'AUTHORIZED');
    const refreshed = provider.tokens();
    assert.ok(refreshed?.access_token);
    assert.notEqual(refreshed.access_token, tokens.access_token);
    assert.equal((await harness.mcp(refreshed.access_token)).status, 200);
  });
});
