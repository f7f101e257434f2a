import type { AuthFailure, Authenticator, Principal } from '../auth/principal.js';
import type { GrantRepository } from '../store/store.js';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { TokenCache } from './token-cache.js';
import { sha256Hex } from './tokens.js';

export interface BrokerAuthenticatorOptions {
  readonly grants: GrantRepository;
  /** `<public>/mcp`: tokens bound to anything else are refused. */
  readonly resource: string;
  readonly resourceMetadataUrl: string;
  /** Where a failed last-use write is told. */
  readonly logger?: Logger;
  /** Accepted tokens, so a hot request reads no store; only where the revocation log is followed. Absent: every request reads the store. */
  readonly cache?: TokenCache;
  readonly now?: () => number;
}

/** A grant's last use is written at most this often per broker process: seldom enough to cost nothing per request. */
const GRANT_TOUCH_INTERVAL_MS = 60_000;
/** Above this many remembered grants, those not written within the interval are forgotten. */
const GRANT_TOUCH_MEMORY = 10_000;

/**
 * The production Authenticator: a broker access token is an opaque random
 * string; the store knows only its SHA-256. A token is accepted while it is
 * known, unexpired, unrevoked, its grant unrevoked, bound to this broker's
 * /mcp, and its user's Forgejo credential alive. With a cache, an accepted
 * token is remembered until it expires or the revocation log names it.
 */
export class BrokerAuthenticator implements Authenticator {
  readonly resourceMetadataUrl: string;
  readonly #grants: GrantRepository;
  readonly #resource: string;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #cache: TokenCache | undefined;
  /** When each grant's last use was last written by this process. */
  readonly #touched = new Map<string, number>();

  constructor(options: BrokerAuthenticatorOptions) {
    this.#logger = options.logger;
    this.#grants = options.grants;
    this.#resource = options.resource;
    this.resourceMetadataUrl = options.resourceMetadataUrl;
    this.#now = options.now ?? Date.now;
    this.#cache = options.cache;
  }

  async authenticate(bearerToken: string): Promise<Principal | AuthFailure> {
    if (bearerToken === '') return invalid('bearer token is empty');
    const tokenHash = sha256Hex(bearerToken);
    const cached = this.#cache?.find(tokenHash);
    if (cached !== undefined) {
      this.#touch(cached.grantId);
      return cached;
    }
    const epoch = this.#cache?.epoch ?? 0;
    const token = await this.#grants.findAccessToken(tokenHash);
    if (token === undefined) return invalid('unknown access token');
    if (token.revokedAt !== null || token.grant.revokedAt !== null) return invalid('access token was revoked');
    if (token.expiresAt <= this.#now()) return invalid('access token expired');
    if (token.grant.resource !== this.#resource) return invalid('access token was not issued for this resource');
    if (token.credentialRevoked) return invalid('the Forgejo sign-in has ended; sign in again');
    this.#touch(token.grant.grantId);
    const principal: Principal = {
      userId: token.grant.userId,
      forgejoLogin: token.forgejoLogin,
      clientId: token.grant.clientId,
      tokenHash,
      grantId: token.grant.grantId,
    };
    this.#cache?.remember(principal, token.expiresAt, epoch);
    return principal;
  }

  /** Records the grant's use for the Connections page and `admin grants`, at most once an interval, without waiting. */
  #touch(grantId: string): void {
    const now = this.#now();
    const last = this.#touched.get(grantId);
    if (last !== undefined && now - last < GRANT_TOUCH_INTERVAL_MS) return;
    if (this.#touched.size >= GRANT_TOUCH_MEMORY) {
      for (const [id, at] of this.#touched) if (now - at >= GRANT_TOUCH_INTERVAL_MS) this.#touched.delete(id);
    }
    this.#touched.set(grantId, now);
    this.#grants.touch(grantId, now).catch((error: unknown) => {
      this.#logger?.warn({ event: 'grant_touch_failed', err: errorMessage(error) }, "could not record the grant's last use");
    });
  }
}

function invalid(description: string): AuthFailure {
  return { error: 'invalid_token', description };
}
