/**
 * Token buckets per (endpoint group, client address). A bucket holds `burst`
 * requests and refills at `perMinute`; a request finding it empty is refused
 * with the seconds until the next token. The buckets live in this process:
 * each replica counts on its own, and the README tells operators to divide
 * the budget by the number of replicas (cheaper than a store write per request).
 */
export interface RateLimitOptions {
  readonly burst: number;
  readonly perMinute: number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class RateLimiter {
  readonly #options: RateLimitOptions;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: RateLimitOptions, now: () => number) {
    this.#options = options;
    this.#now = now;
  }

  /** Takes one token; returns undefined when allowed, else seconds to wait. */
  take(key: string): number | undefined {
    const now = this.#now();
    const ratePerMs = this.#options.perMinute / 60_000;
    const bucket = this.#buckets.get(key) ?? { tokens: this.#options.burst, updatedAt: now };
    // A clock stepping back refills nothing rather than draining the bucket.
    bucket.tokens = Math.min(this.#options.burst, bucket.tokens + Math.max(0, now - bucket.updatedAt) * ratePerMs);
    bucket.updatedAt = now;
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerMs / 1000));
  }

  /** Forgets buckets that have refilled: they hold no information. */
  sweep(): void {
    const now = this.#now();
    const ratePerMs = this.#options.perMinute / 60_000;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.updatedAt) * ratePerMs >= this.#options.burst) this.#buckets.delete(key);
    }
  }
}
