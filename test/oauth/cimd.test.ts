import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { ClientMetadataDocuments, DEFAULT_CIMD_OPTIONS } from '../../src/oauth/cimd.js';
import { isPublicAddress } from '../../src/oauth/public-fetch.js';
import { OAuthError } from '../../src/oauth/errors.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { CLIENT_REDIRECT, consentFields, pkce, TestBrowser } from '../support/oauth.js';
import { authorizeUrl, consentPage, exchangeCode, OAuthHarness } from '../support/brokers.js';

/** A client's web server publishing metadata documents, with a hit counter per path. */
class MetadataHost {
  readonly hits = new Map<string, number>();
  readonly userAgents: string[] = [];
  readonly documents = new Map<string, { body: string; headers?: Record<string, string>; status?: number }>();
  readonly server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
    this.userAgents.push(req.headers['user-agent'] ?? '');
    const doc = this.documents.get(path);
    if (doc === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(doc.status ?? 200, { 'content-type': 'application/json', ...doc.headers });
    res.end(doc.body);
  });
  origin = '';

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  publish(path: string, document: Record<string, unknown>, headers?: Record<string, string>): string {
    const clientId = `${this.origin}${path}`;
    this.documents.set(path, { body: JSON.stringify({ client_id: clientId, ...document }), headers });
    return clientId;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const GOOD = {
  client_name: 'Metadata Client',
  redirect_uris: [CLIENT_REDIRECT],
  grant_types: ['authorization_code', 'refresh_token'],
  token_endpoint_auth_method: 'none',
};

describe('Client ID Metadata Documents', () => {
  let harness: OAuthHarness;
  let host: MetadataHost;
  before(async () => {
    harness = await OAuthHarness.start();
    host = new MetadataHost();
    await host.start();
  });
  after(async () => {
    await host.close();
    await harness.close();
  });

  it('signs a user in with a URL client_id, naming the publishing host on the consent page', async () => {
    const clientId = host.publish('/good.json', GOOD);
    const browser = new TestBrowser();
    const { challenge, verifier } = await pkce();
    harness.forgejo.setAutoLogin('alice');
    const html = await consentPage(harness, browser, clientId, challenge);
    assert.match(html, /Metadata Client/);
    assert.match(html, new RegExp(`Published by</dt><dd>${new URL(host.origin).host.replace(/\./g, '\\.')}`));
    assert.doesNotMatch(html, /registered itself/);
    const done = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...consentFields(html), decision: 'approve' },
    });
    assert.equal(done.kind, 'redirect');
    if (done.kind !== 'redirect') return;
    const tokens = await exchangeCode(harness, clientId, done.params.get('code') as string, verifier);
    assert.equal(tokens.status, 200);
    assert.equal((await harness.mcp(tokens.body.access_token as string)).body.clientId, clientId);
  });

  it('refuses documents that do not describe the client properly, with a page', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['/mismatch.json', { ...GOOD, client_id: 'https://elsewhere.example/client.json' }],
      ['/no-name.json', { ...GOOD, client_name: undefined }],
      ['/secret.json', { ...GOOD, token_endpoint_auth_method: 'client_secret_post', client_secret: 'x' }],
      ['/bad-redirect.json', { ...GOOD, redirect_uris: ['http://example.com/cb'] }],
    ];
    for (const [path, document] of cases) {
      const clientId = `${host.origin}${path}`;
      host.documents.set(path, { body: JSON.stringify({ client_id: clientId, ...document }) });
      const { challenge } = await pkce();
      const response = await new TestBrowser().request(authorizeUrl(harness, clientId, challenge));
      assert.equal(response.status, 400, path);
      assert.equal(response.headers.get('location'), null);
      assert.match(await response.text(), /invalid_client/);
    }
  });

  it('refuses a redirect URI the document does not list', async () => {
    const clientId = host.publish('/strict.json', GOOD);
    const { challenge } = await pkce();
    const response = await new TestBrowser().request(
      authorizeUrl(harness, clientId, challenge, { redirect_uri: 'http://127.0.0.1:9/elsewhere' }),
    );
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('location'), null);
  });

  it('does not follow redirects, and refuses non-JSON and oversized documents', async () => {
    host.documents.set('/moved.json', { body: '', status: 302, headers: { location: '/good.json' } });
    host.documents.set('/text.json', { body: 'hello', headers: { 'content-type': 'text/plain' } });
    host.documents.set('/huge.json', { body: JSON.stringify({ ...GOOD, padding: 'x'.repeat(10_000) }) });
    for (const path of ['/moved.json', '/text.json', '/huge.json']) {
      const { challenge } = await pkce();
      const response = await new TestBrowser().request(authorizeUrl(harness, `${host.origin}${path}`, challenge));
      assert.equal(response.status, 400, path);
    }
  });

  it('caches a document as its Cache-Control says', async () => {
    const cached = host.publish('/cached.json', GOOD, { 'cache-control': 'max-age=300' });
    const uncached = host.publish('/uncached.json', GOOD, { 'cache-control': 'no-store' });
    for (let i = 0; i < 3; i++) {
      const { challenge } = await pkce();
      await new TestBrowser().request(authorizeUrl(harness, cached, challenge));
      await new TestBrowser().request(authorizeUrl(harness, uncached, challenge));
    }
    assert.equal(host.hits.get('/cached.json'), 1);
    assert.equal(host.hits.get('/uncached.json'), 3);
  });

  // As hosted clients publish them: liberal in what the broker reads, strict in what it grants.

  async function signsIn(clientId: string): Promise<void> {
    const browser = new TestBrowser();
    const { challenge, verifier } = await pkce();
    harness.forgejo.setAutoLogin('alice');
    const html = await consentPage(harness, browser, clientId, challenge);
    const done = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...consentFields(html), decision: 'approve' },
    });
    if (done.kind !== 'redirect') assert.fail('the sign-in did not come back to the client');
    const tokens = await exchangeCode(harness, clientId, done.params.get('code') as string, verifier);
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    assert.ok(tokens.body.refresh_token, 'a refresh token even when only authorization_code was listed');
  }

  it('ignores grant types, auth methods and redirect URIs it has no use for, and any media type', async () => {
    const clientId = host.publish(
      '/liberal.json',
      {
        client_name: 'Liberal Client',
        redirect_uris: ['http://example.com/not-loopback', CLIENT_REDIRECT],
        grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code', 'token'],
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'],
        scope: 'claudeai',
        application_type: 'native',
      },
      { 'content-type': 'text/plain; charset=utf-8' },
    );
    await signsIn(clientId);
  });

  it('lists only authorization_code: signs in and is still given a refresh token', async () => {
    await signsIn(host.publish('/code-only.json', { ...GOOD, grant_types: ['authorization_code'] }));
  });

  it('refuses what cannot sign in: no authorization_code, private_key_jwt without keys, a secret method', async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['/no-code.json', { ...GOOD, grant_types: ['client_credentials'] }, /authorization_code/],
      ['/keyless.json', { ...GOOD, token_endpoint_auth_method: 'private_key_jwt' }, /jwks_uri or jwks/],
      ['/shared-secret.json', { ...GOOD, token_endpoint_auth_method: 'client_secret_basic' }, /shared secret/],
    ];
    for (const [path, document, reason] of cases) {
      const clientId = host.publish(path, document);
      const { challenge } = await pkce();
      const response = await new TestBrowser().request(authorizeUrl(harness, clientId, challenge));
      assert.equal(response.status, 400, path);
      assert.match(await response.text(), reason, path);
    }
  });

  it('names itself in the User-Agent of every fetch', async () => {
    const clientId = host.publish('/agent.json', GOOD);
    const { challenge } = await pkce();
    await new TestBrowser().request(authorizeUrl(harness, clientId, challenge));
    assert.match(host.userAgents.at(-1) ?? '', /^forgejo-mcp-broker\/\d+\.\d+\.\d+ \(\+http:\/\/127\.0\.0\.1:\d+\)$/);
  });
});

describe('metadata document cache across failures', () => {
  let host: MetadataHost;
  before(async () => {
    host = new MetadataHost();
    await host.start();
  });
  after(async () => {
    await host.close();
  });

  it('keeps serving the last good copy while the host fails (a CDN answering 403), never a document that turned invalid', async () => {
    const stale: string[] = [];
    const documents = new ClientMetadataDocuments({ ...DEFAULT_CIMD_OPTIONS, allowPrivateNetwork: true }, Date.now, (clientId) =>
      stale.push(clientId),
    );
    // no-cache: kept, but fetched again before every use.
    const clientId = host.publish('/cdn.json', GOOD, { 'cache-control': 'no-cache' });
    assert.equal((await documents.resolve(clientId)).clientName, 'Metadata Client');
    host.documents.set('/cdn.json', { body: '<html>Forbidden</html>', status: 403, headers: { 'content-type': 'text/html' } });
    assert.equal((await documents.resolve(clientId)).clientName, 'Metadata Client', 'the last good copy');
    assert.deepEqual(stale, [clientId]);
    assert.equal(host.hits.get('/cdn.json'), 2, 'it did try again');
    host.publish('/cdn.json', { ...GOOD, client_id: 'https://elsewhere.example/c.json' }, { 'cache-control': 'no-cache' });
    await assert.rejects(documents.resolve(clientId), /client_id does not match/);
  });

  it('forgets a document its host says is gone (404), and one that turned invalid', async () => {
    const documents = new ClientMetadataDocuments({ ...DEFAULT_CIMD_OPTIONS, allowPrivateNetwork: true }, Date.now);
    const clientId = host.publish('/retired.json', GOOD, { 'cache-control': 'no-cache' });
    await documents.resolve(clientId);
    host.documents.set('/retired.json', { body: '', status: 404 });
    await assert.rejects(documents.resolve(clientId), /answered HTTP 404/);
    host.documents.set('/retired.json', { body: '', status: 503 });
    await assert.rejects(documents.resolve(clientId), /answered HTTP 503/, 'no copy left to bridge an outage with');
  });

  it('keeps nothing of a no-store document, not even as a fallback', async () => {
    const documents = new ClientMetadataDocuments({ ...DEFAULT_CIMD_OPTIONS, allowPrivateNetwork: true }, Date.now);
    const clientId = host.publish('/private.json', GOOD, { 'cache-control': 'no-store' });
    await documents.resolve(clientId);
    host.documents.set('/private.json', { body: '', status: 503 });
    await assert.rejects(documents.resolve(clientId), /answered HTTP 503/);
  });

  it('gives up on the last good copy once it is older than the stale limit', async () => {
    let now = Date.now();
    const documents = new ClientMetadataDocuments({ ...DEFAULT_CIMD_OPTIONS, allowPrivateNetwork: true, maxStaleMs: 60_000 }, () => now);
    const clientId = host.publish('/old.json', GOOD, { 'cache-control': 'max-age=10' });
    await documents.resolve(clientId);
    host.documents.set('/old.json', { body: '', status: 403 });
    now += 30_000;
    await documents.resolve(clientId);
    now += 60_000;
    await assert.rejects(documents.resolve(clientId), /answered HTTP 403/);
  });
});

describe('metadata document fetch limits', () => {
  const documents = new ClientMetadataDocuments({ ...DEFAULT_CIMD_OPTIONS, timeoutMs: 2000 }, Date.now);

  async function refusal(clientId: string): Promise<string> {
    try {
      await documents.resolve(clientId);
    } catch (error) {
      assert.ok(error instanceof OAuthError);
      assert.equal(error.code, 'invalid_client');
      return error.message;
    }
    assert.fail(`${clientId} was accepted`);
  }

  it('refuses loopback, private and link-local addresses unless the operator allows them', async () => {
    assert.match(await refusal('https://127.0.0.1/client.json'), /non-public/);
    assert.match(await refusal('https://10.1.2.3/client.json'), /non-public/);
    assert.match(await refusal('https://[::1]/client.json'), /non-public/);
    assert.match(await refusal('https://169.254.169.254/latest/meta-data.json'), /non-public/);
    assert.match(await refusal('https://localhost/client.json'), /non-public/);
  });

  it('refuses client_id URLs the draft forbids', async () => {
    assert.match(await refusal('http://client.example/client.json'), /https/);
    assert.match(await refusal('https://client.example/'), /path/);
    assert.match(await refusal('https://client.example/a/../client.json'), /dot segments|normalised/);
    assert.match(await refusal('https://user:pw@client.example/client.json'), /credentials/);
  });

  it('knows public from non-public addresses', () => {
    for (const address of [
      '127.0.0.1',
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '169.254.1.1',
      '100.64.0.1',
      '0.0.0.0',
      '192.88.99.1',
      '::1',
      'fe80::1',
      'fec0::1',
      'fd00::1',
      '::ffff:127.0.0.1',
      '::7f00:1',
      '::ffff:0:7f00:1',
      '2002:7f00:1::1',
      '64:ff9b:1::1',
    ]) {
      assert.equal(isPublicAddress(address), false, address);
    }
    for (const address of ['1.1.1.1', '140.82.112.3', '2606:4700:4700::1111']) {
      assert.equal(isPublicAddress(address), true, address);
    }
  });
});
