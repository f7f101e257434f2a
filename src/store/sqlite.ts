import { chmod, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';

import Database from 'better-sqlite3';

import { KeyedLock } from './keyed-lock.js';
import { migrate } from './schema.js';
import {
  CLIENT_INSERT_COLUMNS,
  CODE_INSERT_COLUMNS,
  GRANT_COLUMNS,
  PENDING_INSERT_COLUMNS,
  accessTokenFromRow,
  clientFromRow,
  clientInsertValues,
  codeFromRow,
  codeInsertValues,
  credentialFromRow,
  pendingFromRow,
  pendingInsertValues,
  refreshTokenFromRow,
  upstreamStateFromRow,
  userFromRow,
  type AccessRow,
  type ClientRow,
  type CodeRow,
  type CredentialRow,
  type DialectColumns,
  type PendingRow,
  type RefreshRow,
  type UpstreamRow,
  type UserRow,
} from './rows.js';
import { sealCodeVerifier, sealForgejoTokens } from './sealed.js';
import type {
  AccessTokenView,
  AuthorizationCode,
  CodeConsumption,
  ForgejoCredential,
  ForgejoTokens,
  Grant,
  PendingAuthorization,
  PendingAuthorizationChange,
  PurgeResult,
  RefreshTokenView,
  RegisteredClient,
  Store,
  TokenHashes,
  UpstreamState,
  User,
} from './store.js';

export const DATABASE_FILE = 'broker.db';

export interface SqliteStoreOptions {
  /** Directory holding `broker.db`; created if missing. */
  readonly dataDir: string;
  /** 32-byte key sealing Forgejo credentials and PKCE verifiers. */
  readonly encryptionKey: Buffer;
}

/** SQLite has no boolean or list type: flags are INTEGER 0/1, lists JSON in TEXT. */
const SQLITE_COLUMNS: DialectColumns<number, string> = {
  readFlag: (value) => value === 1,
  writeFlag: (value) => (value ? 1 : 0),
  readStringList: (text) => JSON.parse(text) as string[],
};

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
  readonly #db: Database.Database;
  readonly #key: Buffer;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #refreshLock = new KeyedLock();

  constructor(db: Database.Database, key: Buffer) {
    this.#db = db;
    this.#key = key;
  }

  readonly clients = {
    create: (client: RegisteredClient): Promise<void> =>
      this.#run(() => {
        this.#stmt(`INSERT INTO clients (${CLIENT_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...clientInsertValues(client));
      }),
    find: (clientId: string): Promise<RegisteredClient | undefined> =>
      this.#run(() => {
        const row = this.#stmt('SELECT * FROM clients WHERE client_id = ?').get(clientId) as ClientRow<string> | undefined;
        return row === undefined ? undefined : clientFromRow(row, SQLITE_COLUMNS);
      }),
    markSignedIn: (clientId: string, at: number): Promise<void> =>
      this.#run(() => {
        this.#stmt('UPDATE clients SET first_sign_in_at = ? WHERE client_id = ? AND first_sign_in_at IS NULL').run(at, clientId);
      }),
    countUnused: (): Promise<number> =>
      this.#run(() => (this.#stmt('SELECT COUNT(*) AS n FROM clients WHERE first_sign_in_at IS NULL').get() as { n: number }).n),
  };

  readonly users = {
    find: (userId: string): Promise<User | undefined> =>
      this.#run(() => {
        const row = this.#stmt('SELECT user_id, forgejo_login FROM users WHERE user_id = ?').get(userId) as UserRow | undefined;
        return row === undefined ? undefined : userFromRow(row);
      }),
  };

  readonly credentials = {
    find: (userId: string): Promise<ForgejoCredential | undefined> =>
      this.#run(() => {
        const row = this.#stmt('SELECT * FROM forgejo_credentials WHERE user_id = ?').get(userId) as CredentialRow | undefined;
        return row === undefined ? undefined : credentialFromRow(this.#key, row);
      }),
    replaceAfterLogin: (user: User, tokens: ForgejoTokens, at: number): Promise<ForgejoCredential> =>
      this.#run(() => {
        const sealed = this.#sealTokens(user.userId, tokens);
        const row = this.#db.transaction((): CredentialRow => {
          this.#stmt(
            `INSERT INTO users (user_id, forgejo_login, created_at, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET forgejo_login = excluded.forgejo_login, updated_at = excluded.updated_at`,
          ).run(user.userId, user.forgejoLogin, at, at);
          return this.#stmt(
            `INSERT INTO forgejo_credentials (user_id, sealed_tokens, generation, revoked_at, updated_at)
             VALUES (?, ?, 1, NULL, ?)
             ON CONFLICT (user_id) DO UPDATE SET sealed_tokens = excluded.sealed_tokens,
               generation = forgejo_credentials.generation + 1, revoked_at = NULL, refresh_started_at = NULL,
               refresh_refused_at = NULL, updated_at = excluded.updated_at
             RETURNING *`,
          ).get(user.userId, sealed, at) as CredentialRow;
        })();
        return credentialFromRow(this.#key, row);
      }),
    storeRefreshed: (
      userId: string,
      expectedGeneration: number,
      tokens: ForgejoTokens,
      at: number,
    ): Promise<ForgejoCredential | undefined> =>
      this.#run(() => {
        const row = this.#stmt(
          `UPDATE forgejo_credentials SET sealed_tokens = ?, generation = generation + 1, refresh_started_at = NULL,
             refresh_refused_at = NULL, updated_at = ?
           WHERE user_id = ? AND generation = ? AND revoked_at IS NULL
           RETURNING *`,
        ).get(this.#sealTokens(userId, tokens), at, userId, expectedGeneration) as CredentialRow | undefined;
        return row === undefined ? undefined : credentialFromRow(this.#key, row);
      }),
    markRefreshStarted: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#run(() => this.#markCredential('refresh_started_at', userId, expectedGeneration, at)),
    markRefreshRefused: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#run(() => this.#markCredential('refresh_refused_at', userId, expectedGeneration, at)),
    endCredentialKeepingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#run(() => this.#endCredential(userId, expectedGeneration, at)),
    endCredentialRevokingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#run(() =>
        this.#db.transaction((): boolean => {
          if (!this.#endCredential(userId, expectedGeneration, at)) return false;
          this.#stmt('UPDATE grants SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL').run(at, userId);
          return true;
        })(),
      ),
    // One process owns the database file, so an in-process lock serialises every refresh.
    withRefreshLock: <T>(userId: string, work: () => Promise<T>): Promise<T> => this.#refreshLock.run(userId, work),
  };

  readonly consents = {
    record: (userId: string, clientId: string, at: number): Promise<void> =>
      this.#run(() => {
        this.#stmt('INSERT INTO consents (user_id, client_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING').run(
          userId,
          clientId,
          at,
        );
      }),
    has: (userId: string, clientId: string): Promise<boolean> =>
      this.#run(() => {
        const row = this.#stmt('SELECT 1 FROM consents WHERE user_id = ? AND client_id = ?').get(userId, clientId);
        return row !== undefined;
      }),
    listClientIds: (userId: string): Promise<string[]> =>
      this.#run(() => {
        const rows = this.#stmt('SELECT client_id FROM consents WHERE user_id = ? ORDER BY created_at').all(userId) as {
          client_id: string;
        }[];
        return rows.map((row) => row.client_id);
      }),
    revoke: (userId: string, clientId: string, at: number): Promise<void> =>
      this.#run(() => {
        this.#db.transaction(() => {
          this.#stmt('DELETE FROM consents WHERE user_id = ? AND client_id = ?').run(userId, clientId);
          this.#stmt('UPDATE grants SET revoked_at = ? WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL').run(
            at,
            userId,
            clientId,
          );
        })();
      }),
  };

  readonly pendingAuthorizations = {
    create: (pending: PendingAuthorization): Promise<void> =>
      this.#run(() => {
        this.#stmt(`INSERT INTO pending_authorizations (${PENDING_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
          ...pendingInsertValues(pending, SQLITE_COLUMNS),
        );
      }),
    find: (id: string, now: number): Promise<PendingAuthorization | undefined> =>
      this.#run(() => {
        const row = this.#stmt('SELECT * FROM pending_authorizations WHERE id = ? AND expires_at > ?').get(id, now) as
          PendingRow<number> | undefined;
        return row === undefined ? undefined : pendingFromRow(row, SQLITE_COLUMNS);
      }),
    update: (id: string, change: PendingAuthorizationChange): Promise<void> =>
      this.#run(() => {
        this.#stmt(
          `UPDATE pending_authorizations SET user_id = coalesce(?, user_id), approved = max(approved, ?),
             csrf_token_hash = coalesce(?, csrf_token_hash)
           WHERE id = ?`,
        ).run(change.userId ?? null, SQLITE_COLUMNS.writeFlag(change.approved === true), change.csrfTokenHash ?? null, id);
      }),
    take: (id: string, now: number): Promise<PendingAuthorization | undefined> =>
      this.#run(() => {
        const row = this.#stmt('DELETE FROM pending_authorizations WHERE id = ? RETURNING *').get(id) as PendingRow<number> | undefined;
        return row === undefined || row.expires_at <= now ? undefined : pendingFromRow(row, SQLITE_COLUMNS);
      }),
  };

  readonly upstreamStates = {
    create: (state: UpstreamState): Promise<void> =>
      this.#run(() => {
        this.#stmt('INSERT INTO upstream_states (state_hash, pending_id, sealed_code_verifier, expires_at) VALUES (?, ?, ?, ?)').run(
          state.stateHash,
          state.pendingId,
          sealCodeVerifier(this.#key, state.stateHash, state.codeVerifier),
          state.expiresAt,
        );
      }),
    take: (stateHash: string, now: number): Promise<UpstreamState | undefined> =>
      this.#run(() => {
        const row = this.#stmt('DELETE FROM upstream_states WHERE state_hash = ? RETURNING *').get(stateHash) as UpstreamRow | undefined;
        return row === undefined || row.expires_at <= now ? undefined : upstreamStateFromRow(this.#key, row);
      }),
  };

  readonly codes = {
    create: (code: AuthorizationCode): Promise<void> =>
      this.#run(() => {
        this.#stmt(`INSERT INTO authorization_codes (${CODE_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
          ...codeInsertValues(code),
        );
      }),
    consume: (codeHash: string, now: number): Promise<CodeConsumption> =>
      this.#run(() => {
        const result = this.#db.transaction((): CodeConsumption => {
          const row = this.#stmt('SELECT * FROM authorization_codes WHERE code_hash = ?').get(codeHash) as CodeRow | undefined;
          if (row === undefined) return { status: 'unknown' };
          if (row.used_at !== null) {
            this.#stmt('UPDATE authorization_codes SET replayed_at = coalesce(replayed_at, ?) WHERE code_hash = ?').run(now, codeHash);
            return { status: 'replayed', grantId: row.grant_id };
          }
          if (row.expires_at <= now) return { status: 'unknown' };
          this.#stmt('UPDATE authorization_codes SET used_at = ? WHERE code_hash = ?').run(now, codeHash);
          return { status: 'valid', code: codeFromRow(row) };
        })();
        return result;
      }),
  };

  readonly grants = {
    createFromCode: (codeHash: string, grant: Grant, tokens: TokenHashes): Promise<boolean> =>
      this.#run(() => {
        const created = this.#db.transaction((): boolean => {
          const claimed = this.#stmt(
            `UPDATE authorization_codes SET grant_id = ?
             WHERE code_hash = ? AND used_at IS NOT NULL AND replayed_at IS NULL AND grant_id IS NULL`,
          ).run(grant.grantId, codeHash);
          if (claimed.changes === 0) return false;
          this.#stmt(
            `INSERT INTO grants (grant_id, user_id, client_id, resource, scope, created_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, NULL)`,
          ).run(grant.grantId, grant.userId, grant.clientId, grant.resource, grant.scope, grant.createdAt);
          this.#insertTokens(grant.grantId, tokens);
          return true;
        })();
        return created;
      }),
    findAccessToken: (tokenHash: string): Promise<AccessTokenView | undefined> =>
      this.#run(() => {
        const row = this.#stmt(
          `SELECT a.token_hash, a.expires_at, a.revoked_at, ${GRANT_COLUMNS},
             u.forgejo_login, c.revoked_at AS credential_revoked_at
           FROM access_tokens a JOIN grants g ON g.grant_id = a.grant_id
           LEFT JOIN users u ON u.user_id = g.user_id
           LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
           WHERE a.token_hash = ?`,
        ).get(tokenHash) as AccessRow | undefined;
        return row === undefined ? undefined : accessTokenFromRow(row);
      }),
    findRefreshToken: (tokenHash: string): Promise<RefreshTokenView | undefined> =>
      this.#run(() => {
        const row = this.#stmt(
          `SELECT r.token_hash, r.expires_at, r.rotated_at, r.successor_sealed, r.successor_sealed_until,
             s.rotated_at AS successor_rotated_at, ${GRANT_COLUMNS}, c.revoked_at AS credential_revoked_at
           FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id
           LEFT JOIN refresh_tokens s ON s.token_hash = r.successor_hash
           LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
           WHERE r.token_hash = ?`,
        ).get(tokenHash) as RefreshRow | undefined;
        return row === undefined ? undefined : refreshTokenFromRow(row);
      }),
    rotateRefreshToken: (
      oldHash: string,
      tokens: TokenHashes,
      successor: { readonly sealed: string; readonly sealedUntil: number } | null,
      at: number,
    ): Promise<'rotated' | 'already_rotated'> =>
      this.#run(() => {
        const outcome = this.#db.transaction((): 'rotated' | 'already_rotated' => {
          const old = this.#stmt(
            `UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?, successor_sealed = ?, successor_sealed_until = ?
             WHERE token_hash = ? AND rotated_at IS NULL
             RETURNING grant_id`,
          ).get(at, tokens.refreshTokenHash ?? null, successor?.sealed ?? null, successor?.sealedUntil ?? null, oldHash) as
            { grant_id: string } | undefined;
          if (old === undefined) return 'already_rotated';
          this.#insertTokens(old.grant_id, tokens);
          return 'rotated';
        })();
        return outcome;
      }),
    revokeGrant: (grantId: string, at: number): Promise<void> =>
      this.#run(() => {
        this.#stmt('UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL').run(at, grantId);
      }),
    revokeAccessToken: (tokenHash: string, at: number): Promise<void> =>
      this.#run(() => {
        this.#stmt('UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL').run(at, tokenHash);
      }),
  };

  readonly signIns = {
    create: (signIn: { tokenHash: string; userId: string; createdAt: number; expiresAt: number }): Promise<void> =>
      this.#run(() => {
        this.#stmt('INSERT INTO sign_ins (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)').run(
          signIn.tokenHash,
          signIn.userId,
          signIn.createdAt,
          signIn.expiresAt,
        );
      }),
    findUserId: (tokenHash: string, now: number): Promise<string | undefined> =>
      this.#run(() => {
        const row = this.#stmt('SELECT user_id FROM sign_ins WHERE token_hash = ? AND expires_at > ?').get(tokenHash, now) as
          { user_id: string } | undefined;
        return row?.user_id;
      }),
    delete: (tokenHash: string): Promise<void> =>
      this.#run(() => {
        this.#stmt('DELETE FROM sign_ins WHERE token_hash = ?').run(tokenHash);
      }),
  };

  purge(now: number, unusedClientsCreatedBefore: number): Promise<PurgeResult> {
    return this.#run(() =>
      this.#db.transaction((): PurgeResult => {
        let rows = 0;
        rows += this.#stmt('DELETE FROM pending_authorizations WHERE expires_at <= ?').run(now).changes;
        rows += this.#stmt('DELETE FROM upstream_states WHERE expires_at <= ?').run(now).changes;
        // Used codes stay until they expire, so that a replay is still recognised.
        rows += this.#stmt('DELETE FROM authorization_codes WHERE expires_at <= ?').run(now).changes;
        rows += this.#stmt('DELETE FROM access_tokens WHERE expires_at <= ?').run(now).changes;
        rows += this.#stmt('DELETE FROM refresh_tokens WHERE expires_at <= ?').run(now).changes;
        this.#stmt(
          `UPDATE refresh_tokens SET successor_sealed = NULL, successor_sealed_until = NULL
         WHERE successor_sealed_until <= ?`,
        ).run(now);
        rows += this.#stmt(
          `DELETE FROM grants WHERE
           NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = grants.grant_id)
           AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = grants.grant_id)
           AND NOT EXISTS (SELECT 1 FROM authorization_codes c WHERE c.grant_id = grants.grant_id)`,
        ).run().changes;
        rows += this.#stmt('DELETE FROM sign_ins WHERE expires_at <= ?').run(now).changes;
        const unusedClients = this.#stmt('DELETE FROM clients WHERE first_sign_in_at IS NULL AND created_at < ?').run(
          unusedClientsCreatedBefore,
        ).changes;
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
      if (!this.#db.open) return Promise.resolve(false);
      this.#stmt(
        'INSERT INTO readiness_probe (id, checked_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at',
      ).run(Date.now());
      return Promise.resolve(true);
    } catch {
      return Promise.resolve(false);
    }
  }

  close(): Promise<void> {
    if (this.#db.open) this.#db.close();
    return Promise.resolve();
  }

  /** Runs synchronous SQLite work as a promise, so callers see one async shape for every backend. */
  #run<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Statements are compiled once per SQL text; the authentication path runs one per request. */
  #stmt(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #insertTokens(grantId: string, tokens: TokenHashes): void {
    this.#stmt('INSERT INTO access_tokens (token_hash, grant_id, expires_at, revoked_at) VALUES (?, ?, ?, NULL)').run(
      tokens.accessTokenHash,
      grantId,
      tokens.accessExpiresAt,
    );
    if (tokens.refreshTokenHash !== undefined && tokens.refreshExpiresAt !== undefined) {
      this.#stmt('INSERT INTO refresh_tokens (token_hash, grant_id, expires_at) VALUES (?, ?, ?)').run(
        tokens.refreshTokenHash,
        grantId,
        tokens.refreshExpiresAt,
      );
    }
  }

  /** Sets one of the credential's time columns, compare-and-set on its generation; the generation stays (the tokens did not change). */
  #markCredential(column: 'refresh_started_at' | 'refresh_refused_at', userId: string, expectedGeneration: number, at: number): boolean {
    const result = this.#stmt(
      `UPDATE forgejo_credentials SET ${column} = ?, updated_at = ?
       WHERE user_id = ? AND generation = ? AND revoked_at IS NULL`,
    ).run(at, at, userId, expectedGeneration);
    return result.changes === 1;
  }

  /** Marks the credential dead, compare-and-set on its generation; true when this call ended it. */
  #endCredential(userId: string, expectedGeneration: number, at: number): boolean {
    const result = this.#stmt(
      `UPDATE forgejo_credentials SET revoked_at = ?, generation = generation + 1, updated_at = ?
       WHERE user_id = ? AND generation = ? AND revoked_at IS NULL`,
    ).run(at, at, userId, expectedGeneration);
    return result.changes === 1;
  }

  #sealTokens(userId: string, tokens: ForgejoTokens): string {
    return sealForgejoTokens(this.#key, userId, tokens);
  }
}
