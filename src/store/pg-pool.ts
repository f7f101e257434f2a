import pg from 'pg';

/** What the broker sets on every PostgreSQL connection it opens. */
export interface PgPoolOptions {
  /** `postgres://` or `postgresql://` URL; libpq parameters (sslmode, options, …) as node-postgres reads them. */
  readonly connectionString: string;
  /** Connections per broker process. Default 10. */
  readonly maxConnections?: number;
  /** Giving up on reaching the server (per connection attempt). Default 10 s. */
  readonly connectTimeoutMs?: number;
  /**
   * Errors of idle connections (the server restarted, a proxy cut the
   * line). The pool drops such a connection and opens another on demand;
   * without a listener node-postgres would crash the process.
   */
  readonly onIdleError?: (error: Error) => void;
}

/**
 * BIGINT columns (millisecond times, generations) come back as numbers, not
 * strings. Set on this pool only, never globally: other code in the process
 * may use node-postgres with its defaults.
 */
function brokerTypes(): pg.TypeOverrides {
  const types = new pg.TypeOverrides();
  types.setTypeParser(pg.types.builtins.INT8, parseSafeInteger);
  return types;
}

function parseSafeInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`BIGINT ${text} does not fit a JavaScript number`);
  return value;
}

export function createPool(options: PgPoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: 'forgejo-mcp-broker',
    types: brokerTypes(),
  });
  const onIdleError = options.onIdleError ?? ((): void => undefined);
  pool.on('error', onIdleError);
  return pool;
}

/**
 * Runs `work` in one transaction on one connection: COMMIT when it resolves,
 * ROLLBACK when it rejects. After a failure the connection is closed rather
 * than returned, so nothing half-finished (an aborted transaction, a session
 * lock) can reach the next user of the pool.
 */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    client.release();
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(true);
    throw error;
  }
}
