import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { isForgejoError } from '../../src/forgejo/errors.js';
import { ForgejoClient, type ForgejoClientOptions } from '../../src/forgejo/client.js';
import { ForgejoCredentialManager } from '../../src/forgejo/credentials.js';
import { silentLogger } from '../../src/log/logger.js';
import { startForgejoStandin, type ForgejoStandin } from '../../src/standin/forgejo.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const APP = { clientId: 'broker-app', clientSecret: 'broker-secret', redirectUris: ['http://127.0.0.1:1/oauth/callback'] };
const USERS = [{ id: 7, login: 'carol', password: 'pw', fullName: 'Carol C', email: 'carol@example.test' }];

function options(forgejo: ForgejoStandin): ForgejoClientOptions {
  return {
    forgejoUrl: new URL(forgejo.url),
    clientId: APP.clientId,
    clientSecret: APP.clientSecret,
    scopes: 'read:user',
    redirectUri: APP.redirectUris[0] as string,
  };
}

describe('Forgejo client against the stand-in', () => {
  let forgejo: ForgejoStandin;
  let client: ForgejoClient;
  before(async () => {
    forgejo = await startForgejoStandin({ users: USERS, applications: [APP] });
    client = new ForgejoClient(options(forgejo));
  });
  after(async () => {
    await forgejo.close();
  });

  it('discovers the authorize endpoint and asks for S256 PKCE and the fixed scope', async () => {
    const url = await client.authorizationUrl('state-1', 'c'.repeat(43));
    assert.equal(url.origin, forgejo.url);
    assert.equal(url.pathname, '/login/oauth/authorize');
    assert.equal(url.searchParams.get('client_id'), APP.clientId);
    assert.equal(url.searchParams.get('redirect_uri'), APP.redirectUris[0]);
    assert.equal(url.searchParams.get('scope'), 'read:user');
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('state'), 'state-1');
  });

  it('refreshes, and reads the user the token belongs to', async () => {
    const issued = forgejo.issueTokens('carol', { scope: 'read:user' });
    const tokens = await client.refresh(issued.refresh_token);
    assert.notEqual(tokens.refreshToken, issued.refresh_token);
    assert.ok(tokens.expiresAt > Date.now());
    const user = await client.currentUser(tokens.accessToken);
    assert.deepEqual(user, { id: 7, login: 'carol', fullName: 'Carol C' });
  });

  it('reports a superseded or dead refresh token as forbidden, which says nothing of the access token', async () => {
    const issued = forgejo.issueTokens('carol', { scope: 'read:user' });
    await client.refresh(issued.refresh_token);
    // Forgejo >= 9 refuses the older refresh token ("token was already used"); its access token lives on.
    await assert.rejects(client.refresh(issued.refresh_token), (error) => isForgejoError(error, 'grant_refused'));
    assert.equal(await client.accessTokenStatus(issued.access_token), 'live');
    const again = forgejo.issueTokens('carol', { scope: 'read:user' });
    forgejo.deleteGrant('carol');
    await assert.rejects(client.refresh(again.refresh_token), (error) => isForgejoError(error, 'grant_refused'));
    assert.equal(await client.accessTokenStatus(again.access_token), 'refused', 'a deleted grant takes its access tokens with it');
  });

  it('gives up on a refresh after its own timeout and reports the outcome as unknown', async () => {
    const issued = forgejo.issueTokens('carol', { scope: 'read:user' });
    const slow = new ForgejoClient({ ...options(forgejo), refreshTimeoutMs: 50 });
    const held = forgejo.holdNextRefresh();
    await assert.rejects(slow.refresh(issued.refresh_token), (error) => isForgejoError(error, 'unreachable'));
    await held.abandoned;
    await held.release();
    // Forgejo finished it all the same: the refresh token is spent.
    await assert.rejects(client.refresh(issued.refresh_token), (error) => isForgejoError(error, 'grant_refused'));
  });

  it('asks Forgejo about an access token, and says unknown when Forgejo cannot be reached', async () => {
    const nowhere = new ForgejoClient({
      forgejoUrl: new URL('http://127.0.0.1:9/'),
      clientId: 'x',
      clientSecret: 'y',
      scopes: '',
      redirectUri: 'http://127.0.0.1:1/cb',
    });
    assert.equal(await nowhere.accessTokenStatus('whatever'), 'unknown');
    assert.equal(await client.accessTokenStatus('not-a-token'), 'refused');
  });

  it('reports a 5xx as unavailable, not as a revocation', async () => {
    const issued = forgejo.issueTokens('carol', { scope: 'read:user' });
    forgejo.failTokenRequests(1, 502);
    await assert.rejects(client.refresh(issued.refresh_token), (error) => isForgejoError(error, 'bad_response'));
    assert.ok((await client.refresh(issued.refresh_token)).accessToken);
  });

  it('reports an unreachable Forgejo as unavailable', async () => {
    const nowhere = new ForgejoClient({
      forgejoUrl: new URL('http://127.0.0.1:9/'),
      clientId: 'x',
      clientSecret: 'y',
      scopes: '',
      redirectUri: 'http://127.0.0.1:1/cb',
    });
    await assert.rejects(nowhere.refresh('r'), (error) => isForgejoError(error, 'unreachable'));
  });
});

describe('credential manager against the stand-in', () => {
  it('refreshes once for many concurrent callers, so Forgejo never sees a superseded refresh token', async () => {
    const forgejo = await startForgejoStandin({ users: USERS, applications: [APP], accessTokenLifetimeSeconds: 60 });
    const dir = await mkdtemp(join(tmpdir(), 'broker-forgejo-test-'));
    const store = await openSqliteStore({ dataDir: dir, encryptionKey: randomBytes(32) });
    const client = new ForgejoClient({
      forgejoUrl: new URL(forgejo.url),
      clientId: APP.clientId,
      clientSecret: APP.clientSecret,
      scopes: 'read:user',
      redirectUri: APP.redirectUris[0] as string,
    });
    const manager = new ForgejoCredentialManager({ credentials: store.credentials, forgejo: client, logger: silentLogger() });
    try {
      const issued = forgejo.issueTokens('carol', { scope: 'read:user' });
      await manager.storeLogin(
        { userId: '7', forgejoLogin: 'carol' },
        { accessToken: issued.access_token, refreshToken: issued.refresh_token, expiresAt: Date.now() + 60_000 },
      );
      forgejo.delayTokenRequests(1, 50);
      // Ask for more validity than the token has: every caller needs a refresh.
      const results = await Promise.all(Array.from({ length: 10 }, () => manager.access('7', 5 * 60_000)));
      assert.equal(forgejo.stats.refreshes, 1);
      assert.equal(forgejo.stats.rejectedRefreshes, 0);
      assert.equal(new Set(results.map((result) => result.accessToken)).size, 1);
      assert.equal((await client.currentUser(results[0]?.accessToken ?? '')).login, 'carol');
      // The stored refresh token is the newest: the next refresh is accepted.
      await manager.access('7', 5 * 60_000);
      assert.equal(forgejo.stats.refreshes, 2);
      assert.equal(forgejo.stats.rejectedRefreshes, 0);
    } finally {
      manager.close();
      await store.close();
      await forgejo.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
