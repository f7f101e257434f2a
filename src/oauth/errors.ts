import { isBrokerError } from '../errors/errors.js';
import { isForgejoError } from '../forgejo/errors.js';

/** The error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 7009 §2.2.1 and RFC 8707 §2. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'unsupported_token_type'
  | 'access_denied'
  | 'invalid_target'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'server_error'
  | 'temporarily_unavailable';

/** An OAuth protocol error as a value; endpoints throw it and one function renders it. */
export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  /** Overrides the status derived from the code (429 for rate limits). */
  readonly status: number | undefined;
  /** Seconds, for `Retry-After`. */
  readonly retryAfter: number | undefined;

  constructor(code: OAuthErrorCode, description: string, options?: { status?: number; retryAfter?: number; cause?: unknown }) {
    super(description, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OAuthError';
    this.code = code;
    this.status = options?.status;
    this.retryAfter = options?.retryAfter;
  }
}

export interface OAuthErrorResponse {
  readonly status: number;
  readonly body: { readonly error: OAuthErrorCode; readonly error_description: string };
  readonly headers: Readonly<Record<string, string>>;
  /** True when the error is the broker's fault and worth logging. */
  readonly internal: boolean;
}

/**
 * The one conversion from any failure to an RFC 6749 error response. Known
 * broker errors map to their OAuth meaning; anything else is a `server_error`
 * whose details stay in the log, never in the response.
 */
export function toOAuthErrorResponse(error: unknown): OAuthErrorResponse {
  const oauthError = toOAuthError(error);
  const headers: Record<string, string> = {};
  if (oauthError.retryAfter !== undefined) headers['retry-after'] = String(oauthError.retryAfter);
  return {
    status: oauthError.status ?? statusOf(oauthError.code),
    body: { error: oauthError.code, error_description: oauthError.message },
    headers,
    internal: oauthError.code === 'server_error',
  };
}

/** The one mapping of broker and Forgejo failures to OAuth errors. */
export function toOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  if (isForgejoError(error)) {
    switch (error.reason) {
      case 'access_denied':
        return new OAuthError('access_denied', 'access was refused at the forge', { cause: error });
      case 'bad_callback':
      case 'grant_refused':
        return new OAuthError('server_error', 'the forge sign-in failed', { cause: error });
      case 'unreachable':
      case 'bad_response':
        return new OAuthError('temporarily_unavailable', 'the forge is unavailable; try again shortly', { cause: error });
    }
  }
  if (isBrokerError(error, 'unavailable')) {
    return new OAuthError('temporarily_unavailable', 'the forge is unavailable; try again shortly', { cause: error });
  }
  if (isBrokerError(error, 'credential_revoked')) {
    return new OAuthError('invalid_grant', 'the Forgejo sign-in has ended; sign in again', { cause: error });
  }
  return new OAuthError('server_error', 'internal error', { cause: error });
}

function statusOf(code: OAuthErrorCode): number {
  switch (code) {
    case 'invalid_client':
      return 401;
    case 'server_error':
      return 500;
    case 'temporarily_unavailable':
      return 503;
    default:
      return 400;
  }
}
