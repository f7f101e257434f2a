import { AUDIT_COLUMN_COUNT, AUDIT_INSERT_COLUMNS, auditFromRow, auditInsertValues, auditWhere, type AuditRow } from './audit-rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import type { AuditQuery, AuditRecord, AuditRepository, StoredAuditRecord } from './store.js';

/** The audit log's records. */
export function sqliteAuditRepository(connection: SqliteConnection): AuditRepository {
  const insert = `INSERT INTO audit_records (${AUDIT_INSERT_COLUMNS}) VALUES (${Array(AUDIT_COLUMN_COUNT).fill('?').join(', ')})`;
  return {
    append: (records: readonly AuditRecord[]): Promise<void> =>
      connection.run(() => {
        const statement = connection.stmt(insert);
        // One transaction per batch, committed without its own fsync (WAL with synchronous=NORMAL): the
        // records survive the process dying, and reach the disk with the next durable commit or checkpoint.
        // better-sqlite3 blocks the event loop while it commits, and credentials need FULL; audit records do not.
        connection.db.pragma('synchronous = NORMAL');
        try {
          connection.db.transaction(() => {
            for (const record of records) statement.run(...auditInsertValues(record));
          })();
        } finally {
          connection.db.pragma('synchronous = FULL');
        }
      }),
    list: (query: AuditQuery): Promise<StoredAuditRecord[]> =>
      connection.run(() => {
        const where = auditWhere(query, () => '?');
        const rows = connection.db
          .prepare(`SELECT * FROM audit_records ${where.sql} ORDER BY at DESC, id DESC LIMIT ?`)
          .all(...where.params, query.limit) as AuditRow[];
        return rows.map(auditFromRow);
      }),
    deleteBefore: (before: number): Promise<number> =>
      connection.run(() => connection.stmt('DELETE FROM audit_records WHERE at < ?').run(before).changes),
  };
}
