import { redirectUriProblem } from './redirect-uri.js';

/**
 * The rules both ways of arriving as a client share: RFC 7591 registration
 * bodies and Client ID Metadata Documents. Liberal in what is accepted,
 * strict in what is granted (RFC 7591 §3.2.1 lets a server register a
 * subset): grant types and auth methods the broker does not have are left
 * out, and a client is refused only when it cannot sign in at all.
 */

/** How a client may authenticate at the token endpoint. */
export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

/**
 * What every client is granted, whatever else it listed (jwt-bearer,
 * device_code, client_credentials...). refresh_token even when not asked
 * for: a client that does not use it loses nothing, and one that lists only
 * authorization_code but refreshes anyway (Goose) keeps working after the
 * access token's hour.
 */
export const GRANTED_GRANT_TYPES: readonly string[] = ['authorization_code', 'refresh_token'];

export const METADATA_LIMITS = {
  redirectUris: 10,
  redirectUriLength: 2000,
  clientName: 200,
  clientUri: 2000,
} as const;

/** Why the grant_types cannot sign anyone in, or undefined (RFC 7591 §2: absent means authorization_code). */
export function grantTypesProblem(value: unknown): string | undefined {
  const requested = value ?? ['authorization_code'];
  if (!isStringArray(requested)) return 'grant_types must be an array of strings';
  if (!requested.includes('authorization_code')) return 'grant_types must include authorization_code';
  return undefined;
}

/** Why the response_types cannot be served, or undefined; other types listed beside `code` are ignored. */
export function responseTypesProblem(value: unknown): string | undefined {
  const requested = value ?? ['code'];
  if (!isStringArray(requested)) return 'response_types must be an array of strings';
  if (!requested.includes('code')) return 'response_types must include code';
  return undefined;
}

/** Why one redirect URI may not be registered, or undefined. */
export function boundedRedirectUriProblem(uri: string): string | undefined {
  if (uri.length > METADATA_LIMITS.redirectUriLength) return `longer than ${METADATA_LIMITS.redirectUriLength} characters`;
  return redirectUriProblem(uri);
}

export function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((entry) => typeof entry === 'string');
}

/** A trimmed display string cut to `maxLength`, or null. */
export function displayString(value: unknown, maxLength: number): string | null {
  if (typeof value !== 'string' || value.trim() === '') return null;
  return value.trim().slice(0, maxLength);
}
