import type pg from 'pg';

import { BrokerError } from '../errors/errors.js';
import type { SqlExecutor } from './admin-queries.js';
import { withTransaction } from './pg-pool.js';
import type { DialectColumns } from './rows.js';

/** What the PostgreSQL repositories share: the connection pool, and these helpers over it. */
export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;
export type Params = readonly unknown[];

/** BOOLEAN is a boolean both ways; JSONB arrives parsed, so each list is checked to be strings. */
export const POSTGRES_COLUMNS: DialectColumns<boolean, unknown> = {
  readFlag: (value) => value,
  writeFlag: (value) => value,
  readStringList: stringList,
};

/** The database's clock in milliseconds: leases compare against it, never against a replica's clock. */
export const DB_NOW_MS = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`;

/** The first row of a query, if any. */
export async function one<R extends pg.QueryResultRow = Record<string, unknown>>(
  db: Queryable,
  sql: string,
  params: Params,
): Promise<R | undefined> {
  const result = await db.query<R>(sql, [...params]);
  return result.rows[0];
}

/**
 * A transaction whose commit is flushed to disk before it returns, even
 * when the server runs with synchronous_commit = off: Forgejo has already
 * invalidated the previous refresh token, so losing the newest one after a
 * crash would lose the user's credential. A stronger server setting
 * (remote_apply, a synchronous standby) is left as it is.
 */
export function durably<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withTransaction(pool, async (client) => {
    await client.query(`SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'`);
    return work(client);
  });
}

function stringList(value: unknown, column: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new BrokerError('internal', `clients.${column} is not a list of strings`);
  }
  return value;
}

/** The admin queries' executor over the pool: `?` placeholders become `$1`, `$2`, … */
export function postgresExecutor(pool: pg.Pool): SqlExecutor {
  const numbered = (sql: string): string => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    all: async <R>(statement: { sql: string; params: readonly unknown[] }): Promise<R[]> =>
      (await pool.query(numbered(statement.sql), [...statement.params])).rows as R[],
    transaction: (statements) =>
      withTransaction(pool, async (client) => {
        const results: { changes: number; rows: unknown[] }[] = [];
        for (const statement of statements) {
          const result = await client.query(numbered(statement.sql), [...statement.params]);
          results.push({ changes: result.rowCount ?? 0, rows: result.rows });
        }
        return results;
      }),
    readStringList: POSTGRES_COLUMNS.readStringList,
  };
}
