import type pg from 'pg';

import { adminRepositories } from './admin-queries.js';
import { REVOCATION_LOG_KEPT_MS, type AdminRepository, type RevocationRepository } from './admin-store.js';
import { createPool, withTransaction, type PgPoolOptions } from './pg-pool.js';
import { postgresAuthorizationRepositories } from './postgres-authorization.js';
import { postgresCredentialRepositories } from './postgres-credentials.js';
import { postgresGrantRepositories } from './postgres-grants.js';
import { DB_NOW_MS, postgresExecutor, type Params } from './postgres-queries.js';
import { assertionReplayRepository, type AssertionReplayRepository } from './assertion-replays.js';
import { migratePostgres } from './postgres-schema.js';
import { postgresLegacySessionRepository } from './postgres-sessions.js';
import { postgresReplicaRepository } from './postgres-replicas.js';
import { postgresAuditRepository } from './postgres-audit.js';
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

export interface PostgresStoreOptions extends PgPoolOptions {
  /** 32-byte key sealing Forgejo credentials and PKCE verifiers; the same on every replica. */
  readonly encryptionKey: Buffer;
  /**
   * How long a replica may hold a user's refresh lease before another may
   * take it over (a crashed holder). Longer than a Forgejo refresh can take.
   * Default DEFAULT_REFRESH_LEASE_MS.
   */
  readonly refreshLeaseMs?: number;
  /** `ready()` answers false when the database takes longer than this. Default 2 s. */
  readonly readyTimeoutMs?: number;
}

export const DEFAULT_REFRESH_LEASE_MS = 60_000;

/**
 * Opens the PostgreSQL store: a connection pool, and the schema migrated to
 * this broker's version (once, even when several replicas start together).
 *
 * Where the SQLite store relies on its single writer, this one relies on row
 * locks: a conditional `UPDATE … RETURNING` (compare-and-set, re-checked by
 * PostgreSQL after waiting for a concurrent writer of the row) or a
 * transaction that reads with `SELECT … FOR UPDATE`. Every transaction runs
 * at READ COMMITTED, the server default.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const pool = createPool(options);
  try {
    await migratePostgres(pool);
    return new PostgresStore(pool, options);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

class PostgresStore implements Store {
  readonly #pool: pg.Pool;
  readonly #readyTimeoutMs: number;
  #closed = false;
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

  constructor(pool: pg.Pool, options: PostgresStoreOptions) {
    this.#pool = pool;
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 2_000;
    const key = options.encryptionKey;
    ({ users: this.users, credentials: this.credentials } = postgresCredentialRepositories(
      pool,
      key,
      options.refreshLeaseMs ?? DEFAULT_REFRESH_LEASE_MS,
    ));
    ({ codes: this.codes, grants: this.grants } = postgresGrantRepositories(pool));
    ({
      clients: this.clients,
      consents: this.consents,
      pendingAuthorizations: this.pendingAuthorizations,
      upstreamStates: this.upstreamStates,
      signIns: this.signIns,
    } = postgresAuthorizationRepositories(pool, key));
    this.legacySessions = postgresLegacySessionRepository(pool);
    this.replicas = postgresReplicaRepository(pool);
    this.audit = postgresAuditRepository(pool);
    ({ admin: this.admin, revocations: this.revocations } = adminRepositories(postgresExecutor(pool)));
    this.assertionReplays = assertionReplayRepository(postgresExecutor(pool));
  }

  purge(now: number, unusedClientsCreatedBefore: number): Promise<PurgeResult> {
    return withTransaction(this.#pool, async (client): Promise<PurgeResult> => {
      const deleted = async (sql: string, params: Params): Promise<number> => (await client.query(sql, [...params])).rowCount ?? 0;
      let rows = 0;
      rows += await deleted('DELETE FROM pending_authorizations WHERE expires_at <= $1', [now]);
      rows += await deleted('DELETE FROM upstream_states WHERE expires_at <= $1', [now]);
      // Used codes stay until they expire, so that a replay is still recognised.
      rows += await deleted('DELETE FROM authorization_codes WHERE expires_at <= $1', [now]);
      rows += await deleted('DELETE FROM access_tokens WHERE expires_at <= $1', [now]);
      rows += await deleted('DELETE FROM refresh_tokens WHERE expires_at <= $1', [now]);
      await client.query(
        `UPDATE refresh_tokens SET successor_sealed = NULL, successor_sealed_until = NULL
         WHERE successor_sealed_until <= $1`,
        [now],
      );
      rows += await deleted(
        `DELETE FROM grants WHERE
           NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = grants.grant_id)
           AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = grants.grant_id)
           AND NOT EXISTS (SELECT 1 FROM authorization_codes c WHERE c.grant_id = grants.grant_id)`,
        [],
      );
      rows += await deleted('DELETE FROM sign_ins WHERE expires_at <= $1', [now]);
      rows += await deleted('DELETE FROM revocations WHERE created_at <= $1', [now - REVOCATION_LOG_KEPT_MS]);
      rows += await deleted('DELETE FROM used_assertions WHERE valid_until <= $1', [now]);
      // Leases left by a replica that died while refreshing.
      await client.query(`DELETE FROM refresh_leases WHERE expires_at <= ${DB_NOW_MS}`);
      const unusedClients = await deleted('DELETE FROM clients WHERE first_sign_in_at IS NULL AND created_at < $1', [
        unusedClientsCreatedBefore,
      ]);
      return { rows, unusedClients };
    });
  }

  /** A one-row commit, not a read: a server that answers but cannot write (disk full, read-only standby) is not ready. */
  async ready(): Promise<boolean> {
    if (this.#closed) return false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#readyTimeoutMs);
    });
    const answer = this.#pool
      .query(
        'INSERT INTO readiness_probe (id, checked_at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET checked_at = EXCLUDED.checked_at',
        [Date.now()],
      )
      .then(
        () => true,
        () => false,
      );
    try {
      return await Promise.race([answer, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}
