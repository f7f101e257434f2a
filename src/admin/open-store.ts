import { access } from 'node:fs/promises';
import { join } from 'node:path';

import type { Config } from '../config/config.js';
import { BrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import { ENCRYPTION_KEY_FILE, loadEncryptionKey } from '../store/encryption-key.js';
import { openPostgresStore } from '../store/postgres.js';
import { DATABASE_FILE, openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';

/**
 * The store `serve` would open with the same configuration, opened without
 * a broker: PostgreSQL at BROKER_DATABASE_URL, or the SQLite file in the data
 * directory. Unlike `serve` it creates nothing: a data directory without a
 * broker's database (a mistyped --data-dir) is an error, not a new empty
 * store with a new key.
 */
export async function openAdminStore(config: Config, log: Logger): Promise<Store> {
  const configured = config.signIn.encryptionKey;
  if (config.databaseUrl !== undefined) {
    // loadConfig refuses a database URL without a configured key.
    if (configured === undefined) throw new BrokerError('internal', 'BROKER_ENCRYPTION_KEY is required with BROKER_DATABASE_URL');
    return openPostgresStore({ connectionString: config.databaseUrl, encryptionKey: configured, maxConnections: 2 });
  }
  const database = join(config.dataDir, DATABASE_FILE);
  if (!(await exists(database))) {
    throw new BrokerError(
      'not_found',
      `no broker database at ${database}: give the data directory the broker runs with (--data-dir or BROKER_DATA_DIR), or BROKER_DATABASE_URL`,
    );
  }
  if (configured === undefined && !(await exists(join(config.dataDir, ENCRYPTION_KEY_FILE)))) {
    throw new BrokerError(
      'not_found',
      `no ${ENCRYPTION_KEY_FILE} in ${config.dataDir}: give the key the broker runs with (--encryption-key or BROKER_ENCRYPTION_KEY)`,
    );
  }
  const key = await loadEncryptionKey(config.dataDir, configured, log);
  return openSqliteStore({ dataDir: config.dataDir, encryptionKey: key });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
