import { chmod, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';

import Database from 'better-sqlite3';

import { adminRepositories } from './admin-queries.js';
import { REVOCATION_LOG_KEPT_MS, type AdminRepository, type RevocationRepository } from './admin-store.js';
import { migrate } from './schema.js';
import { sqliteAuthorizationRepositories } from './sqlite-authorization.js';
import { SqliteConnection, sqliteExecutor } from './sqlite-connection.js';
import { sqliteCredentialRepositories } from './sqlite-credentials.js';
import { sqliteGrantRepositories } from './sqlite-grants.js';
import { sqliteLegacySessionRepository } from './sqlite-sessions.js';
import { sqliteReplicaRepository } from './sqlite-replicas.js';
import { assertionReplayRepository, type AssertionReplayRepository } from './assertion-replays.js';
import { sqliteAuditRepository } from './sqlite-audit.js';
import type {
  AuditRepository,
  AuthorizationCodeRepository,
  ClientRepository,
  ConsentRepository,
  ForgejoCredentialRepository,
  GrantRepository,
  LegacySessionRepository,
  PendingAuthorizationRepository,
  PurgeResult,
  ReplicaRepository,
  SignInRepository,
  Store,
  UpstreamStateRepository,
  UserRepository,
} from './store.js';

export const DATABASE_FILE = 'broker.db';

export interface SqliteStoreOptions {
  /** Directory holding `broker.db`; created if missing. */
  readonly dataDir: string;
  /** 32-byte key sealing Forgejo credentials and PKCE verifiers. */
  readonly encryptionKey: Buffer;
}

/**
 * Opens (creating and migrating as needed) the SQLite store in
 * `<dataDir>/broker.db`. WAL lets readers (every /mcp authentication) run
 * beside a writer; synchronous=FULL makes each commit durable before the call
 * returns, which the Forgejo refresh-token rotation depends on.
 */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const path = join(options.dataDir, DATABASE_FILE);
  await restrictDatabaseFiles(path);
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return new SqliteStore(db, options.encryptionKey);
  } catch (error) {
    db.close();
    throw error;
  }
}

/**
 * The database holds hashes, sealed tokens and logins: only the broker's user
 * may read it, whatever the umask or the data directory's mode. SQLite gives
 * the -wal and -shm files it creates the database file's mode, so creating
 * that file 0600 first is enough; files an older version left wider are
 * narrowed.
 */
async function restrictDatabaseFiles(path: string): Promise<void> {
  const handle = await open(path, 'a', 0o600);
  try {
    await handle.chmod(0o600);
  } finally {
    await handle.close();
  }
  for (const companion of [`${path}-wal`, `${path}-shm`]) {
    try {
      await chmod(companion, 0o600);
    } catch (error) {
      if (!(error instanceof Error && 'code' in error && error.code === 'ENOENT')) throw error;
    }
  }
}

class SqliteStore implements Store {
  readonly #connection: SqliteConnection;
  readonly clients: ClientRepository;
  readonly users: UserRepository;
  readonly credentials: ForgejoCredentialRepository;
  readonly consents: ConsentRepository;
  readonly pendingAuthorizations: PendingAuthorizationRepository;
  readonly upstreamStates: UpstreamStateRepository;
  readonly codes: AuthorizationCodeRepository;
  readonly grants: GrantRepository;
  readonly signIns: SignInRepository;
  readonly legacySessions: LegacySessionRepository;
  readonly replicas: ReplicaRepository;
  readonly audit: AuditRepository;
  readonly admin: AdminRepository;
  readonly revocations: RevocationRepository;
  readonly assertionReplays: AssertionReplayRepository;

  constructor(db: Database.Database, key: Buffer) {
    const connection = new SqliteConnection(db);
    this.#connection = connection;
    ({ users: this.users, credentials: this.credentials } = sqliteCredentialRepositories(connection, key));
    ({ codes: this.codes, grants: this.grants } = sqliteGrantRepositories(connection));
    ({
      clients: this.clients,
      consents: this.consents,
      pendingAuthorizations: this.pendingAuthorizations,
      upstreamStates: this.upstreamStates,
      signIns: this.signIns,
    } = sqliteAuthorizationRepositories(connection, key));
    this.legacySessions = sqliteLegacySessionRepository(connection);
    this.replicas = sqliteReplicaRepository(connection);
    this.audit = sqliteAuditRepository(connection);
    ({ admin: this.admin, revocations: this.revocations } = adminRepositories(sqliteExecutor(connection)));
    this.assertionReplays = assertionReplayRepository(sqliteExecutor(connection));
  }

  purge(now: number, unusedClientsCreatedBefore: number): Promise<PurgeResult> {
    return this.#connection.run(() =>
      this.#connection.db.transaction((): PurgeResult => {
        let rows = 0;
        rows += this.#connection.stmt('DELETE FROM pending_authorizations WHERE expires_at <= ?').run(now).changes;
        rows += this.#connection.stmt('DELETE FROM upstream_states WHERE expires_at <= ?').run(now).changes;
        // Used codes stay until they expire, so that a replay is still recognised.
        rows += this.#connection.stmt('DELETE FROM authorization_codes WHERE expires_at <= ?').run(now).changes;
        rows += this.#connection.stmt('DELETE FROM access_tokens WHERE expires_at <= ?').run(now).changes;
        rows += this.#connection.stmt('DELETE FROM refresh_tokens WHERE expires_at <= ?').run(now).changes;
        this.#connection
          .stmt(
            `UPDATE refresh_tokens SET successor_sealed = NULL, successor_sealed_until = NULL
         WHERE successor_sealed_until <= ?`,
          )
          .run(now);
        rows += this.#connection
          .stmt(
            `DELETE FROM grants WHERE
           NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = grants.grant_id)
           AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = grants.grant_id)
           AND NOT EXISTS (SELECT 1 FROM authorization_codes c WHERE c.grant_id = grants.grant_id)`,
          )
          .run().changes;
        rows += this.#connection.stmt('DELETE FROM sign_ins WHERE expires_at <= ?').run(now).changes;
        rows += this.#connection.stmt('DELETE FROM revocations WHERE created_at <= ?').run(now - REVOCATION_LOG_KEPT_MS).changes;
        rows += this.#connection.stmt('DELETE FROM used_assertions WHERE valid_until <= ?').run(now).changes;
        const unusedClients = this.#connection
          .stmt('DELETE FROM clients WHERE first_sign_in_at IS NULL AND created_at < ?')
          .run(unusedClientsCreatedBefore).changes;
        return { rows, unusedClients };
      })(),
    );
  }

  /**
   * A read would still answer with the disk full; a one-row commit (a WAL
   * frame, flushed) shows the store can take the next sign-in or refresh.
   */
  ready(): Promise<boolean> {
    try {
      if (!this.#connection.db.open) return Promise.resolve(false);
      this.#connection
        .stmt('INSERT INTO readiness_probe (id, checked_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at')
        .run(Date.now());
      return Promise.resolve(true);
    } catch {
      return Promise.resolve(false);
    }
  }

  close(): Promise<void> {
    if (this.#connection.db.open) this.#connection.db.close();
    return Promise.resolve();
  }
}
