import type pg from 'pg';

import { withTransaction } from './pg-pool.js';

/**
 * The one owner of the PostgreSQL schema. Migrations are numbered from 1;
 * `broker_schema_migrations` holds one row per migration applied. Never edit
 * a released migration: append a new one.
 *
 * The tables mirror the SQLite schema column for column, with PostgreSQL
 * types: times in milliseconds are BIGINT, flags BOOLEAN, lists JSONB. They
 * are created unqualified, in the first schema of the connection's
 * search_path, so one database can hold several brokers (`?options=-c
 * search_path=…` in BROKER_DATABASE_URL).
 */
const MIGRATIONS: readonly string[] = [
  // 1: the initial schema.
  `
  CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    client_secret_hash TEXT,
    token_endpoint_auth_method TEXT NOT NULL,
    redirect_uris JSONB NOT NULL,
    grant_types JSONB NOT NULL,
    client_name TEXT,
    client_uri TEXT,
    created_at BIGINT NOT NULL,
    first_sign_in_at BIGINT
  );

  CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    forgejo_login TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );

  CREATE TABLE forgejo_credentials (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id),
    sealed_tokens TEXT NOT NULL,
    generation BIGINT NOT NULL,
    revoked_at BIGINT,
    updated_at BIGINT NOT NULL
  );

  CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
  );

  CREATE TABLE pending_authorizations (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    state TEXT,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT,
    browser_binding_hash TEXT NOT NULL,
    csrf_token_hash TEXT NOT NULL,
    user_id TEXT,
    approved BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX pending_authorizations_expires ON pending_authorizations (expires_at);

  CREATE TABLE upstream_states (
    state_hash TEXT PRIMARY KEY,
    pending_id TEXT NOT NULL REFERENCES pending_authorizations (id) ON DELETE CASCADE,
    sealed_code_verifier TEXT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX upstream_states_pending ON upstream_states (pending_id);

  CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    replayed_at BIGINT,
    grant_id TEXT
  );
  CREATE INDEX authorization_codes_grant ON authorization_codes (grant_id);

  CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  CREATE INDEX grants_user_client ON grants (user_id, client_id);

  CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  CREATE INDEX access_tokens_grant ON access_tokens (grant_id);
  CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

  CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    successor_hash TEXT,
    successor_sealed TEXT,
    successor_sealed_until BIGINT
  );
  CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
  CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

  CREATE TABLE sign_ins (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
  );

  -- PostgreSQL only: who is refreshing a user's Forgejo credential right now,
  -- across replicas. expires_at is on the database's clock, so replicas with
  -- skewed clocks agree; a crashed holder's lease simply runs out.
  CREATE TABLE refresh_leases (
    user_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  `,
  // 2: a Forgejo refresh is recorded before it is sent (its answer may be lost), and a refused refresh token is remembered.
  `
  ALTER TABLE forgejo_credentials ADD COLUMN refresh_started_at BIGINT;
  ALTER TABLE forgejo_credentials ADD COLUMN refresh_refused_at BIGINT;
  `,
  // 3: one row that ready() rewrites, to prove the database accepts a commit.
  `
  CREATE TABLE readiness_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at BIGINT NOT NULL
  );
  `,
  // 4: shared mode's legacy-era sessions, so that a restarted broker or another replica carries them on.
  `
  CREATE TABLE legacy_sessions (
    session_id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    forgejo_login TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    initialize_params TEXT NOT NULL,
    protocol_version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
  );
  CREATE INDEX legacy_sessions_user ON legacy_sessions (user_id);
  CREATE INDEX legacy_sessions_last_used ON legacy_sessions (last_used_at);
  `,
  // 5: the replicas, each heartbeating, so that every replica knows the live ones and where to forward what another owns.
  `
  CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    url TEXT,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
  );
  `,
  // 6: a legacy session names the replica that carries it, so that one replica adopts a gone owner's sessions.
  `
  ALTER TABLE legacy_sessions ADD COLUMN owner_replica TEXT NOT NULL DEFAULT '';
  `,
  // 7: the audit log: every tool call and every sign-in, consent, revocation and refresh failure.
  `
  CREATE TABLE audit_records (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    forgejo_login TEXT,
    client_id TEXT,
    client_name TEXT,
    era TEXT,
    session_ref TEXT,
    tool TEXT,
    outcome TEXT NOT NULL,
    error_code INTEGER,
    detail TEXT,
    duration_ms BIGINT,
    request_bytes BIGINT,
    response_bytes BIGINT,
    arguments_sha256 TEXT,
    arguments TEXT
  );
  CREATE INDEX audit_records_at ON audit_records (at);
  CREATE INDEX audit_records_login_at ON audit_records (forgejo_login, at);
  `,
  // 8: when each grant was last used (for the Connections page and the admin commands), and the revocation log every broker follows.
  `
  ALTER TABLE grants ADD COLUMN last_used_at BIGINT;
  CREATE INDEX grants_client ON grants (client_id);
  CREATE TABLE revocations (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id TEXT,
    client_id TEXT,
    grant_id TEXT,
    created_at BIGINT NOT NULL
  );
  `,
  // 9: client assertions already used, so that every replica refuses a second use.
  `
  CREATE TABLE used_assertions (
    key_hash TEXT PRIMARY KEY,
    valid_until BIGINT NOT NULL
  );
  `,
];

export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

/** The table recording applied migrations; exported for tests and operators. */
export const MIGRATIONS_TABLE = 'broker_schema_migrations';

/**
 * Key of the transaction-level advisory lock that serialises migrations
 * across every broker on the database ("fmcb" + "migr" as two 32-bit words,
 * unlikely to collide with an application sharing the database).
 */
const MIGRATION_LOCK: readonly [number, number] = [0x666d6362, 0x6d696772];

/**
 * Brings the database up to POSTGRES_SCHEMA_VERSION; refuses a database from
 * a newer broker. Everything runs in one transaction under an advisory lock:
 * replicas starting together queue on the lock, the first one migrates, the
 * others then find nothing to do; a failed migration leaves nothing behind
 * (PostgreSQL DDL is transactional).
 */
export async function migratePostgres(pool: pg.Pool, now: number = Date.now()): Promise<void> {
  await withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`);
    const current = await appliedVersion(client);
    if (current > POSTGRES_SCHEMA_VERSION) {
      throw new Error(`database schema version ${current} is newer than this broker's ${POSTGRES_SCHEMA_VERSION}`);
    }
    for (let version = current + 1; version <= POSTGRES_SCHEMA_VERSION; version++) {
      await client.query(MIGRATIONS[version - 1] as string);
      await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (version, applied_at) VALUES ($1, $2)`, [version, now]);
    }
  });
}

async function appliedVersion(client: pg.PoolClient): Promise<number> {
  const result = await client.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${MIGRATIONS_TABLE}`);
  return result.rows[0]?.version ?? 0;
}
