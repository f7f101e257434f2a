import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import Database from 'better-sqlite3';

import { isBrokerError } from '../../src/errors/errors.js';
import { open, seal } from '../../src/store/cipher.js';
import { ENCRYPTION_KEY_FILE, loadEncryptionKey, parseEncryptionKey } from '../../src/store/encryption-key.js';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { DATABASE_FILE, openSqliteStore } from '../../src/store/sqlite.js';
import type { AuthorizationCode, Grant, PendingAuthorization, RegisteredClient, Store } from '../../src/store/store.js';

const T0 = 1_800_000_000_000;
const HOUR = 3_600_000;

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'broker-store-test-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirCounter = 0;
function freshDir(): string {
  dirCounter += 1;
  return join(root, `data-${dirCounter}`);
}

async function withStore(dataDir: string, key: Buffer, body: (store: Store) => Promise<void>): Promise<void> {
  const store = await openSqliteStore({ dataDir, encryptionKey: key });
  try {
    await body(store);
  } finally {
    await store.close();
  }
}

const client: RegisteredClient = {
  clientId: 'client-1',
  clientSecretHash: null,
  tokenEndpointAuthMethod: 'none',
  redirectUris: ['http://127.0.0.1/callback'],
  grantTypes: ['authorization_code', 'refresh_token'],
  clientName: 'Test client',
  clientUri: null,
  createdAt: T0,
  firstSignInAt: null,
};

const user = { userId: '42', forgejoLogin: 'alice' };
const tokens = { accessToken: 'forgejo-access-secret', refreshToken: 'forgejo-refresh-secret', expiresAt: T0 + HOUR };

function code(codeHash: string): AuthorizationCode {
  return {
    codeHash,
    clientId: client.clientId,
    userId: user.userId,
    redirectUri: 'http://127.0.0.1:5000/callback',
    codeChallenge: 'c'.repeat(43),
    resource: 'https://broker.example/mcp',
    scope: null,
    createdAt: T0,
    expiresAt: T0 + 60_000,
  };
}

function grant(grantId: string): Grant {
  return {
    grantId,
    userId: user.userId,
    clientId: client.clientId,
    resource: 'https://broker.example/mcp',
    scope: null,
    createdAt: T0,
    revokedAt: null,
  };
}

function pending(id: string): PendingAuthorization {
  return {
    id,
    clientId: client.clientId,
    redirectUri: 'http://127.0.0.1:5000/callback',
    state: 'xyz',
    codeChallenge: 'c'.repeat(43),
    resource: 'https://broker.example/mcp',
    scope: null,
    browserBindingHash: 'b',
    csrfTokenHash: 'x',
    userId: null,
    approved: false,
    createdAt: T0,
    expiresAt: T0 + 600_000,
  };
}

describe('sqlite store', () => {
  const key = randomBytes(32);

  it('creates broker.db in WAL mode at the current schema version', async () => {
    const dir = freshDir();
    await withStore(dir, key, () => Promise.resolve());
    const db = new Database(join(dir, DATABASE_FILE), { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });

  it('refuses a database written by a newer schema', async () => {
    const dir = freshDir();
    await withStore(dir, key, () => Promise.resolve());
    const db = new Database(join(dir, DATABASE_FILE));
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    await assert.rejects(openSqliteStore({ dataDir: dir, encryptionKey: key }), /newer/);
  });

  it('stores clients and records the first sign-in once', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.clients.create(client);
      assert.deepEqual(await store.clients.find(client.clientId), client);
      await store.clients.markSignedIn(client.clientId, T0 + 5);
      await store.clients.markSignedIn(client.clientId, T0 + 9);
      assert.equal((await store.clients.find(client.clientId))?.firstSignInAt, T0 + 5);
      assert.equal(await store.clients.find('nobody'), undefined);
    });
  });

  it('keeps Forgejo credentials sealed at rest and bumps the generation on every change', async () => {
    const dir = freshDir();
    await withStore(dir, key, async (store) => {
      const first = await store.credentials.replaceAfterLogin(user, tokens, T0);
      assert.equal(first.generation, 1);
      assert.equal(first.accessToken, tokens.accessToken);
      assert.deepEqual(await store.users.find(user.userId), user);

      const refreshed = await store.credentials.storeRefreshed(
        user.userId,
        first.generation,
        { accessToken: 'a2', refreshToken: 'r2', expiresAt: T0 + 2 * HOUR },
        T0 + 1,
      );
      assert.equal(refreshed?.generation, 2);
      assert.equal(refreshed?.refreshToken, 'r2');
      // A refresh computed from an older generation must not overwrite the newer credential.
      assert.equal(await store.credentials.storeRefreshed(user.userId, 1, tokens, T0 + 2), undefined);
      assert.equal((await store.credentials.find(user.userId))?.refreshToken, 'r2');
    });
    const file = await readFile(join(dir, DATABASE_FILE));
    const wal = await readFile(join(dir, `${DATABASE_FILE}-wal`)).catch(() => Buffer.alloc(0));
    for (const secret of ['forgejo-access-secret', 'forgejo-refresh-secret', 'a2', 'r2']) {
      if (secret.length > 2) {
        assert.equal(file.includes(secret), false, `${secret} found in broker.db`);
        assert.equal(wal.includes(secret), false, `${secret} found in WAL`);
      }
    }
  });

  it('does not open credentials under another key', async () => {
    const dir = freshDir();
    await withStore(dir, key, async (store) => {
      await store.credentials.replaceAfterLogin(user, tokens, T0);
    });
    await withStore(dir, randomBytes(32), async (store) => {
      await assert.rejects(store.credentials.find(user.userId), (error) => isBrokerError(error, 'internal'));
    });
  });

  it('marks a credential revoked only at the expected generation, revoking the user grants with it', async () => {
    await withStore(freshDir(), key, async (store) => {
      const credential = await store.credentials.replaceAfterLogin(user, tokens, T0);
      await store.codes.create(code('code-a'));
      assert.equal((await store.codes.consume('code-a', T0)).status, 'valid');
      assert.equal(
        await store.grants.createFromCode('code-a', grant('g1'), { accessTokenHash: 'at1', accessExpiresAt: T0 + HOUR }),
        true,
      );
      assert.equal(await store.credentials.markRevoked(user.userId, credential.generation + 5, T0), false);
      assert.equal(await store.credentials.markRevoked(user.userId, credential.generation, T0 + 1), true);
      const view = await store.grants.findAccessToken('at1');
      assert.equal(view?.credentialRevoked, true);
      assert.equal(view?.grant.revokedAt, T0 + 1);
      // A new login brings the credential back to life.
      const relogin = await store.credentials.replaceAfterLogin(user, tokens, T0 + 2);
      assert.equal(relogin.revokedAt, null);
    });
  });

  it('consumes an authorization code once and reports a replay with the grant it produced', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.codes.create(code('code-b'));
      const first = await store.codes.consume('code-b', T0 + 1);
      assert.equal(first.status, 'valid');
      await store.grants.createFromCode('code-b', grant('g2'), {
        accessTokenHash: 'at2',
        accessExpiresAt: T0 + HOUR,
        refreshTokenHash: 'rt2',
        refreshExpiresAt: T0 + 24 * HOUR,
      });
      assert.deepEqual(await store.codes.consume('code-b', T0 + 2), { status: 'replayed', grantId: 'g2' });
      assert.deepEqual(await store.codes.consume('nope', T0), { status: 'unknown' });
    });
  });

  it('refuses to create a grant for a code whose replay was seen first', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.codes.create(code('code-c'));
      assert.equal((await store.codes.consume('code-c', T0)).status, 'valid');
      assert.deepEqual(await store.codes.consume('code-c', T0), { status: 'replayed', grantId: null });
      assert.equal(
        await store.grants.createFromCode('code-c', grant('g3'), { accessTokenHash: 'at3', accessExpiresAt: T0 + HOUR }),
        false,
      );
      assert.equal(await store.grants.findAccessToken('at3'), undefined);
    });
  });

  it('treats an expired code as unknown', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.codes.create(code('code-d'));
      assert.deepEqual(await store.codes.consume('code-d', T0 + 60_000), { status: 'unknown' });
    });
  });

  it('rotates a refresh token once and tells whether its successor was used', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.credentials.replaceAfterLogin(user, tokens, T0);
      await store.codes.create(code('code-e'));
      await store.codes.consume('code-e', T0);
      await store.grants.createFromCode('code-e', grant('g4'), {
        accessTokenHash: 'at4',
        accessExpiresAt: T0 + HOUR,
        refreshTokenHash: 'rt4',
        refreshExpiresAt: T0 + 24 * HOUR,
      });
      const next = { accessTokenHash: 'at5', accessExpiresAt: T0 + HOUR, refreshTokenHash: 'rt5', refreshExpiresAt: T0 + 24 * HOUR };
      assert.equal(
        await store.grants.rotateRefreshToken('rt4', next, { sealed: 'sealed-pair', sealedUntil: T0 + 10_000 }, T0 + 1),
        'rotated',
      );
      assert.equal(await store.grants.rotateRefreshToken('rt4', next, null, T0 + 2), 'already_rotated');
      let old = await store.grants.findRefreshToken('rt4');
      assert.equal(old?.rotatedAt, T0 + 1);
      assert.equal(old?.successorSealed, 'sealed-pair');
      assert.equal(old?.successorRotated, false);
      assert.equal((await store.grants.findAccessToken('at5'))?.grant.grantId, 'g4');

      const third = { accessTokenHash: 'at6', accessExpiresAt: T0 + HOUR, refreshTokenHash: 'rt6', refreshExpiresAt: T0 + 24 * HOUR };
      assert.equal(await store.grants.rotateRefreshToken('rt5', third, null, T0 + 3), 'rotated');
      old = await store.grants.findRefreshToken('rt4');
      assert.equal(old?.successorRotated, true);

      // The sealed pair outlives the grace period only until the next purge.
      await store.purge(T0 + 10_000, 0);
      assert.equal((await store.grants.findRefreshToken('rt4'))?.successorSealed, null);

      await store.grants.revokeGrant('g4', T0 + 4);
      assert.equal((await store.grants.findRefreshToken('rt6'))?.grant.revokedAt, T0 + 4);
      assert.equal((await store.grants.findAccessToken('at6'))?.grant.revokedAt, T0 + 4);
    });
  });

  it('remembers consent per user and client, and revoking it revokes their grants', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.credentials.replaceAfterLogin(user, tokens, T0);
      await store.consents.record(user.userId, client.clientId, T0);
      await store.consents.record(user.userId, client.clientId, T0 + 1);
      assert.equal(await store.consents.has(user.userId, client.clientId), true);
      assert.equal(await store.consents.has('7', client.clientId), false);
      assert.deepEqual(await store.consents.listClientIds(user.userId), [client.clientId]);
      await store.codes.create(code('code-f'));
      await store.codes.consume('code-f', T0);
      await store.grants.createFromCode('code-f', grant('g5'), { accessTokenHash: 'at7', accessExpiresAt: T0 + HOUR });
      await store.consents.revoke(user.userId, client.clientId, T0 + 2);
      assert.equal(await store.consents.has(user.userId, client.clientId), false);
      assert.equal((await store.grants.findAccessToken('at7'))?.grant.revokedAt, T0 + 2);
    });
  });

  it('hands a pending authorization and an upstream state to exactly one taker', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.pendingAuthorizations.create(pending('p1'));
      await store.pendingAuthorizations.update('p1', { userId: user.userId });
      await store.pendingAuthorizations.update('p1', { approved: true });
      await store.pendingAuthorizations.update('p1', {});
      const found = await store.pendingAuthorizations.find('p1', T0);
      assert.equal(found?.userId, user.userId);
      assert.equal(found?.approved, true);
      assert.equal(await store.pendingAuthorizations.find('p1', T0 + 600_000), undefined);

      await store.upstreamStates.create({ stateHash: 's1', pendingId: 'p1', codeVerifier: 'verifier-secret', expiresAt: T0 + 1000 });
      assert.equal((await store.upstreamStates.take('s1', T0))?.codeVerifier, 'verifier-secret');
      assert.equal(await store.upstreamStates.take('s1', T0), undefined);
      await store.upstreamStates.create({ stateHash: 's2', pendingId: 'p1', codeVerifier: 'v', expiresAt: T0 + 1000 });
      assert.equal(await store.upstreamStates.take('s2', T0 + 1000), undefined, 'expired state');

      assert.equal((await store.pendingAuthorizations.take('p1', T0))?.id, 'p1');
      assert.equal(await store.pendingAuthorizations.take('p1', T0), undefined);
    });
  });

  it('keeps sign-ins until they expire', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.signIns.create({ tokenHash: 'si', userId: user.userId, createdAt: T0, expiresAt: T0 + HOUR });
      assert.equal(await store.signIns.findUserId('si', T0), user.userId);
      assert.equal(await store.signIns.findUserId('si', T0 + HOUR), undefined);
      await store.signIns.delete('si');
      assert.equal(await store.signIns.findUserId('si', T0), undefined);
    });
  });

  it('purges what expired and dynamically registered clients that never signed in', async () => {
    await withStore(freshDir(), key, async (store) => {
      await store.clients.create(client);
      await store.clients.create({ ...client, clientId: 'client-2', createdAt: T0 + 10 });
      await store.clients.create({ ...client, clientId: 'client-3', createdAt: T0 - 10, firstSignInAt: T0 });
      await store.pendingAuthorizations.create(pending('p2'));
      await store.signIns.create({ tokenHash: 'si2', userId: user.userId, createdAt: T0, expiresAt: T0 + 1 });
      const result = await store.purge(T0 + HOUR, T0 + 5);
      assert.equal(result.unusedClients, 1);
      assert.ok(result.rows >= 2);
      assert.equal(await store.clients.find('client-1'), undefined);
      assert.ok(await store.clients.find('client-2'));
      assert.ok(await store.clients.find('client-3'));
    });
  });

  it('loses nothing across a restart', async () => {
    const dir = freshDir();
    await withStore(dir, key, async (store) => {
      await store.clients.create(client);
      await store.credentials.replaceAfterLogin(user, tokens, T0);
      await store.consents.record(user.userId, client.clientId, T0);
      await store.codes.create(code('code-g'));
      await store.codes.consume('code-g', T0);
      await store.grants.createFromCode('code-g', grant('g6'), {
        accessTokenHash: 'at8',
        accessExpiresAt: T0 + HOUR,
        refreshTokenHash: 'rt8',
        refreshExpiresAt: T0 + 24 * HOUR,
      });
      await store.signIns.create({ tokenHash: 'si3', userId: user.userId, createdAt: T0, expiresAt: T0 + HOUR });
    });
    await withStore(dir, key, async (store) => {
      assert.deepEqual(await store.clients.find(client.clientId), client);
      const credential = await store.credentials.find(user.userId);
      assert.equal(credential?.accessToken, tokens.accessToken);
      assert.equal(credential?.refreshToken, tokens.refreshToken);
      assert.equal(await store.consents.has(user.userId, client.clientId), true);
      const access = await store.grants.findAccessToken('at8');
      assert.equal(access?.forgejoLogin, 'alice');
      assert.equal(access?.credentialRevoked, false);
      assert.equal((await store.grants.findRefreshToken('rt8'))?.grant.grantId, 'g6');
      assert.equal(await store.signIns.findUserId('si3', T0), user.userId);
      assert.deepEqual(await store.codes.consume('code-g', T0), { status: 'replayed', grantId: 'g6' });
    });
  });
});

describe('sealing', () => {
  it('opens only under the same key and context', () => {
    const key = randomBytes(32);
    const sealed = seal(key, 'secret', 'ctx');
    assert.equal(open(key, sealed, 'ctx'), 'secret');
    assert.throws(() => open(key, sealed, 'other'), (error) => isBrokerError(error, 'internal'));
    assert.throws(() => open(randomBytes(32), sealed, 'ctx'), (error) => isBrokerError(error, 'internal'));
    assert.notEqual(seal(key, 'secret', 'ctx'), sealed, 'fresh nonce each time');
  });
});

describe('encryption key', () => {
  it('parses 32 bytes as hex or base64 and nothing else', () => {
    const raw = randomBytes(32);
    assert.deepEqual(parseEncryptionKey(raw.toString('hex')), raw);
    assert.deepEqual(parseEncryptionKey(raw.toString('base64')), raw);
    assert.deepEqual(parseEncryptionKey(raw.toString('base64url')), raw);
    assert.equal(parseEncryptionKey('short'), undefined);
    assert.equal(parseEncryptionKey(randomBytes(16).toString('hex')), undefined);
  });

  it('uses the configured key and rejects a malformed one', async () => {
    const raw = randomBytes(32);
    assert.deepEqual(await loadEncryptionKey(freshDir(), raw.toString('hex')), raw);
    await assert.rejects(loadEncryptionKey(freshDir(), 'not-a-key'), /BROKER_ENCRYPTION_KEY/);
  });

  it('generates a key file with mode 0600 on first start and reuses it', async () => {
    const dir = freshDir();
    const first = await loadEncryptionKey(dir, undefined);
    const info = await stat(join(dir, ENCRYPTION_KEY_FILE));
    assert.equal(info.mode & 0o777, 0o600);
    assert.deepEqual(await loadEncryptionKey(dir, ''), first);
  });

  it('refuses a key file that holds no key', async () => {
    const dir = freshDir();
    await loadEncryptionKey(dir, undefined);
    await writeFile(join(dir, ENCRYPTION_KEY_FILE), 'garbage\n');
    await assert.rejects(loadEncryptionKey(dir, undefined), /does not hold/);
  });
});
