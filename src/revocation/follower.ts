import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { LogEntry, RevocationOutcome, RevocationRepository, RevocationTarget, TokenNotice } from '../store/admin-store.js';
import type { EndedSessions } from './live-sessions.js';

export interface RevocationFollowerOptions {
  readonly revocations: RevocationRepository;
  /** Ends a revocation's live sessions on this replica. */
  readonly end: (target: RevocationTarget, reason: string) => Promise<EndedSessions>;
  readonly log: Logger;
  /** What this replica cached about tokens (the token cache): told of every entry, and of each read to the log's end. */
  readonly tokens?: FollowedTokens;
  /** How often the log is read. */
  readonly intervalMs: number;
  readonly now?: () => number;
}

/** What remembers tokens, and must drop them when the log names them. */
export interface FollowedTokens {
  forget(target: LogEntry['target']): unknown;
  /** The log was read to its end by a read that started at `at`. */
  followed(at: number): void;
  /** The log cannot be read. */
  lost(): void;
}

/** Entries read per look; more wait for the next one. */
const BATCH = 500;

/**
 * An id missing below one already read may belong to a transaction that has
 * not committed yet (PostgreSQL hands out sequence values before commit): it
 * is looked for again until this long after it was first missed, then
 * taken for a rolled-back one.
 */
const GAP_PATIENCE_MS = 30_000;

/**
 * Follows the store's revocation log, so that a revocation made anywhere
 * (`admin revoke`, another replica's Connections page) ends the live
 * sessions it names on this replica within one interval, and drops the
 * tokens it names from the token cache (notices, which end no session, only
 * that).
 *
 * Why polling and not PostgreSQL LISTEN/NOTIFY: one mechanism for both
 * stores (SQLite has no notifications, and a second broker process on the
 * same file must learn too); no connection held open per replica (LISTEN
 * does not survive PgBouncer's transaction pooling, and a lost connection
 * loses notifications, so a poll would be needed behind it anyway); and a
 * look that finds nothing is one indexed range query a second.
 */
export class RevocationFollower {
  readonly #options: RevocationFollowerOptions;
  readonly #now: () => number;
  /** Every id at or below it is applied or given up on. */
  #floor = 0;
  /** Ids above the floor already applied. */
  readonly #applied = new Set<number>();
  /** Ids above the floor not seen yet, with when they were first missed. */
  readonly #missing = new Map<number, number>();
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(options: RevocationFollowerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Starts at the newest entry (a broker that starts holds no session an older one could name) and looks every interval. */
  async start(): Promise<void> {
    const at = this.#now();
    this.#floor = await this.#options.revocations.latestId();
    this.#options.tokens?.followed(at);
    this.#timer = setInterval(() => void this.poll(), this.#options.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Revokes in the store, then applies it here at once; the other replicas follow within an interval. */
  async revoke(target: RevocationTarget): Promise<RevocationOutcome> {
    const outcome = await this.#options.revocations.revoke(target, this.#now());
    await this.poll();
    return outcome;
  }

  /** Appends a notice (the change it tells of is stored already), then applies it here at once; the other replicas follow within an interval. */
  async notice(notice: TokenNotice): Promise<void> {
    await this.#options.revocations.notice(notice, this.#now());
    await this.poll();
  }

  /** One look at the log. Single flight: a call during a look gets the one look queued after it. */
  poll(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    if (this.#running !== undefined) {
      const queued = this.#running.then(() => {
        this.#queued = undefined;
        return this.poll();
      });
      this.#queued = queued;
      return queued;
    }
    const running = this.#look().finally(() => {
      this.#running = undefined;
    });
    this.#running = running;
    return running;
  }

  async #look(): Promise<void> {
    let entries: LogEntry[];
    const at = this.#now();
    try {
      entries = await this.#options.revocations.since(this.#floor, BATCH);
    } catch (error) {
      if (!this.#failing) {
        this.#options.log.warn(
          { event: 'revocation_log_unreadable', err: errorMessage(error) },
          'cannot read the revocation log; retrying',
        );
      }
      this.#failing = true;
      this.#options.tokens?.lost();
      return;
    }
    this.#failing = false;
    for (const entry of entries) {
      if (this.#applied.has(entry.id)) continue;
      this.#applied.add(entry.id);
      this.#missing.delete(entry.id);
      await this.#apply(entry);
    }
    this.#advance();
    // A full batch may have more behind it: the log is read to its end only when a look finds fewer.
    if (entries.length < BATCH) this.#options.tokens?.followed(at);
  }

  async #apply(entry: LogEntry): Promise<void> {
    const tokens = this.#options.tokens?.forget(entry.target);
    const { target } = entry;
    if (target.kind === 'access_token' || target.kind === 'credential') {
      this.#options.log.debug({ event: 'token_notice_applied', revocationId: entry.id, ...target, tokens }, 'token notice applied');
      return;
    }
    try {
      const ended = await this.#options.end(target, 'revoked');
      this.#options.log.info(
        {
          event: 'revocation_applied',
          revocationId: entry.id,
          ...target,
          tokens,
          legacySessions: ended.legacy,
          modernGrants: ended.modern,
        },
        'revocation applied',
      );
    } catch (error) {
      this.#options.log.error(
        { event: 'revocation_apply_failed', revocationId: entry.id, err: errorMessage(error) },
        'revocation not applied',
      );
    }
  }

  /** Moves the floor over applied ids and over missing ones waited for long enough. */
  #advance(): void {
    const highest = Math.max(this.#floor, ...this.#applied);
    const now = this.#now();
    for (let id = this.#floor + 1; id < highest; id++) {
      if (!this.#applied.has(id) && !this.#missing.has(id)) this.#missing.set(id, now);
    }
    for (;;) {
      const next = this.#floor + 1;
      if (this.#applied.delete(next)) {
        this.#floor = next;
        continue;
      }
      const missedAt = this.#missing.get(next);
      if (missedAt === undefined || now - missedAt < GAP_PATIENCE_MS) break;
      this.#missing.delete(next);
      this.#floor = next;
    }
  }
}
