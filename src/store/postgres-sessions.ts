import type pg from 'pg';

import { one } from './postgres-queries.js';
import { LEGACY_SESSION_INSERT_COLUMNS, legacySessionFromRow, legacySessionInsertValues, type LegacySessionRow } from './rows.js';
import type { LegacySessionRepository, StoredLegacySession } from './store.js';

/** Shared mode's legacy-era sessions, which every replica reads. */
export function postgresLegacySessionRepository(pool: pg.Pool): LegacySessionRepository {
  return {
    save: async (session: StoredLegacySession): Promise<void> => {
      await pool.query(
        `INSERT INTO legacy_sessions (${LEGACY_SESSION_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (session_id_hash) DO UPDATE SET user_id = EXCLUDED.user_id, forgejo_login = EXCLUDED.forgejo_login,
           grant_id = EXCLUDED.grant_id, client_id = EXCLUDED.client_id, initialize_params = EXCLUDED.initialize_params,
           protocol_version = EXCLUDED.protocol_version, created_at = EXCLUDED.created_at, last_used_at = EXCLUDED.last_used_at,
           owner_replica = EXCLUDED.owner_replica`,
        legacySessionInsertValues(session),
      );
    },
    find: async (sessionIdHash: string): Promise<StoredLegacySession | undefined> => {
      const row = await one<LegacySessionRow>(pool, 'SELECT * FROM legacy_sessions WHERE session_id_hash = $1', [sessionIdHash]);
      return row === undefined ? undefined : legacySessionFromRow(row);
    },
    claim: async (sessionIdHash: string, from: string, to: string): Promise<boolean> => {
      // One statement: of concurrent claims from the same owner, the first to update the row wins; the others,
      // re-evaluating the condition on the committed row, find another owner and change nothing.
      const result = await pool.query('UPDATE legacy_sessions SET owner_replica = $1 WHERE session_id_hash = $2 AND owner_replica = $3', [
        to,
        sessionIdHash,
        from,
      ]);
      return (result.rowCount ?? 0) > 0;
    },
    touch: async (sessionIdHash: string, at: number): Promise<void> => {
      // GREATEST, evaluated on the row as it is once a concurrent touch committed: of two replicas, the later time stays.
      await pool.query('UPDATE legacy_sessions SET last_used_at = GREATEST(last_used_at, $1) WHERE session_id_hash = $2', [
        at,
        sessionIdHash,
      ]);
    },
    delete: async (sessionIdHash: string): Promise<void> => {
      await pool.query('DELETE FROM legacy_sessions WHERE session_id_hash = $1', [sessionIdHash]);
    },
    deleteOfUser: async (userId: string): Promise<number> =>
      (await pool.query('DELETE FROM legacy_sessions WHERE user_id = $1', [userId])).rowCount ?? 0,
    deleteUnusedSince: async (before: number): Promise<number> =>
      (await pool.query('DELETE FROM legacy_sessions WHERE last_used_at < $1', [before])).rowCount ?? 0,
  };
}
