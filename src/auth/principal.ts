/**
 * The authentication seam between the HTTP edge and the session layer.
 *
 * An Authenticator turns a bearer token into a Principal; the session layer
 * only ever sees Principals, and asks ForgejoCredentials for the user's
 * current Forgejo token. The OAuth server provides the production
 * implementations of both; tests inject their own.
 */

/** Who is calling /mcp, as established by a valid broker access token. */
export interface Principal {
  /** Stable broker user id (the Forgejo user's numeric id, as a string). */
  readonly userId: string;
  /** The Forgejo login name, for logs and the consent page. */
  readonly forgejoLogin: string;
  /** The OAuth client the token was issued to. */
  readonly clientId: string;
  /** SHA-256 of the broker bearer token, hex; for logs and revocation, never the token itself. */
  readonly tokenHash: string;
  /**
   * The OAuth grant the token was issued under; it stays the same when the
   * client refreshes its token. An MCP session is bound to it, so a refreshed
   * token keeps its sessions and any other bearer is refused.
   */
  readonly grantId: string;
}

/** A Forgejo access token as handed to a child. */
export interface ForgejoAccess {
  readonly accessToken: string;
  /** Expiry, milliseconds since the epoch. */
  readonly expiresAt: number;
}

/** Why a bearer token was refused; maps to RFC 6750 error codes. */
export interface AuthFailure {
  readonly error: 'invalid_token' | 'invalid_request';
  readonly description: string;
}

export interface Authenticator {
  /** Resolves the bearer token, or says why it is not acceptable. Never throws for a bad token. */
  authenticate(bearerToken: string): Promise<Principal | AuthFailure>;
  /** Path of the protected-resource metadata, for the `WWW-Authenticate` challenge. */
  readonly resourceMetadataUrl: string;
}

export function isAuthFailure(value: Principal | AuthFailure): value is AuthFailure {
  return 'error' in value;
}

/**
 * Source of Forgejo credentials per user, for the rotator. Credentials belong
 * to the Forgejo user (Forgejo invalidates older refresh tokens), so every
 * session of one user shares one.
 */
export interface ForgejoCredentials {
  /**
   * The user's access token, refreshed first (single flight per user) when it
   * expires within `minValidityMs`. Rejects with a BrokerError of kind
   * `credential_revoked` once the credential ended: Forgejo refused the access
   * token, or it expired with no way to refresh it.
   */
  access(userId: string, minValidityMs: number): Promise<ForgejoAccess>;
  /**
   * A server acting with the user's token says Forgejo refused it. Resolves
   * with the token to use from now on (a newer one, or the same when Forgejo
   * still takes it); rejects with `credential_revoked` once the credential
   * ended, as `access` does.
   */
  refused(userId: string, accessToken: string): Promise<ForgejoAccess>;
}
