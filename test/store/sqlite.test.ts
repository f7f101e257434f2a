import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { DATABASE_FILE, openSqliteStore } from '../../src/store/sqlite.js';
import { freshDataDirs } from '../support/host.js';
import { describeStore, type StoreBackend, withStore } from './store-contract.js';

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
});
