import type Database from 'better-sqlite3';

/**
 * The one owner of the SQLite schema. Migrations are numbered from 1 and the
 * pending ones run in order inside one transaction, as PostgreSQL's do (a page
 * several of them change is written to the WAL once: a new database's first
 * start needs a third less disk); `PRAGMA user_version` records the last one
 * applied. Never edit a released migration: append a new one.
 */
const MIGRATIONS: readonly string[] = [
  // 1: the initial schema.
  `
  CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    client_secret_hash TEXT,
    token_endpoint_auth_method TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    client_name TEXT,
    client_uri TEXT,
    created_at INTEGER NOT NULL,
    first_sign_in_at INTEGER
  );

  CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    forgejo_login TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );

  CREATE TABLE forgejo_credentials (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id),
    sealed_tokens TEXT NOT NULL,
    generation INTEGER NOT NULL,
    revoked_at INTEGER,
    updated_at INTEGER NOT NULL
  );

  CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
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
    approved INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );

  CREATE TABLE upstream_states (
    state_hash TEXT PRIMARY KEY,
    pending_id TEXT NOT NULL REFERENCES pending_authorizations (id) ON DELETE CASCADE,
    sealed_code_verifier TEXT NOT NULL,
    expires_at INTEGER NOT NULL
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
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    replayed_at INTEGER,
    grant_id TEXT
  );

  CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE INDEX grants_user_client ON grants (user_id, client_id);

  CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE INDEX access_tokens_grant ON access_tokens (grant_id);

  CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    successor_hash TEXT,
    successor_sealed TEXT,
    successor_sealed_until INTEGER
  );
  CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);

  CREATE TABLE sign_ins (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  `,
  // 2: a Forgejo refresh is recorded before it is sent (its answer may be lost), and a refused refresh token is remembered.
  `
  ALTER TABLE forgejo_credentials ADD COLUMN refresh_started_at INTEGER;
  ALTER TABLE forgejo_credentials ADD COLUMN refresh_refused_at INTEGER;
  `,
  // 3: one row that ready() rewrites, to prove a commit reaches the disk.
  `
  CREATE TABLE readiness_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
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
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
  );
  CREATE INDEX legacy_sessions_user ON legacy_sessions (user_id);
  CREATE INDEX legacy_sessions_last_used ON legacy_sessions (last_used_at);
  `,
  // 5: the replicas, each heartbeating, so that every replica knows the live ones and where to forward what another owns.
  `
  CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    url TEXT,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
  );
  `,
  // 6: a legacy session names the replica that carries it, so that one replica adopts a gone owner's sessions.
  `
  ALTER TABLE legacy_sessions ADD COLUMN owner_replica TEXT NOT NULL DEFAULT '';
  `,
  // 7: the audit log: every tool call and every sign-in, consent, revocation and refresh failure.
  `
  CREATE TABLE audit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
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
    duration_ms INTEGER,
    request_bytes INTEGER,
    response_bytes INTEGER,
    arguments_sha256 TEXT,
    arguments TEXT
  );
  CREATE INDEX audit_records_at ON audit_records (at);
  CREATE INDEX audit_records_login_at ON audit_records (forgejo_login, at);
  `,
  // 8: when each grant was last used (for the Connections page and the admin commands), and the revocation log every broker follows.
  `
  ALTER TABLE grants ADD COLUMN last_used_at INTEGER;
  CREATE INDEX grants_client ON grants (client_id);
  CREATE TABLE revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    user_id TEXT,
    client_id TEXT,
    grant_id TEXT,
    created_at INTEGER NOT NULL
  );
  `,
  // 9: client assertions already used, so that every replica refuses a second use.
  `
  CREATE TABLE used_assertions (
    key_hash TEXT PRIMARY KEY,
    valid_until INTEGER NOT NULL
  );
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the database up to SCHEMA_VERSION; refuses a database from a newer
 * broker. `target` stops earlier, to build a database as an older broker left
 * it (the migration tests).
 */
export function migrate(db: Database.Database, target: number = SCHEMA_VERSION): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(`database schema version ${current} is newer than this broker's ${SCHEMA_VERSION}`);
  }
  if (current >= target) return;
  db.transaction(() => {
    for (let version = current + 1; version <= target; version++) db.exec(MIGRATIONS[version - 1] as string);
    db.pragma(`user_version = ${target}`);
  })();
}
