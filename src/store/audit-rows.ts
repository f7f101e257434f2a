import type { AuditKind, AuditOutcome, AuditQuery, AuditRecord, StoredAuditRecord } from './store.js';

/** The audit table's columns in insert order, shared by both backends. */
export const AUDIT_INSERT_COLUMNS =
  'at, kind, user_id, forgejo_login, client_id, client_name, era, session_ref, tool, outcome, error_code, detail, duration_ms, request_bytes, response_bytes, arguments_sha256, arguments';

export const AUDIT_COLUMN_COUNT = 17;

export interface AuditRow {
  readonly id: number | string;
  readonly at: number | string;
  readonly kind: string;
  readonly user_id: string | null;
  readonly forgejo_login: string | null;
  readonly client_id: string | null;
  readonly client_name: string | null;
  readonly era: string | null;
  readonly session_ref: string | null;
  readonly tool: string | null;
  readonly outcome: string;
  readonly error_code: number | null;
  readonly detail: string | null;
  readonly duration_ms: number | string | null;
  readonly request_bytes: number | string | null;
  readonly response_bytes: number | string | null;
  readonly arguments_sha256: string | null;
  readonly arguments: string | null;
}

export function auditInsertValues(record: AuditRecord): unknown[] {
  return [
    record.at,
    record.kind,
    record.userId,
    record.forgejoLogin,
    record.clientId,
    record.clientName,
    record.era,
    record.sessionRef,
    record.tool,
    record.outcome,
    record.errorCode,
    record.detail,
    record.durationMs,
    record.requestBytes,
    record.responseBytes,
    record.argumentsSha256,
    record.arguments,
  ];
}

/** BIGINT arrives from pg as a string: numbers are numbers again here. */
function numberOrNull(value: number | string | null): number | null {
  return value === null ? null : Number(value);
}

export function auditFromRow(row: AuditRow): StoredAuditRecord {
  return {
    id: Number(row.id),
    at: Number(row.at),
    kind: row.kind as AuditKind,
    userId: row.user_id,
    forgejoLogin: row.forgejo_login,
    clientId: row.client_id,
    clientName: row.client_name,
    era: row.era as StoredAuditRecord['era'],
    sessionRef: row.session_ref,
    tool: row.tool,
    outcome: row.outcome as AuditOutcome,
    errorCode: row.error_code,
    detail: row.detail,
    durationMs: numberOrNull(row.duration_ms),
    requestBytes: numberOrNull(row.request_bytes),
    responseBytes: numberOrNull(row.response_bytes),
    argumentsSha256: row.arguments_sha256,
    arguments: row.arguments,
  };
}

/**
 * The WHERE clause of a query, with placeholders made by `placeholder(n)`
 * (`?` or `$n`). A tool glob becomes a LIKE pattern: `*` is `%`, `?` is `_`,
 * and the pattern's own `%`, `_` and `\` are escaped.
 */
export function auditWhere(query: AuditQuery, placeholder: (n: number) => string): { sql: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  const add = (clause: (p: string) => string, value: unknown): void => {
    params.push(value);
    clauses.push(clause(placeholder(params.length)));
  };
  if (query.forgejoLogin !== undefined) add((p) => `forgejo_login = ${p}`, query.forgejoLogin);
  if (query.toolGlob !== undefined) add((p) => `tool LIKE ${p} ESCAPE '\\'`, globToLike(query.toolGlob));
  if (query.since !== undefined) add((p) => `at >= ${p}`, query.since);
  return { sql: clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`, params };
}

function globToLike(glob: string): string {
  return glob
    .replace(/[\\%_]/g, (c) => `\\${c}`)
    .replace(/\*/g, '%')
    .replace(/\?/g, '_');
}
