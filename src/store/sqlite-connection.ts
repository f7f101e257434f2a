import type Database from 'better-sqlite3';

import type { SqlExecutor } from './admin-queries.js';
import type { DialectColumns } from './rows.js';

/** SQLite has no boolean or list type: flags are INTEGER 0/1, lists JSON in TEXT. */
export const SQLITE_COLUMNS: DialectColumns<number, string> = {
  readFlag: (value) => value === 1,
  writeFlag: (value) => (value ? 1 : 0),
  readStringList: (text) => JSON.parse(text) as string[],
};

/** The one database connection the SQLite repositories share, with its statement cache. */
export class SqliteConnection {
  readonly db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(db: Database.Database) {
    this.db = db;
  }

  /** Runs synchronous SQLite work as a promise, so callers see one async shape for every backend. */
  run<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Statements are compiled once per SQL text; the authentication path runs one per request. */
  stmt(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}

/** The admin queries' executor over the one connection; a transaction runs synchronously, so nothing interleaves. */
export function sqliteExecutor(connection: SqliteConnection): SqlExecutor {
  return {
    all: <R>(statement: { sql: string; params: readonly unknown[] }): Promise<R[]> =>
      connection.run(() => connection.stmt(statement.sql).all(...statement.params) as R[]),
    transaction: (statements) =>
      connection.run(() =>
        connection.db.transaction(() =>
          statements.map((statement) => {
            const prepared = connection.stmt(statement.sql);
            if (prepared.reader) {
              const rows = prepared.all(...statement.params);
              return { changes: rows.length, rows };
            }
            return { changes: prepared.run(...statement.params).changes, rows: [] };
          }),
        )(),
      ),
    readStringList: (value, column) => {
      if (typeof value !== 'string') throw new Error(`clients.${column} is not JSON text`);
      return SQLITE_COLUMNS.readStringList(value, column);
    },
  };
}
