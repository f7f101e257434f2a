import type { Principal } from '../auth/principal.js';
import type { LogEntry } from '../store/admin-store.js';

export interface TokenCacheOptions {
  /** At most this many tokens are remembered; the least recently used goes first. */
  readonly maxEntries: number;
  /**
   * Nothing is trusted once the revocation log was last read to its end
   * longer ago than this (a follower that stalls or cannot read the store):
   * every request then goes to the store, as without a cache.
   */
  readonly maxStalenessMs: number;
  readonly now?: () => number;
}

interface Entry {
  readonly principal: Principal;
  readonly expiresAt: number;
}

/**
 * Principals of accepted access tokens, by the token's SHA-256, until the
 * token expires: a hot request reads no store. It is as fresh as the
 * revocation log, which every change that makes a token invalid writes
 * (revocations, and notices of a revoked access token or an ended Forgejo
 * credential): the follower reading the log drops what an entry names, on
 * every replica, within its poll. Refusals are never cached.
 */
export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #maxStalenessMs: number;
  readonly #now: () => number;
  /** When the log was last read to its end (the read's start); undefined: never, or the last read failed. */
  #followedAt: number | undefined;
  /** Moves with every invalidation: a store read begun before one is not cached after it. */
  #epoch = 0;

  constructor(options: TokenCacheOptions) {
    this.#maxEntries = options.maxEntries;
    this.#maxStalenessMs = options.maxStalenessMs;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Taken before a store read, handed back to `remember`. */
  get epoch(): number {
    return this.#epoch;
  }

  find(tokenHash: string): Principal | undefined {
    const now = this.#now();
    if (!this.#fresh(now)) return undefined;
    const entry = this.#entries.get(tokenHash);
    if (entry === undefined) return undefined;
    this.#entries.delete(tokenHash);
    if (entry.expiresAt <= now) return undefined;
    // Map order is insertion order: re-inserted, it is the most recently used.
    this.#entries.set(tokenHash, entry);
    return entry.principal;
  }

  /** Remembers an accepted token, unless an invalidation came since `epoch` was taken (the read may predate it). */
  remember(principal: Principal, expiresAt: number, epoch: number): void {
    if (epoch !== this.#epoch || !this.#fresh(this.#now())) return;
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(principal.tokenHash, { principal, expiresAt });
  }

  /** The revocation log was read to its end by a read that started at `at`. */
  followed(at: number): void {
    this.#followedAt = Math.max(this.#followedAt ?? at, at);
  }

  /** The log cannot be read: nothing cached can be trusted until it can. */
  lost(): void {
    this.#followedAt = undefined;
    this.#epoch++;
    this.#entries.clear();
  }

  /** Drops every token an entry of the log names; how many. */
  forget(target: LogEntry['target']): number {
    this.#epoch++;
    let dropped = 0;
    for (const [tokenHash, { principal }] of this.#entries) {
      if (!names(target, principal)) continue;
      this.#entries.delete(tokenHash);
      dropped++;
    }
    return dropped;
  }

  #fresh(now: number): boolean {
    return this.#followedAt !== undefined && now - this.#followedAt <= this.#maxStalenessMs;
  }
}

function names(target: LogEntry['target'], principal: Principal): boolean {
  switch (target.kind) {
    case 'user':
    case 'credential':
      return principal.userId === target.userId;
    case 'client':
      return principal.clientId === target.clientId;
    case 'grant':
    case 'access_token':
      return principal.grantId === target.grantId;
    case 'connection':
      return principal.userId === target.userId && principal.clientId === target.clientId;
  }
}
