import type { AuditKind } from '../store/store.js';
import type { AuditLog } from './audit-log.js';

/** A sign-in side event worth an audit record: who, with which client, what happened. */
export interface SecurityEvent {
  readonly kind: Exclude<AuditKind, 'tool_call'>;
  readonly userId: string | null;
  readonly clientId: string | null;
  /** What happened, in a few words (`authorization code replayed; grant revoked`). */
  readonly detail: string;
  /** `error` for failures (a refresh Forgejo refused); `ok` otherwise. */
  readonly failed?: boolean;
}

/** Where the OAuth server and the credential manager report security events; never throws, never waits. */
export type SecurityEvents = (event: SecurityEvent) => void;

export const NO_SECURITY_EVENTS: SecurityEvents = () => undefined;

/** Security events as audit records. */
export function auditedSecurityEvents(audit: AuditLog, now: () => number): SecurityEvents {
  return (event) =>
    audit.record({
      at: now(),
      kind: event.kind,
      userId: event.userId,
      forgejoLogin: null,
      clientId: event.clientId,
      era: null,
      sessionRef: null,
      tool: null,
      outcome: event.failed === true ? 'error' : 'ok',
      errorCode: null,
      detail: event.detail,
      durationMs: null,
      responseBytes: null,
    });
}
