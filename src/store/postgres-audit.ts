import type pg from 'pg';

import { AUDIT_COLUMN_COUNT, AUDIT_INSERT_COLUMNS, auditFromRow, auditInsertValues, auditWhere, type AuditRow } from './audit-rows.js';
import type { AuditQuery, AuditRecord, AuditRepository, StoredAuditRecord } from './store.js';

/** The audit log's records; a batch is one multi-row INSERT. */
export function postgresAuditRepository(pool: pg.Pool): AuditRepository {
  return {
    append: async (records: readonly AuditRecord[]): Promise<void> => {
      if (records.length === 0) return;
      const rows = records.map(
        (_, r) => `(${Array.from({ length: AUDIT_COLUMN_COUNT }, (__, c) => `$${r * AUDIT_COLUMN_COUNT + c + 1}`).join(', ')})`,
      );
      await pool.query(`INSERT INTO audit_records (${AUDIT_INSERT_COLUMNS}) VALUES ${rows.join(', ')}`, records.flatMap(auditInsertValues));
    },
    list: async (query: AuditQuery): Promise<StoredAuditRecord[]> => {
      const where = auditWhere(query, (n) => `$${n}`);
      const result = await pool.query<AuditRow>(
        `SELECT * FROM audit_records ${where.sql} ORDER BY at DESC, id DESC LIMIT $${where.params.length + 1}`,
        [...where.params, query.limit],
      );
      return result.rows.map(auditFromRow);
    },
    deleteBefore: async (before: number): Promise<number> =>
      (await pool.query('DELETE FROM audit_records WHERE at < $1', [before])).rowCount ?? 0,
  };
}
