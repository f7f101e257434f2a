import { argumentsDigest, redactSecrets } from './arguments.js';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { AuditRecord, AuditRepository } from '../store/store.js';

/** Why records never reached the store. */
export type AuditDropReason = 'queue_full' | 'store_failed';

export interface AuditLogOptions {
  readonly repository: AuditRepository;
  readonly log: Logger;
  /** BROKER_AUDIT_ARGUMENTS: keep the arguments (secrets redacted), not only their digest. */
  readonly storeArguments: boolean;
  /** BROKER_AUDIT_RETENTION. */
  readonly retentionMs: number;
  readonly maxQueued: number;
  readonly batchSize: number;
  readonly flushMs: number;
  readonly purgeIntervalMs: number;
  /** The OAuth client's name, when it has one (looked up once per client and remembered). */
  readonly clientName?: (clientId: string) => Promise<string | undefined>;
  /** A user's Forgejo login, for records that name only the user id (security events). */
  readonly userLogin?: (userId: string) => Promise<string | undefined>;
  readonly now?: () => number;
}

/**
 * A record as a caller hands it over: the arguments still raw (digested,
 * redacted and serialised at write time, off the call's path), the client's
 * name still to be found.
 */
export type PendingAuditRecord = Omit<AuditRecord, 'argumentsSha256' | 'arguments' | 'clientName' | 'requestBytes'> & {
  /** A tool call's `params`, as the client sent them (their size is the request size). */
  readonly params?: unknown;
};

/**
 * The audit log's writer. Callers only queue: records are written in
 * batches, asynchronously, by one flush at a time; the queue is bounded, and
 * what does not fit (or what a failing store refused) is dropped, counted and
 * warned about, never an error for the call that made it.
 */
export class AuditLog {
  readonly #queue: PendingAuditRecord[] = [];
  readonly #clientNames = new Map<string, string | null>();
  readonly #dropListeners = new Set<(reason: AuditDropReason, count: number) => void>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #purgeTimer: NodeJS.Timeout | undefined;
  #dropped = 0;
  /** Whether the last write failed: a failing store is warned about once, not per batch. */
  #failing = false;
  #closed = false;
  readonly #now: () => number;

  readonly #options: AuditLogOptions;

  constructor(options: AuditLogOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Records dropped so far (queue full, or the store failed). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Records waiting to be written. */
  get queued(): number {
    return this.#queue.length;
  }

  onDropped(listener: (reason: AuditDropReason, count: number) => void): void {
    this.#dropListeners.add(listener);
  }

  /** Queues a record; never throws, never waits. */
  record(record: PendingAuditRecord): void {
    if (this.#closed) return;
    if (this.#queue.length >= this.#options.maxQueued) {
      this.#drop('queue_full', 1);
      return;
    }
    this.#queue.push(record);
    if (this.#queue.length >= this.#options.batchSize) this.#flushSoon(0);
    else this.#flushSoon(this.#options.flushMs);
  }

  /** Writes what is queued now; resolves once the store has it (or refused it). */
  async flush(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing;
    if (this.#queue.length === 0) return;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#flushing = this.#writeBatches().finally(() => (this.#flushing = undefined));
    await this.#flushing;
  }

  /** Deletes records past the retention now, and every purge interval until close(). */
  startPurging(): void {
    const purge = (): void => {
      this.#options.repository.deleteBefore(this.#now() - this.#options.retentionMs).then(
        (deleted) => {
          if (deleted > 0) this.#options.log.info({ event: 'audit_purged', records: deleted }, 'old audit records deleted');
        },
        (error: unknown) =>
          this.#options.log.warn({ event: 'audit_purge_failed', err: errorMessage(error) }, 'could not purge the audit log'),
      );
    };
    purge();
    this.#purgeTimer = setInterval(purge, this.#options.purgeIntervalMs);
    this.#purgeTimer.unref();
  }

  /** Writes what is queued and stops; later records are ignored. */
  async close(): Promise<void> {
    clearInterval(this.#purgeTimer);
    await this.flush();
    this.#closed = true;
  }

  #flushSoon(delayMs: number): void {
    if (this.#flushing !== undefined) return; // the running flush takes it, and schedules the next
    if (this.#flushTimer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.#flushTimer);
    }
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.flush();
    }, delayMs);
    this.#flushTimer.unref();
  }

  async #writeBatches(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#options.batchSize);
      try {
        const records = await Promise.all(batch.map((pending) => this.#complete(pending)));
        await this.#options.repository.append(records);
        if (this.#failing) this.#options.log.info({ event: 'audit_store_recovered' }, 'the audit log is written again');
        this.#failing = false;
      } catch (error) {
        this.#drop('store_failed', batch.length, error);
      }
    }
  }

  async #complete(pending: PendingAuditRecord): Promise<AuditRecord> {
    const { params } = pending;
    const args = (params as { arguments?: unknown } | undefined)?.arguments;
    const isCall = pending.kind === 'tool_call';
    const knownName = pending.clientId === null ? null : this.#clientNames.get(pending.clientId);
    const login =
      pending.forgejoLogin ??
      (pending.userId === null || this.#options.userLogin === undefined
        ? null
        : ((await this.#options.userLogin(pending.userId).catch(() => undefined)) ?? null));
    // One literal, every field in one order: records of one shape, which building and the insert read fast
    // (rest and spread objects were most of the audit's CPU).
    return {
      at: pending.at,
      kind: pending.kind,
      userId: pending.userId,
      forgejoLogin: login,
      clientId: pending.clientId,
      // Awaited only for a client not seen yet: a batch of records is built without a turn each.
      clientName: knownName !== undefined ? knownName : await this.#clientName(pending.clientId as string),
      era: pending.era,
      sessionRef: pending.sessionRef,
      tool: pending.tool,
      outcome: pending.outcome,
      errorCode: pending.errorCode,
      detail: pending.detail,
      durationMs: pending.durationMs,
      // The canonical form's length, which key order does not change; JSON.stringify is native.
      requestBytes: isCall ? Buffer.byteLength(JSON.stringify(params ?? {})) : null,
      responseBytes: pending.responseBytes,
      argumentsSha256: isCall ? argumentsDigest(args) : null,
      arguments: isCall && this.#options.storeArguments ? JSON.stringify(redactSecrets(args ?? {})) : null,
    };
  }

  async #clientName(clientId: string): Promise<string | null> {
    const known = this.#clientNames.get(clientId);
    if (known !== undefined || this.#options.clientName === undefined) return known ?? null;
    const name = (await this.#options.clientName(clientId).catch(() => undefined)) ?? null;
    this.#clientNames.set(clientId, name);
    return name;
  }

  #drop(reason: AuditDropReason, count: number, error?: unknown): void {
    this.#dropped += count;
    for (const listener of this.#dropListeners) listener(reason, count);
    if (reason === 'store_failed') {
      if (!this.#failing)
        this.#options.log.warn(
          { event: 'audit_store_failed', records: count, err: errorMessage(error) },
          'could not write audit records; they are dropped',
        );
      this.#failing = true;
      return;
    }
    // One warning per power of two, so a flood of drops is visible without flooding the log.
    if ((this.#dropped & (this.#dropped - 1)) === 0)
      this.#options.log.warn({ event: 'audit_records_dropped', dropped: this.#dropped }, 'the audit queue is full; records are dropped');
  }
}
