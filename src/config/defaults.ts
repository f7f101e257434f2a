/**
 * Defaults that are not (yet) operator settings, in one place with the ones
 * that are (config.ts): the parts take them as options and never invent their own.
 */

/** Seconds a client is told to wait when the broker is full or stopping. */
export const RETRY_AFTER_SECONDS = 30;
/** The largest line a child may write to stdout. */
export const MAX_CHILD_MESSAGE_BYTES = 64 * 1024 * 1024;
/** How often the modern front's long-lived streams send a keep-alive. */
export const STREAM_KEEP_ALIVE_MS = 15_000;

/** OAuth lifetimes when no setting names them (BROKER_ACCESS_TOKEN_TTL, BROKER_REFRESH_TOKEN_TTL override the first two). */
export const DEFAULT_LIFETIMES = {
  accessTokenMs: 3_600_000,
  refreshTokenMs: 30 * 24 * 3_600_000,
  authorizationCodeMs: 60_000,
  pendingAuthorizationMs: 10 * 60_000,
  signInMs: 30 * 24 * 3_600_000,
} as const;

/** Per client address and endpoint group, when BROKER_RATE_LIMIT does not say. */
export const DEFAULT_RATE_LIMIT = { burst: 30, perMinute: 60 } as const;

/** The OAuth rate limit for BROKER_RATE_LIMIT requests a minute: bursts of half of it, at least 10. */
export function rateLimitFor(perMinute: number): { burst: number; perMinute: number } {
  return { burst: Math.max(10, Math.ceil(perMinute / 2)), perMinute };
}

/** How often a replica records in the store that it is alive, and reads which others are. */
export const REPLICA_HEARTBEAT_MS = 2_000;

/** How often every broker reads the store's revocation log: a revocation made anywhere ends live sessions within about this long. */
export const REVOCATION_POLL_MS = 1_000;

/** Access tokens each broker remembers as accepted (the token cache), at most: about 2.5 MB. */
export const TOKEN_CACHE_ENTRIES = 10_000;
/** A replica whose last heartbeat is older than this counts as gone (three missed heartbeats). */
export const REPLICA_GONE_AFTER_MS = 6_000;
/** A gone replica's row is deleted once its last heartbeat is this old (one killed outright never removes its own). */
export const REPLICA_FORGET_AFTER_MS = 3_600_000;

/** The audit log: records waiting for the store, at most (beyond, they are dropped and counted). */
export const AUDIT_MAX_QUEUED = 10_000;
/** The audit log writes a batch once it holds this many records, or after AUDIT_FLUSH_MS. */
export const AUDIT_BATCH_SIZE = 500;
export const AUDIT_FLUSH_MS = 250;
/** How often records older than BROKER_AUDIT_RETENTION are deleted. */
export const AUDIT_PURGE_INTERVAL_MS = 3_600_000;
/** How long a user's Forgejo team memberships are trusted before the policy asks Forgejo again. */
export const TEAM_CACHE_MS = 60_000;
