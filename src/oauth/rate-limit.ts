/**
 * Token buckets per (endpoint group, client address). A bucket holds `burst`
 * requests and refills at `perMinute`; a request finding it empty is refused
 * with the seconds until the next token. The buckets live in this process
 * (cheaper than a store write per request): with N live replicas each
 * enforces its share, ceil(1/N) of both figures, so a client that the load
 * balancer spreads evenly over the replicas gets about the configured limit.
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
  readonly #replicas: () => number;
  readonly #buckets = new Map<string, Bucket>();

  /** `replicas`: how many replicas share the limit now (the live ones); default one. */
  constructor(options: RateLimitOptions, now: () => number, replicas: () => number = () => 1) {
    this.#options = options;
    this.#now = now;
    this.#replicas = replicas;
  }

  /** What this replica enforces: its share of the configured limit. */
  share(): RateLimitOptions {
    const replicas = Math.max(1, this.#replicas());
    return { burst: Math.ceil(this.#options.burst / replicas), perMinute: Math.ceil(this.#options.perMinute / replicas) };
  }

  /** Takes one token; returns undefined when allowed, else seconds to wait. */
  take(key: string): number | undefined {
    const now = this.#now();
    const { burst, perMinute } = this.share();
    const ratePerMs = perMinute / 60_000;
    const bucket = this.#buckets.get(key) ?? { tokens: burst, updatedAt: now };
    // A clock stepping back refills nothing rather than draining the bucket.
    bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.updatedAt) * ratePerMs);
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
    const { burst, perMinute } = this.share();
    const ratePerMs = perMinute / 60_000;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.updatedAt) * ratePerMs >= burst) this.#buckets.delete(key);
    }
  }
}
