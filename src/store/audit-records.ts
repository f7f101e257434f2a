/** The audit log's records as the store keeps them (store.ts re-exports these). */

/** What an audit record is about: a tool call, or a security event of the sign-in side. */
export type AuditKind = 'tool_call' | 'sign_in' | 'consent' | 'revocation' | 'refresh_failure';

/** `ok`: done; `error`: a JSON-RPC error or a tool's error result; `refused`: the broker's tool policy said no. */
export type AuditOutcome = 'ok' | 'error' | 'refused';

/** One audit record, as written. Fields that do not apply to its kind are null. */
export interface AuditRecord {
  readonly at: number;
  readonly kind: AuditKind;
  readonly userId: string | null;
  readonly forgejoLogin: string | null;
  readonly clientId: string | null;
  readonly clientName: string | null;
  readonly era: 'legacy' | 'modern' | null;
  /** Legacy era: the first 16 hex digits of the SHA-256 of the session id (a reference, never the id itself). */
  readonly sessionRef: string | null;
  readonly tool: string | null;
  readonly outcome: AuditOutcome;
  /** The JSON-RPC error code, for an error that was one. */
  readonly errorCode: number | null;
  /** The error's message, the refusing policy, or what a security event was about. */
  readonly detail: string | null;
  readonly durationMs: number | null;
  readonly requestBytes: number | null;
  readonly responseBytes: number | null;
  /** SHA-256 (hex) of the arguments' canonical JSON. */
  readonly argumentsSha256: string | null;
  /** The arguments as JSON, secrets redacted; only with BROKER_AUDIT_ARGUMENTS=true. */
  readonly arguments: string | null;
}

export interface StoredAuditRecord extends AuditRecord {
  readonly id: number;
}

export interface AuditQuery {
  /** Only this Forgejo login's records. */
  readonly forgejoLogin?: string;
  /** Only tools matching this glob (`*`, `?`). */
  readonly toolGlob?: string;
  /** Only records at or after this time. */
  readonly since?: number;
  /** At most this many, newest first. */
  readonly limit: number;
}

export interface AuditRepository {
  /** Appends records in one transaction. */
  append(records: readonly AuditRecord[]): Promise<void>;
  /** Newest first. */
  list(query: AuditQuery): Promise<StoredAuditRecord[]>;
  /** Forgets records older than `before` (the retention); returns how many. */
  deleteBefore(before: number): Promise<number>;
}
