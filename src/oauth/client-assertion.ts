import type { AssertionReplayRepository } from '../store/assertion-replays.js';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

import { freshnessMs, parseCacheControl, type CimdOptions, type ClientKeySource } from './cimd.js';
import { fetchJson } from './public-fetch.js';
import { OAuthError } from './errors.js';
import { sha256Hex } from './tokens.js';

/**
 * private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9) for clients whose
 * metadata document publishes keys: the client signs a short-lived JWT with
 * its private key, the broker checks it against the published JWKS. The
 * algorithm list is fixed to asymmetric ones: taking `alg` from the token
 * would admit `none`, or HMAC keyed with a public key.
 */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export const CLIENT_ASSERTION_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

/** A key set is fetched again on an unknown `kid` (key rotation), but not more often than this. */
const KEY_REFETCH_MIN_MS = 60_000;
/** An assertion is a one-time proof for one request; one valid for longer than this is refused (and need not be remembered longer). */
const MAX_ASSERTION_LIFETIME_MS = 10 * 60_000;
const MAX_JWKS_BYTES = 64 * 1024;
const CLOCK_TOLERANCE_S = 30;

interface CachedKeys {
  readonly keys: JWTVerifyGetKey;
  readonly freshUntil: number;
  readonly fetchedAt: number;
}

export interface ClientAssertionOptions {
  readonly cimd: CimdOptions;
  /** Accepted `aud` values: the issuer and the endpoints that take an assertion. */
  readonly audiences: readonly string[];
  /** Assertions already accepted, until they expire: each proves possession once (RFC 7523 §3, item 7), on every replica. */
  readonly replays: AssertionReplayRepository;
  readonly now: () => number;
}

export class ClientAssertionVerifier {
  readonly #options: ClientAssertionOptions;
  readonly #keySets = new Map<string, CachedKeys>();

  constructor(options: ClientAssertionOptions) {
    this.#options = options;
  }

  /** Resolves when `assertion` proves the client holds a published key; `invalid_client` otherwise. */
  async verify(clientId: string, source: ClientKeySource, signingAlg: string | null, assertion: string): Promise<void> {
    const algorithms = signingAlg !== null && CLIENT_ASSERTION_ALGORITHMS.includes(signingAlg) ? [signingAlg] : CLIENT_ASSERTION_ALGORITHMS;
    const check = async (keys: JWTVerifyGetKey): Promise<void> => {
      const { payload } = await jwtVerify(assertion, keys, {
        issuer: clientId,
        subject: clientId,
        audience: [...this.#options.audiences],
        algorithms,
        currentDate: new Date(this.#options.now()),
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp'],
      });
      // Without a jti, the assertion itself is what may not come twice.
      await this.#remember(`${clientId} ${typeof payload.jti === 'string' ? payload.jti : sha256Hex(assertion)}`, payload.exp as number);
    };
    try {
      try {
        await check(await this.#keys(source, false));
      } catch (error) {
        if (!(error instanceof joseErrors.JWKSNoMatchingKey) || !('jwksUri' in source)) throw error;
        await check(await this.#keys(source, true));
      }
    } catch (error) {
      if (error instanceof OAuthError) throw error;
      const reason = error instanceof joseErrors.JOSEError ? error.code : 'malformed';
      throw new OAuthError('invalid_client', `client authentication failed: client assertion refused (${reason})`, { cause: error });
    }
  }

  /** Records a replay key until `exp` in the store (every replica sees it); refuses one already recorded. */
  async #remember(key: string, exp: number): Promise<void> {
    const now = this.#options.now();
    const expiresAt = exp * 1000;
    if (expiresAt - now > MAX_ASSERTION_LIFETIME_MS) {
      throw new OAuthError('invalid_client', 'client authentication failed: client assertion lives longer than ten minutes');
    }
    const first = await this.#options.replays.use(sha256Hex(key), expiresAt + CLOCK_TOLERANCE_S * 1000, now);
    if (!first) throw new OAuthError('invalid_client', 'client authentication failed: client assertion was already used');
  }

  async #keys(source: ClientKeySource, afterUnknownKid: boolean): Promise<JWTVerifyGetKey> {
    if ('jwks' in source) return createLocalJWKSet(jwks(source.jwks));
    const now = this.#options.now();
    const cached = this.#keySets.get(source.jwksUri);
    const usable = cached !== undefined && (afterUnknownKid ? now - cached.fetchedAt < KEY_REFETCH_MIN_MS : cached.freshUntil > now);
    if (usable) return cached.keys;
    const url = new URL(source.jwksUri);
    if (url.protocol !== 'https:' && !this.#options.cimd.allowPrivateNetwork) {
      throw new OAuthError('invalid_client', 'client authentication failed: jwks_uri must use https');
    }
    const fetched = await fetchJson(url, this.#options.cimd, MAX_JWKS_BYTES, 'client JWKS');
    const keys = createLocalJWKSet(jwks(fetched.body));
    const cacheControl = parseCacheControl(fetched.cacheControl);
    this.#keySets.delete(source.jwksUri);
    if (this.#keySets.size >= this.#options.cimd.maxCacheEntries) {
      const oldest = this.#keySets.keys().next();
      if (oldest.done !== true) this.#keySets.delete(oldest.value);
    }
    this.#keySets.set(source.jwksUri, { keys, fetchedAt: now, freshUntil: now + freshnessMs(cacheControl, this.#options.cimd) });
    return keys;
  }
}

function jwks(value: unknown): JSONWebKeySet {
  if (typeof value !== 'object' || value === null || !Array.isArray((value as { keys?: unknown }).keys)) {
    throw new OAuthError('invalid_client', 'client authentication failed: the client JWKS has no keys array');
  }
  return value as JSONWebKeySet;
}
