import type { SqlExecutor } from './admin-queries.js';

/**
 * The client assertions already used (RFC 7523 §3: a `jti` once), kept in the
 * store so that every replica refuses a second use, until the assertion
 * expires. Keys are hashes; expired ones go with the store's purge.
 */
export interface AssertionReplayRepository {
  /** Records `keyHash` until `validUntil`; false when it is recorded and not expired: the assertion was used. */
  use(keyHash: string, validUntil: number, now: number): Promise<boolean>;
}

/** One statement for both stores: an insert, or the takeover of an expired row; no change means a live one exists. */
export function assertionReplayRepository(executor: SqlExecutor): AssertionReplayRepository {
  return {
    use: async (keyHash, validUntil, now) => {
      const [result] = await executor.transaction([
        {
          sql: `INSERT INTO used_assertions (key_hash, valid_until) VALUES (?, ?)
                ON CONFLICT (key_hash) DO UPDATE SET valid_until = excluded.valid_until WHERE used_assertions.valid_until <= ?`,
          params: [keyHash, validUntil, now],
        },
      ]);
      return (result?.changes ?? 0) === 1;
    },
  };
}
