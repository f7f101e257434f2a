import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import type pg from 'pg';

import { BrokerError } from '../errors/errors.js';
import { KeyedLock } from './keyed-lock.js';
import { createPool, withTransaction, type PgPoolOptions } from './pg-pool.js';
import { migratePostgres } from './postgres-schema.js';
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
  SignIn,
  Store,
  TokenHashes,
  UpstreamState,
  User,
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

type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;
type Params = readonly unknown[];

/** BOOLEAN is a boolean both ways; JSONB arrives parsed, so each list is checked to be strings. */
const POSTGRES_COLUMNS: DialectColumns<boolean, unknown> = {
  readFlag: (value) => value,
  writeFlag: (value) => value,
  readStringList: stringList,
};

/** The database's clock in milliseconds: leases compare against it, never against a replica's clock. */
const DB_NOW_MS = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`;

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
  readonly #key: Buffer;
  readonly #refreshLeaseMs: number;
  readonly #readyTimeoutMs: number;
  readonly #refreshLock = new KeyedLock();
  #closed = false;

  constructor(pool: pg.Pool, options: PostgresStoreOptions) {
    this.#pool = pool;
    this.#key = options.encryptionKey;
    this.#refreshLeaseMs = options.refreshLeaseMs ?? DEFAULT_REFRESH_LEASE_MS;
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 2_000;
  }

  readonly clients = {
    create: async (client: RegisteredClient): Promise<void> => {
      await this.#pool.query(
        `INSERT INTO clients (${CLIENT_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        clientInsertValues(client),
      );
    },
    find: async (clientId: string): Promise<RegisteredClient | undefined> => {
      const row = await one<ClientRow<unknown>>(this.#pool, 'SELECT * FROM clients WHERE client_id = $1', [clientId]);
      return row === undefined ? undefined : clientFromRow(row, POSTGRES_COLUMNS);
    },
    markSignedIn: async (clientId: string, at: number): Promise<void> => {
      await this.#pool.query('UPDATE clients SET first_sign_in_at = $1 WHERE client_id = $2 AND first_sign_in_at IS NULL', [at, clientId]);
    },
    countUnused: async (): Promise<number> => {
      const row = await one<{ n: string }>(this.#pool, 'SELECT COUNT(*) AS n FROM clients WHERE first_sign_in_at IS NULL', []);
      return Number(row?.n ?? 0);
    },
  };

  readonly users = {
    find: async (userId: string): Promise<User | undefined> => {
      const row = await one<UserRow>(this.#pool, 'SELECT user_id, forgejo_login FROM users WHERE user_id = $1', [userId]);
      return row === undefined ? undefined : userFromRow(row);
    },
  };

  readonly credentials = {
    find: async (userId: string): Promise<ForgejoCredential | undefined> => {
      const row = await one<CredentialRow>(this.#pool, 'SELECT * FROM forgejo_credentials WHERE user_id = $1', [userId]);
      return row === undefined ? undefined : credentialFromRow(this.#key, row);
    },
    replaceAfterLogin: async (user: User, tokens: ForgejoTokens, at: number): Promise<ForgejoCredential> => {
      const sealed = sealForgejoTokens(this.#key, user.userId, tokens);
      const row = await this.#durably(async (client) => {
        await client.query(
          `INSERT INTO users (user_id, forgejo_login, created_at, updated_at) VALUES ($1, $2, $3, $3)
           ON CONFLICT (user_id) DO UPDATE SET forgejo_login = excluded.forgejo_login, updated_at = excluded.updated_at`,
          [user.userId, user.forgejoLogin, at],
        );
        return one<CredentialRow>(
          client,
          `INSERT INTO forgejo_credentials (user_id, sealed_tokens, generation, revoked_at, updated_at)
           VALUES ($1, $2, 1, NULL, $3)
           ON CONFLICT (user_id) DO UPDATE SET sealed_tokens = excluded.sealed_tokens,
             generation = forgejo_credentials.generation + 1, revoked_at = NULL, refresh_started_at = NULL,
             refresh_refused_at = NULL, updated_at = excluded.updated_at
           RETURNING *`,
          [user.userId, sealed, at],
        );
      });
      if (row === undefined) throw new BrokerError('internal', 'storing the Forgejo credential returned no row');
      return credentialFromRow(this.#key, row);
    },
    storeRefreshed: async (
      userId: string,
      expectedGeneration: number,
      tokens: ForgejoTokens,
      at: number,
    ): Promise<ForgejoCredential | undefined> => {
      const sealed = sealForgejoTokens(this.#key, userId, tokens);
      // Compare-and-set: a concurrent writer of the row makes PostgreSQL re-check the generation after it commits.
      const row = await this.#durably((client) =>
        one<CredentialRow>(
          client,
          `UPDATE forgejo_credentials SET sealed_tokens = $1, generation = generation + 1, refresh_started_at = NULL,
             refresh_refused_at = NULL, updated_at = $2
           WHERE user_id = $3 AND generation = $4 AND revoked_at IS NULL
           RETURNING *`,
          [sealed, at, userId, expectedGeneration],
        ),
      );
      return row === undefined ? undefined : credentialFromRow(this.#key, row);
    },
    markRefreshStarted: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#markCredential('refresh_started_at', userId, expectedGeneration, at),
    markRefreshRefused: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#markCredential('refresh_refused_at', userId, expectedGeneration, at),
    endCredentialKeepingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#durably((client) => endCredential(client, userId, expectedGeneration, at)),
    endCredentialRevokingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      this.#durably(async (client) => {
        if (!(await endCredential(client, userId, expectedGeneration, at))) return false;
        await client.query('UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL', [at, userId]);
        return true;
      }),
    withRefreshLock: <T>(userId: string, work: () => Promise<T>): Promise<T> =>
      // In process first, so that one replica never competes with itself for the lease.
      this.#refreshLock.run(userId, () => this.#withRefreshLease(userId, work)),
  };

  readonly consents = {
    record: async (userId: string, clientId: string, at: number): Promise<void> => {
      await this.#pool.query('INSERT INTO consents (user_id, client_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
        userId,
        clientId,
        at,
      ]);
    },
    has: async (userId: string, clientId: string): Promise<boolean> => {
      const row = await one(this.#pool, 'SELECT 1 FROM consents WHERE user_id = $1 AND client_id = $2', [userId, clientId]);
      return row !== undefined;
    },
    listClientIds: async (userId: string): Promise<string[]> => {
      const result = await this.#pool.query<{ client_id: string }>(
        'SELECT client_id FROM consents WHERE user_id = $1 ORDER BY created_at, client_id',
        [userId],
      );
      return result.rows.map((row) => row.client_id);
    },
    revoke: (userId: string, clientId: string, at: number): Promise<void> =>
      withTransaction(this.#pool, async (client) => {
        await client.query('DELETE FROM consents WHERE user_id = $1 AND client_id = $2', [userId, clientId]);
        await client.query('UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL', [
          at,
          userId,
          clientId,
        ]);
      }),
  };

  readonly pendingAuthorizations = {
    create: async (pending: PendingAuthorization): Promise<void> => {
      await this.#pool.query(
        `INSERT INTO pending_authorizations (${PENDING_INSERT_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        pendingInsertValues(pending, POSTGRES_COLUMNS),
      );
    },
    find: async (id: string, now: number): Promise<PendingAuthorization | undefined> => {
      const row = await one<PendingRow<boolean>>(this.#pool, 'SELECT * FROM pending_authorizations WHERE id = $1 AND expires_at > $2', [
        id,
        now,
      ]);
      return row === undefined ? undefined : pendingFromRow(row, POSTGRES_COLUMNS);
    },
    update: async (id: string, change: PendingAuthorizationChange): Promise<void> => {
      // Approval only ever goes from false to true, as in SQLite's max(approved, ?).
      await this.#pool.query(
        `UPDATE pending_authorizations SET user_id = coalesce($1, user_id), approved = approved OR $2,
           csrf_token_hash = coalesce($3, csrf_token_hash)
         WHERE id = $4`,
        [change.userId ?? null, POSTGRES_COLUMNS.writeFlag(change.approved === true), change.csrfTokenHash ?? null, id],
      );
    },
    take: async (id: string, now: number): Promise<PendingAuthorization | undefined> => {
      // One DELETE … RETURNING: of concurrent takers, exactly one gets the row.
      const row = await one<PendingRow<boolean>>(this.#pool, 'DELETE FROM pending_authorizations WHERE id = $1 RETURNING *', [id]);
      return row === undefined || row.expires_at <= now ? undefined : pendingFromRow(row, POSTGRES_COLUMNS);
    },
  };

  readonly upstreamStates = {
    create: async (state: UpstreamState): Promise<void> => {
      await this.#pool.query(
        'INSERT INTO upstream_states (state_hash, pending_id, sealed_code_verifier, expires_at) VALUES ($1, $2, $3, $4)',
        [state.stateHash, state.pendingId, sealCodeVerifier(this.#key, state.stateHash, state.codeVerifier), state.expiresAt],
      );
    },
    take: async (stateHash: string, now: number): Promise<UpstreamState | undefined> => {
      const row = await one<UpstreamRow>(this.#pool, 'DELETE FROM upstream_states WHERE state_hash = $1 RETURNING *', [stateHash]);
      return row === undefined || row.expires_at <= now ? undefined : upstreamStateFromRow(this.#key, row);
    },
  };

  readonly codes = {
    create: async (code: AuthorizationCode): Promise<void> => {
      await this.#pool.query(
        `INSERT INTO authorization_codes (${CODE_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        codeInsertValues(code),
      );
    },
    consume: (codeHash: string, now: number): Promise<CodeConsumption> =>
      withTransaction(this.#pool, async (client): Promise<CodeConsumption> => {
        // FOR UPDATE: concurrent presentations of one code queue here, and each sees what the one before did.
        const row = await one<CodeRow>(client, 'SELECT * FROM authorization_codes WHERE code_hash = $1 FOR UPDATE', [codeHash]);
        if (row === undefined) return { status: 'unknown' };
        if (row.used_at !== null) {
          await client.query('UPDATE authorization_codes SET replayed_at = coalesce(replayed_at, $1) WHERE code_hash = $2', [
            now,
            codeHash,
          ]);
          return { status: 'replayed', grantId: row.grant_id };
        }
        if (row.expires_at <= now) return { status: 'unknown' };
        await client.query('UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2', [now, codeHash]);
        return { status: 'valid', code: codeFromRow(row) };
      }),
  };

  readonly grants = {
    createFromCode: (codeHash: string, grant: Grant, tokens: TokenHashes): Promise<boolean> =>
      withTransaction(this.#pool, async (client) => {
        // Claiming the code locks its row: a replay arriving now waits, then sees the grant to revoke.
        const claimed = await client.query(
          `UPDATE authorization_codes SET grant_id = $1
           WHERE code_hash = $2 AND used_at IS NOT NULL AND replayed_at IS NULL AND grant_id IS NULL`,
          [grant.grantId, codeHash],
        );
        if (claimed.rowCount !== 1) return false;
        await client.query(
          `INSERT INTO grants (grant_id, user_id, client_id, resource, scope, created_at, revoked_at)
           VALUES ($1, $2, $3, $4, $5, $6, NULL)`,
          [grant.grantId, grant.userId, grant.clientId, grant.resource, grant.scope, grant.createdAt],
        );
        await insertTokens(client, grant.grantId, tokens);
        return true;
      }),
    findAccessToken: async (tokenHash: string): Promise<AccessTokenView | undefined> => {
      const row = await one<AccessRow>(
        this.#pool,
        `SELECT a.token_hash, a.expires_at, a.revoked_at, ${GRANT_COLUMNS},
           u.forgejo_login, c.revoked_at AS credential_revoked_at
         FROM access_tokens a JOIN grants g ON g.grant_id = a.grant_id
         LEFT JOIN users u ON u.user_id = g.user_id
         LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
         WHERE a.token_hash = $1`,
        [tokenHash],
      );
      return row === undefined ? undefined : accessTokenFromRow(row);
    },
    findRefreshToken: async (tokenHash: string): Promise<RefreshTokenView | undefined> => {
      const row = await one<RefreshRow>(
        this.#pool,
        `SELECT r.token_hash, r.expires_at, r.rotated_at, r.successor_sealed, r.successor_sealed_until,
           s.rotated_at AS successor_rotated_at, ${GRANT_COLUMNS}, c.revoked_at AS credential_revoked_at
         FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id
         LEFT JOIN refresh_tokens s ON s.token_hash = r.successor_hash
         LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
         WHERE r.token_hash = $1`,
        [tokenHash],
      );
      return row === undefined ? undefined : refreshTokenFromRow(row);
    },
    rotateRefreshToken: (
      oldHash: string,
      tokens: TokenHashes,
      successor: { readonly sealed: string; readonly sealedUntil: number } | null,
      at: number,
    ): Promise<'rotated' | 'already_rotated'> =>
      withTransaction(this.#pool, async (client): Promise<'rotated' | 'already_rotated'> => {
        // Compare-and-set on rotated_at: of two replicas exchanging the same token at once, the second
        // waits for the first's commit, re-checks, and finds it rotated.
        const old = await one<{ grant_id: string }>(
          client,
          `UPDATE refresh_tokens SET rotated_at = $1, successor_hash = $2, successor_sealed = $3, successor_sealed_until = $4
           WHERE token_hash = $5 AND rotated_at IS NULL
           RETURNING grant_id`,
          [at, tokens.refreshTokenHash ?? null, successor?.sealed ?? null, successor?.sealedUntil ?? null, oldHash],
        );
        if (old === undefined) return 'already_rotated';
        await insertTokens(client, old.grant_id, tokens);
        return 'rotated';
      }),
    revokeGrant: async (grantId: string, at: number): Promise<void> => {
      await this.#pool.query('UPDATE grants SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL', [at, grantId]);
    },
    revokeAccessToken: async (tokenHash: string, at: number): Promise<void> => {
      await this.#pool.query('UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL', [at, tokenHash]);
    },
  };

  readonly signIns = {
    create: async (signIn: SignIn): Promise<void> => {
      await this.#pool.query('INSERT INTO sign_ins (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)', [
        signIn.tokenHash,
        signIn.userId,
        signIn.createdAt,
        signIn.expiresAt,
      ]);
    },
    findUserId: async (tokenHash: string, now: number): Promise<string | undefined> => {
      const row = await one<{ user_id: string }>(this.#pool, 'SELECT user_id FROM sign_ins WHERE token_hash = $1 AND expires_at > $2', [
        tokenHash,
        now,
      ]);
      return row?.user_id;
    },
    delete: async (tokenHash: string): Promise<void> => {
      await this.#pool.query('DELETE FROM sign_ins WHERE token_hash = $1', [tokenHash]);
    },
  };

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

  /**
   * A transaction whose commit is flushed to disk before it returns, even
   * when the server runs with synchronous_commit = off: Forgejo has already
   * invalidated the previous refresh token, so losing the newest one after a
   * crash would lose the user's credential. A stronger server setting
   * (remote_apply, a synchronous standby) is left as it is.
   */
  #durably<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.#pool, async (client) => {
      await client.query(`SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'`);
      return work(client);
    });
  }

  /**
   * Sets one of the credential's time columns, compare-and-set on its
   * generation, durably: "refresh started" must survive a crash that follows
   * it before Forgejo's answer is stored.
   */
  #markCredential(
    column: 'refresh_started_at' | 'refresh_refused_at',
    userId: string,
    expectedGeneration: number,
    at: number,
  ): Promise<boolean> {
    return this.#durably(async (client) => {
      const result = await client.query(
        `UPDATE forgejo_credentials SET ${column} = $1, updated_at = $1
         WHERE user_id = $2 AND generation = $3 AND revoked_at IS NULL`,
        [at, userId, expectedGeneration],
      );
      return result.rowCount === 1;
    });
  }

  /**
   * Holds the user's row in refresh_leases while `work` runs. A lease is a
   * row, not a session lock: waiting for a Forgejo response must not pin one
   * of the pool's connections per user being refreshed.
   */
  async #withRefreshLease<T>(userId: string, work: () => Promise<T>): Promise<T> {
    const holder = randomUUID();
    await this.#acquireLease(userId, holder);
    try {
      return await work();
    } finally {
      await this.#pool.query('DELETE FROM refresh_leases WHERE user_id = $1 AND holder = $2', [userId, holder]).catch(() => undefined); // It runs out by itself.
    }
  }

  async #acquireLease(userId: string, holder: string): Promise<void> {
    // A holder that died is waited out: its lease expires after refreshLeaseMs.
    const deadline = Date.now() + this.#refreshLeaseMs + 5_000;
    for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
      const taken = await one(
        this.#pool,
        `INSERT INTO refresh_leases (user_id, holder, expires_at) VALUES ($1, $2, ${DB_NOW_MS} + $3)
         ON CONFLICT (user_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
           WHERE refresh_leases.expires_at <= ${DB_NOW_MS}
         RETURNING holder`,
        [userId, holder, this.#refreshLeaseMs],
      );
      if (taken !== undefined) return;
      if (Date.now() + delay > deadline) {
        throw new BrokerError('unavailable', 'another broker replica has been refreshing this Forgejo credential for too long');
      }
      await sleep(delay);
    }
  }
}

/** The first row of a query, if any. */
async function one<R extends pg.QueryResultRow = Record<string, unknown>>(
  db: Queryable,
  sql: string,
  params: Params,
): Promise<R | undefined> {
  const result = await db.query<R>(sql, [...params]);
  return result.rows[0];
}

/** Marks the credential dead, compare-and-set on its generation; true when this call ended it. */
async function endCredential(client: pg.PoolClient, userId: string, expectedGeneration: number, at: number): Promise<boolean> {
  const result = await client.query(
    `UPDATE forgejo_credentials SET revoked_at = $1, generation = generation + 1, updated_at = $1
     WHERE user_id = $2 AND generation = $3 AND revoked_at IS NULL`,
    [at, userId, expectedGeneration],
  );
  return result.rowCount === 1;
}

async function insertTokens(client: pg.PoolClient, grantId: string, tokens: TokenHashes): Promise<void> {
  await client.query('INSERT INTO access_tokens (token_hash, grant_id, expires_at, revoked_at) VALUES ($1, $2, $3, NULL)', [
    tokens.accessTokenHash,
    grantId,
    tokens.accessExpiresAt,
  ]);
  if (tokens.refreshTokenHash !== undefined && tokens.refreshExpiresAt !== undefined) {
    await client.query('INSERT INTO refresh_tokens (token_hash, grant_id, expires_at) VALUES ($1, $2, $3)', [
      tokens.refreshTokenHash,
      grantId,
      tokens.refreshExpiresAt,
    ]);
  }
}

function stringList(value: unknown, column: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new BrokerError('internal', `clients.${column} is not a list of strings`);
  }
  return value;
}
