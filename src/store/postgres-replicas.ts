import type pg from 'pg';

import { replicaFromRow, type ReplicaRow } from './rows.js';
import type { ReplicaRepository, StoredReplica } from './store.js';

/** The replicas' heartbeats, which every replica reads to know the live ones. */
export function postgresReplicaRepository(pool: pg.Pool): ReplicaRepository {
  return {
    heartbeat: async (replica, now): Promise<void> => {
      await pool.query(
        `INSERT INTO replicas (replica_id, url, started_at, heartbeat_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (replica_id) DO UPDATE SET url = EXCLUDED.url, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at`,
        [replica.id, replica.url, replica.startedAt, now],
      );
    },
    list: async (aliveSince: number): Promise<StoredReplica[]> =>
      (await pool.query<ReplicaRow>('SELECT * FROM replicas WHERE heartbeat_at >= $1 ORDER BY replica_id', [aliveSince])).rows.map(
        replicaFromRow,
      ),
    remove: async (id: string): Promise<void> => {
      await pool.query('DELETE FROM replicas WHERE replica_id = $1', [id]);
    },
    removeGoneBefore: async (before: number): Promise<number> =>
      (await pool.query('DELETE FROM replicas WHERE heartbeat_at < $1', [before])).rowCount ?? 0,
  };
}
