import { LEGACY_SESSION_INSERT_COLUMNS, legacySessionFromRow, legacySessionInsertValues, type LegacySessionRow } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import type { LegacySessionRepository, StoredLegacySession } from './store.js';

/** Shared mode's legacy-era sessions. */
export function sqliteLegacySessionRepository(connection: SqliteConnection): LegacySessionRepository {
  return {
    save: (session: StoredLegacySession): Promise<void> =>
      connection.run(() => {
        connection
          .stmt(
            `INSERT INTO legacy_sessions (${LEGACY_SESSION_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (session_id_hash) DO UPDATE SET user_id = excluded.user_id, forgejo_login = excluded.forgejo_login,
               grant_id = excluded.grant_id, client_id = excluded.client_id, initialize_params = excluded.initialize_params,
               protocol_version = excluded.protocol_version, created_at = excluded.created_at, last_used_at = excluded.last_used_at,
               owner_replica = excluded.owner_replica`,
          )
          .run(...legacySessionInsertValues(session));
      }),
    find: (sessionIdHash: string): Promise<StoredLegacySession | undefined> =>
      connection.run(() => {
        const row = connection.stmt('SELECT * FROM legacy_sessions WHERE session_id_hash = ?').get(sessionIdHash) as
          LegacySessionRow | undefined;
        return row === undefined ? undefined : legacySessionFromRow(row);
      }),
    claim: (sessionIdHash: string, from: string, to: string): Promise<boolean> =>
      connection.run(
        () =>
          connection
            .stmt('UPDATE legacy_sessions SET owner_replica = ? WHERE session_id_hash = ? AND owner_replica = ?')
            .run(to, sessionIdHash, from).changes > 0,
      ),
    touch: (sessionIdHash: string, at: number): Promise<void> =>
      connection.run(() => {
        connection.stmt('UPDATE legacy_sessions SET last_used_at = max(last_used_at, ?) WHERE session_id_hash = ?').run(at, sessionIdHash);
      }),
    delete: (sessionIdHash: string): Promise<void> =>
      connection.run(() => {
        connection.stmt('DELETE FROM legacy_sessions WHERE session_id_hash = ?').run(sessionIdHash);
      }),
    deleteOfUser: (userId: string): Promise<number> =>
      connection.run(() => connection.stmt('DELETE FROM legacy_sessions WHERE user_id = ?').run(userId).changes),
    deleteUnusedSince: (before: number): Promise<number> =>
      connection.run(() => connection.stmt('DELETE FROM legacy_sessions WHERE last_used_at < ?').run(before).changes),
  };
}
