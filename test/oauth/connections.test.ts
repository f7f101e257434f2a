/**
 * The Connections page (`/oauth/consents`) of a signed-in broker on both
 * stores: each client the user approved with when, its last use and its live
 * sessions; its Revoke, CSRF-bound to the sign-in, ends the grant and the
 * sessions at once.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import type { SignedInTestBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { TestBrowser } from '../support/oauth.js';
import { forEachStore, modernRequest, openLegacySession, signIn, tokenStatus, type SignedInUser } from '../admin/support.js';

forEachStore('Connections page', (store) => {
  let broker: SignedInTestBroker;
  let erin: SignedInUser;
  let session: Client;

  before(async () => {
    broker = await store.start(`connections-${store.kind}`);
    erin = await signIn(broker, 'erin', 'Erin Editor');
    session = await openLegacySession(broker, erin);
    const modern = await modernRequest(broker, erin, 'tools/list');
    await modern.body?.cancel();
  });

  after(async () => {
    await session?.close().catch(() => undefined);
    await broker?.close();
  });

  it('lists each approved client with its id, redirect host, approval, last use and live sessions', async () => {
    const response = await erin.agent.browser.request(`${broker.url}${OAUTH_PATHS.consents}`);
    assert.equal(response.status, 200);
    const html = await response.text();
    assert.match(html, /<h1>Your connections<\/h1>/);
    assert.match(html, /Signed in as <strong>erin<\/strong>/);
    assert.match(html, /<h2 id="connection-1">Erin Editor<\/h2>/);
    assert.ok(html.includes(`<dt>Client ID</dt><dd><code>${erin.clientId}</code></dd>`));
    assert.match(html, /<dt>Returns to<\/dt><dd>127\.0\.0\.1:9<\/dd>/);
    assert.match(html, /<dt>Approved<\/dt><dd><time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC<\/time><\/dd>/);
    assert.match(html, /<dt>Last used<\/dt><dd><time /);
    assert.match(html, /<li>MCP session since <time [^>]+>[^<]+<\/time>, last request <time /, 'the legacy session');
    assert.match(html, /<li>Stateless MCP requests since /, "the user's modern channel, as this client used it");
    assert.match(html, /<button type="submit" class="danger" aria-label="Revoke Erin Editor">Revoke<\/button>/);
  });

  it('refuses a Revoke whose form token is not this sign-in’s, and a visitor without a sign-in', async () => {
    const forged = await erin.agent.browser.request(`${broker.url}${OAUTH_PATHS.consents}`, {
      form: { client_id: erin.clientId, csrf: 'forged' },
    });
    assert.equal(forged.status, 403);
    const stranger = await new TestBrowser().request(`${broker.url}${OAUTH_PATHS.consents}`, {
      form: { client_id: erin.clientId, csrf: 'x' },
    });
    assert.equal(stranger.status, 403);
    assert.equal(await tokenStatus(broker, erin), 400, 'the token still works');
  });

  it('Revoke ends the grant and the live sessions at once, and says so', async () => {
    const page = await (await erin.agent.browser.request(`${broker.url}${OAUTH_PATHS.consents}`)).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
    assert.ok(csrf);
    const revoked = await erin.agent.browser.request(`${broker.url}${OAUTH_PATHS.consents}`, { form: { client_id: erin.clientId, csrf } });
    assert.equal(revoked.status, 303);
    // Applied on this replica before the answer: no waiting for the next look at the log.
    assert.equal(broker.broker.legacy.sessionIdsOf(erin.userId).length, 0);
    assert.equal(broker.broker.modern.sessionsOf(erin.userId).length, 0);
    assert.equal(await tokenStatus(broker, erin), 401);
    await assert.rejects(session.listTools());
    const landed = await erin.agent.browser.request(new URL(revoked.headers.get('location') ?? '', broker.url).href);
    const html = await landed.text();
    assert.match(html, /<p class="status" role="status">You revoked <strong>Erin Editor<\/strong>/);
    assert.match(html, /No application is connected/);
    await eventually(() => broker.broker.pool.size === 0, 'the children stop', 5_000);
  });
});
