import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { silentLogger } from '../../src/log/logger.js';
import { openBrokerAuth } from '../../src/oauth/setup.js';
import { startForgejoStandin } from '../../src/standin/forgejo.js';
import { ENCRYPTION_KEY_FILE } from '../../src/store/encryption-key.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';

describe('openBrokerAuth', () => {
  it('opens the store in the data directory with a generated key and serves the OAuth routes', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'broker-setup-test-'));
    const forgejo = await startForgejoStandin({ users: [], applications: [] });
    const auth = await openBrokerAuth({
      publicUrl: new URL('http://127.0.0.1:8080'),
      forgejoUrl: new URL(forgejo.url),
      forgejoClientId: 'app',
      forgejoClientSecret: 'secret',
      forgejoScopes: 'read:user',
      dataDir,
      logger: silentLogger(),
    });
    const server = createServer((req, res) => {
      void auth.routes(req, res, new URL(req.url ?? '/', 'http://127.0.0.1:8080')).then((handled) => {
        if (!handled) {
          res.writeHead(404);
          res.end();
        }
      });
    });
    try {
      assert.equal((await stat(join(dataDir, ENCRYPTION_KEY_FILE))).mode & 0o777, 0o600);
      assert.ok(await stat(join(dataDir, DATABASE_FILE)));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const metadata = (await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json()) as { issuer: string };
      assert.equal(metadata.issuer, 'http://127.0.0.1:8080');
      assert.equal((await fetch(`${base}/elsewhere`)).status, 404);
      assert.equal(auth.authenticator.resourceMetadataUrl, 'http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp');
      assert.deepEqual(await auth.authenticator.authenticate('nope'), { error: 'invalid_token', description: 'unknown access token' });
    } finally {
      server.closeAllConnections();
      server.close();
      await auth.close();
      await forgejo.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
