import { replicaFromRow, type ReplicaRow } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import type { ReplicaRepository, StoredReplica } from './store.js';

/** The replicas' heartbeats (with SQLite there is one replica: the registry runs all the same). */
export function sqliteReplicaRepository(connection: SqliteConnection): ReplicaRepository {
  return {
    heartbeat: (replica, now): Promise<void> =>
      connection.run(() => {
        connection
          .stmt(
            `INSERT INTO replicas (replica_id, url, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (replica_id) DO UPDATE SET url = excluded.url, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
          )
          .run(replica.id, replica.url, replica.startedAt, now);
      }),
    list: (aliveSince: number): Promise<StoredReplica[]> =>
      connection.run(() =>
        (connection.stmt('SELECT * FROM replicas WHERE heartbeat_at >= ? ORDER BY replica_id').all(aliveSince) as ReplicaRow[]).map(
          replicaFromRow,
        ),
      ),
    remove: (id: string): Promise<void> =>
      connection.run(() => {
        connection.stmt('DELETE FROM replicas WHERE replica_id = ?').run(id);
      }),
    removeGoneBefore: (before: number): Promise<number> =>
      connection.run(() => connection.stmt('DELETE FROM replicas WHERE heartbeat_at < ?').run(before).changes),
  };
}
