import type { AuthFailure, Authenticator, Principal } from '../auth/principal.js';
import type { GrantRepository } from '../store/store.js';
import { sha256Hex } from './tokens.js';

export interface BrokerAuthenticatorOptions {
  readonly grants: GrantRepository;
  /** `<public>/mcp`: tokens bound to anything else are refused. */
  readonly resource: string;
  readonly resourceMetadataUrl: string;
  readonly now?: () => number;
}

/**
 * The production Authenticator: a broker access token is an opaque random
 * string; the store knows only its SHA-256. A token is accepted while it is
 * known, unexpired, unrevoked, its grant unrevoked, bound to this broker's
 * /mcp, and its user's Forgejo credential alive.
 */
export class BrokerAuthenticator implements Authenticator {
  readonly resourceMetadataUrl: string;
  readonly #grants: GrantRepository;
  readonly #resource: string;
  readonly #now: () => number;

  constructor(options: BrokerAuthenticatorOptions) {
    this.#grants = options.grants;
    this.#resource = options.resource;
    this.resourceMetadataUrl = options.resourceMetadataUrl;
    this.#now = options.now ?? Date.now;
  }

  async authenticate(bearerToken: string): Promise<Principal | AuthFailure> {
    if (bearerToken === '') return invalid('bearer token is empty');
    const tokenHash = sha256Hex(bearerToken);
    const token = await this.#grants.findAccessToken(tokenHash);
    if (token === undefined) return invalid('unknown access token');
    if (token.revokedAt !== null || token.grant.revokedAt !== null) return invalid('access token was revoked');
    if (token.expiresAt <= this.#now()) return invalid('access token expired');
    if (token.grant.resource !== this.#resource) return invalid('access token was not issued for this resource');
    if (token.credentialRevoked) return invalid('the Forgejo sign-in has ended; sign in again');
    return {
      userId: token.grant.userId,
      forgejoLogin: token.forgejoLogin,
      clientId: token.grant.clientId,
      tokenHash,
      grantId: token.grant.grantId,
    };
  }
}

function invalid(description: string): AuthFailure {
  return { error: 'invalid_token', description };
}
