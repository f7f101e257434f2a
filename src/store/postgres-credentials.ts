import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import type pg from 'pg';

import { BrokerError } from '../errors/errors.js';
import { KeyedLock } from './keyed-lock.js';
import { DB_NOW_MS, durably, one } from './postgres-queries.js';
import { credentialFromRow, userFromRow, type CredentialRow, type UserRow } from './rows.js';
import { sealForgejoTokens } from './sealed.js';
import type { ForgejoCredential, ForgejoCredentialRepository, ForgejoTokens, User, UserRepository } from './store.js';

/** Users and their Forgejo credentials, with the refresh lease that serialises refreshes across replicas. */
export function postgresCredentialRepositories(
  pool: pg.Pool,
  key: Buffer,
  refreshLeaseMs: number,
): { users: UserRepository; credentials: ForgejoCredentialRepository } {
  const refreshLock = new KeyedLock();

  const users: UserRepository = {
    find: async (userId: string): Promise<User | undefined> => {
      const row = await one<UserRow>(pool, 'SELECT user_id, forgejo_login FROM users WHERE user_id = $1', [userId]);
      return row === undefined ? undefined : userFromRow(row);
    },
  };

  const credentials: ForgejoCredentialRepository = {
    find: async (userId: string): Promise<ForgejoCredential | undefined> => {
      const row = await one<CredentialRow>(pool, 'SELECT * FROM forgejo_credentials WHERE user_id = $1', [userId]);
      return row === undefined ? undefined : credentialFromRow(key, row);
    },
    replaceAfterLogin: async (user: User, tokens: ForgejoTokens, at: number): Promise<ForgejoCredential> => {
      const sealed = sealForgejoTokens(key, user.userId, tokens);
      const row = await durably(pool, async (client) => {
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
      return credentialFromRow(key, row);
    },
    storeRefreshed: async (
      userId: string,
      expectedGeneration: number,
      tokens: ForgejoTokens,
      at: number,
    ): Promise<ForgejoCredential | undefined> => {
      const sealed = sealForgejoTokens(key, userId, tokens);
      // Compare-and-set: a concurrent writer of the row makes PostgreSQL re-check the generation after it commits.
      const row = await durably(pool, (client) =>
        one<CredentialRow>(
          client,
          `UPDATE forgejo_credentials SET sealed_tokens = $1, generation = generation + 1, refresh_started_at = NULL,
             refresh_refused_at = NULL, updated_at = $2
           WHERE user_id = $3 AND generation = $4 AND revoked_at IS NULL
           RETURNING *`,
          [sealed, at, userId, expectedGeneration],
        ),
      );
      return row === undefined ? undefined : credentialFromRow(key, row);
    },
    markRefreshStarted: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      markCredential(pool, 'refresh_started_at', userId, expectedGeneration, at),
    markRefreshRefused: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      markCredential(pool, 'refresh_refused_at', userId, expectedGeneration, at),
    endCredentialKeepingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      durably(pool, (client) => endCredential(client, userId, expectedGeneration, at)),
    endCredentialRevokingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      durably(pool, async (client) => {
        if (!(await endCredential(client, userId, expectedGeneration, at))) return false;
        await client.query('UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL', [at, userId]);
        return true;
      }),
    withRefreshLock: <T>(userId: string, work: () => Promise<T>): Promise<T> =>
      // In process first, so that one replica never competes with itself for the lease.
      refreshLock.run(userId, () => withRefreshLease(pool, refreshLeaseMs, userId, work)),
  };

  return { users, credentials };
}

/**
 * Sets one of the credential's time columns, compare-and-set on its
 * generation, durably: "refresh started" must survive a crash that follows
 * it before Forgejo's answer is stored.
 */
function markCredential(
  pool: pg.Pool,
  column: 'refresh_started_at' | 'refresh_refused_at',
  userId: string,
  expectedGeneration: number,
  at: number,
): Promise<boolean> {
  return durably(pool, async (client) => {
    const result = await client.query(
      `UPDATE forgejo_credentials SET ${column} = $1, updated_at = $1
       WHERE user_id = $2 AND generation = $3 AND revoked_at IS NULL`,
      [at, userId, expectedGeneration],
    );
    return result.rowCount === 1;
  });
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

/**
 * Holds the user's row in refresh_leases while `work` runs. A lease is a
 * row, not a session lock: waiting for a Forgejo response must not pin one
 * of the pool's connections per user being refreshed.
 */
async function withRefreshLease<T>(pool: pg.Pool, refreshLeaseMs: number, userId: string, work: () => Promise<T>): Promise<T> {
  const holder = randomUUID();
  await acquireLease(pool, refreshLeaseMs, userId, holder);
  try {
    return await work();
  } finally {
    await pool.query('DELETE FROM refresh_leases WHERE user_id = $1 AND holder = $2', [userId, holder]).catch(() => undefined); // It runs out by itself.
  }
}

async function acquireLease(pool: pg.Pool, refreshLeaseMs: number, userId: string, holder: string): Promise<void> {
  // A holder that died is waited out: its lease expires after refreshLeaseMs.
  const deadline = Date.now() + refreshLeaseMs + 5_000;
  for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
    const taken = await one(
      pool,
      `INSERT INTO refresh_leases (user_id, holder, expires_at) VALUES ($1, $2, ${DB_NOW_MS} + $3)
       ON CONFLICT (user_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE refresh_leases.expires_at <= ${DB_NOW_MS}
       RETURNING holder`,
      [userId, holder, refreshLeaseMs],
    );
    if (taken !== undefined) return;
    if (Date.now() + delay > deadline) {
      throw new BrokerError('unavailable', 'another broker replica has been refreshing this Forgejo credential for too long');
    }
    await sleep(delay);
  }
}
