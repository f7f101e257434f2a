/**
 * Errors are values with a kind. Each protocol layer (HTTP, OAuth, JSON-RPC)
 * maps the kind to its own error shape in one place.
 */
export type BrokerErrorKind =
  | 'bad_request'
  | 'parse_error'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'capacity'
  | 'payload_too_large'
  | 'unavailable'
  | 'child_failed'
  | 'credential_revoked'
  | 'internal';

export class BrokerError extends Error {
  readonly kind: BrokerErrorKind;

  constructor(kind: BrokerErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BrokerError';
    this.kind = kind;
  }
}

export function isBrokerError(value: unknown, kind?: BrokerErrorKind): value is BrokerError {
  return value instanceof BrokerError && (kind === undefined || value.kind === kind);
}

/** The message of any thrown value, for logs. */
export function errorMessage(value: unknown): string {
  return value instanceof Error ? value.message : String(value);
}
