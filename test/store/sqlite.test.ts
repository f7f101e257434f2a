import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import Database from 'better-sqlite3';

import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { DATABASE_FILE, openSqliteStore } from '../../src/store/sqlite.js';
import { describeStore, withStore, type StoreBackend } from './store-contract.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'broker-store-test-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirCounter = 0;

/** One data directory per store; what is at rest is the database file and its WAL. */
const sqlite: StoreBackend = {
  fresh: () => {
    dirCounter += 1;
    return Promise.resolve(join(root, `data-${dirCounter}`));
  },
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
