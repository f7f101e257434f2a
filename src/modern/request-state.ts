import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * What a `requestState` vouches for: whose request it is (the user, and the
 * OAuth client and grant it came through, so another client of the same user
 * cannot complete it), which parked call, which request, until when.
 */
export interface RequestStateClaims {
  readonly userId: string;
  readonly clientId: string;
  readonly grantId: string;
  readonly parkedId: string;
  /** Method and name (or uri) of the original request; a retry of another request is refused. */
  readonly request: string;
  readonly expiresAt: number;
}

/**
 * The opaque `requestState` of the modern era's input-required results:
 * the claims, integrity-protected with HMAC-SHA-256 under a key that lives
 * only in this process (the parked calls it points to live there too),
 * behind the id of the replica that holds them.
 */
export class RequestStateCodec {
  readonly #key = randomBytes(32);
  readonly #owner: string;

  /** `owner`: this replica's id, written in front of every state so another replica knows where the parked call lives. */
  constructor(owner: string) {
    this.#owner = owner;
  }

  /** The replica a state says its parked call lives on (unauthenticated: for routing only; the owner verifies). */
  static ownerOf(state: string): string | undefined {
    const owner = state.slice(0, state.indexOf('.'));
    return owner === '' ? undefined : owner;
  }

  encode(claims: RequestStateClaims): string {
    const payload = Buffer.from(
      JSON.stringify([claims.userId, claims.clientId, claims.grantId, claims.parkedId, claims.request, claims.expiresAt]),
    ).toString('base64url');
    return `${this.#owner}.${payload}.${this.#sign(payload)}`;
  }

  /** The claims, if the state is authentic, this replica's and unexpired; undefined otherwise. */
  decode(state: string, now: number): RequestStateClaims | undefined {
    const [owner, payload, signature, ...rest] = state.split('.');
    if (owner !== this.#owner || payload === undefined || signature === undefined || rest.length > 0) return undefined;
    const expected = Buffer.from(this.#sign(payload));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    let fields: unknown;
    try {
      fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (!Array.isArray(fields) || fields.length !== 6) return undefined;
    const [userId, clientId, grantId, parkedId, request, expiresAt] = fields as unknown[];
    if (typeof userId !== 'string' || typeof clientId !== 'string' || typeof grantId !== 'string') return undefined;
    if (typeof parkedId !== 'string' || typeof request !== 'string' || typeof expiresAt !== 'number') return undefined;
    if (expiresAt <= now) return undefined;
    return { userId, clientId, grantId, parkedId, request, expiresAt };
  }

  #sign(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }
}
