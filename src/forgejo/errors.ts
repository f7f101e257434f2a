/**
 * Why talking to Forgejo failed, in Forgejo's terms; each protocol layer maps
 * the reason to its own error once (`toOAuthError` for the OAuth endpoints,
 * `toBrokerError` in `src/http/errors.ts` for `/mcp`).
 *
 * - `unreachable`: no answer (network, timeout).
 * - `bad_response`: an answer the broker cannot use (a 5xx, an OAuth error
 *   that is not a refusal of the grant, an unexpected body or metadata).
 * - `access_denied`: the user refused the authorization at Forgejo.
 * - `bad_callback`: Forgejo's redirect back carried another error, or did not
 *   validate (state, issuer).
 * - `grant_refused`: Forgejo refused the code or the refresh token for good.
 */
export type ForgejoErrorReason = 'unreachable' | 'bad_response' | 'access_denied' | 'bad_callback' | 'grant_refused';

export class ForgejoError extends Error {
  readonly reason: ForgejoErrorReason;

  constructor(reason: ForgejoErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ForgejoError';
    this.reason = reason;
  }
}

export function isForgejoError(value: unknown, reason?: ForgejoErrorReason): value is ForgejoError {
  return value instanceof ForgejoError && (reason === undefined || value.reason === reason);
}
