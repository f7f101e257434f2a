import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { migrate, SCHEMA_VERSION } from '../../src/store/schema.js';
import { DATABASE_FILE, openSqliteStore } from '../../src/store/sqlite.js';
import { freshDataDirs } from '../support/host.js';
import { client, describeStore, legacySession, type StoreBackend, T0, user, withStore } from './store-contract.js';

const freshDir = freshDataDirs('broker-store-test-');

/** One data directory per store; what is at rest is the database file and its WAL. */
const sqlite: StoreBackend = {
  fresh: () => Promise.resolve(freshDir()),
  open: (dataDir, encryptionKey) => openSqliteStore({ dataDir, encryptionKey }),
  contentsAtRest: async (dataDir) => {
    const file = await readFile(join(dataDir, DATABASE_FILE));
    const wal = await readFile(join(dataDir, `${DATABASE_FILE}-wal`)).catch(() => Buffer.alloc(0));
    return Buffer.concat([file, wal]);
  },
  markNewerSchema: (dataDir) => {
    const db = new Database(join(dataDir, DATABASE_FILE));
    try {
      db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    } finally {
      db.close();
    }
    return Promise.resolve();
  },
};

describeStore('sqlite', sqlite);

describe('sqlite store', () => {
  it('creates broker.db in WAL mode at the current schema version', async () => {
    const dir = await sqlite.fresh();
    await withStore(sqlite, dir, randomBytes(32), () => Promise.resolve());
    const db = new Database(join(dir, DATABASE_FILE), { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });

  it('migrates a version 3 database, keeping its rows and adding legacy sessions', async () => {
    const dir = await sqlite.fresh();
    const key = randomBytes(32);
    await mkdir(dir, { recursive: true });
    const older = new Database(join(dir, DATABASE_FILE));
    try {
      migrate(older, 3);
      assert.equal(older.pragma('user_version', { simple: true }), 3, 'as a version 3 broker left it');
      older
        .prepare(
          `INSERT INTO clients (client_id, client_secret_hash, token_endpoint_auth_method, redirect_uris, grant_types,
             client_name, client_uri, created_at, first_sign_in_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          client.clientId,
          null,
          client.tokenEndpointAuthMethod,
          JSON.stringify(client.redirectUris),
          JSON.stringify(client.grantTypes),
          client.clientName,
          null,
          T0,
          null,
        );
      older
        .prepare('INSERT INTO users (user_id, forgejo_login, created_at, updated_at) VALUES (?, ?, ?, ?)')
        .run(user.userId, 'alice', T0, T0);
      older.prepare('INSERT INTO consents (user_id, client_id, created_at) VALUES (?, ?, ?)').run(user.userId, client.clientId, T0);
      older
        .prepare('INSERT INTO sign_ins (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
        .run('si', user.userId, T0, T0 + 1000);
    } finally {
      older.close();
    }

    await withStore(sqlite, dir, key, async (store) => {
      assert.deepEqual(await store.clients.find(client.clientId), client);
      assert.deepEqual(await store.users.find(user.userId), user);
      assert.equal(await store.consents.has(user.userId, client.clientId), true);
      assert.equal(await store.signIns.findUserId('si', T0), user.userId);
      await store.legacySessions.save(legacySession('sess-1'));
      assert.deepEqual(await store.legacySessions.find('sess-1'), legacySession('sess-1'));
    });
    const db = new Database(join(dir, DATABASE_FILE), { readonly: true });
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
      const indexes = db
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'legacy_sessions' AND sql IS NOT NULL`)
        .all();
      assert.deepEqual(indexes.map((row) => (row as { name: string }).name).sort(), ['legacy_sessions_last_used', 'legacy_sessions_user']);
    } finally {
      db.close();
    }
  });

  it('migrates a version 4 database, keeping its legacy sessions (owned by no replica) and adding replicas', async () => {
    const dir = await sqlite.fresh();
    await mkdir(dir, { recursive: true });
    const older = new Database(join(dir, DATABASE_FILE));
    const session = legacySession('sess-1');
    try {
      migrate(older, 4);
      older
        .prepare(
          `INSERT INTO legacy_sessions (session_id_hash, user_id, forgejo_login, grant_id, client_id, initialize_params,
             protocol_version, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          session.sessionIdHash,
          session.userId,
          session.forgejoLogin,
          session.grantId,
          session.clientId,
          session.initializeParams,
          session.protocolVersion,
          session.createdAt,
          session.lastUsedAt,
        );
    } finally {
      older.close();
    }

    await withStore(sqlite, dir, randomBytes(32), async (store) => {
      assert.deepEqual(await store.legacySessions.find('sess-1'), { ...session, ownerReplica: '' }, 'no owner recorded yet');
      await store.replicas.heartbeat({ id: 'r1', url: null, startedAt: T0 }, T0);
      assert.deepEqual(await store.replicas.list(T0), [{ id: 'r1', url: null, startedAt: T0, heartbeatAt: T0 }]);
    });
    const db = new Database(join(dir, DATABASE_FILE), { readonly: true });
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });
});
