import { REPLICA_FORGET_AFTER_MS } from '../config/defaults.js';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { ReplicaRepository, StoredReplica } from '../store/store.js';
import type { FleetView, ReplicaInfo } from './fleet.js';

export interface ReplicaRegistryOptions {
  readonly replicas: ReplicaRepository;
  /** This replica: its id (random, one per process) and BROKER_REPLICA_URL. */
  readonly self: ReplicaInfo;
  /** How often to heartbeat and read the others. */
  readonly heartbeatMs: number;
  /** A replica not heard of for this long is gone. */
  readonly goneAfterMs: number;
  /** Rows whose last heartbeat is this old are deleted (checked as often). Default REPLICA_FORGET_AFTER_MS. */
  readonly forgetAfterMs?: number;
  readonly log: Logger;
  readonly now?: () => number;
}

/** Told the live replicas whenever one comes or goes (rendezvous owners move then). */
export type ReplicaListener = (live: readonly ReplicaInfo[]) => void;

/** Another replica as last read from the store, with when it last heartbeated. */
interface SeenReplica {
  readonly info: ReplicaInfo;
  readonly heartbeatAt: number;
}

/**
 * This replica among the others: it heartbeats into the store every
 * `heartbeatMs` and reads back which replicas heartbeated within
 * `goneAfterMs`, so routing (`live`, `find`) is answered from memory, never
 * by a query per request. Heartbeat times are the replicas' own clocks,
 * which are assumed to be kept in sync (NTP): a skew near `goneAfterMs`
 * would make replicas flap.
 */
export class ReplicaRegistry implements FleetView {
  readonly self: ReplicaInfo;
  readonly #options: ReplicaRegistryOptions;
  readonly #now: () => number;
  readonly #listeners = new Set<ReplicaListener>();
  #startedAt: number | undefined;
  #others: readonly SeenReplica[] = [];
  #live: readonly ReplicaInfo[];
  #storeFailing = false;
  #forgottenAt: number | undefined;
  #beats: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #stopping: Promise<void> | undefined;

  constructor(options: ReplicaRegistryOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.self = options.self;
    this.#live = [options.self];
  }

  /** The first heartbeat and look at the others (awaited; a failure only makes the replica not ready), then one every heartbeatMs. */
  async start(): Promise<void> {
    this.#startedAt ??= this.#now();
    await this.tick();
    this.#schedule();
  }

  /** One heartbeat and look at the others, now, after any still running; the timer calls it. Never rejects. */
  tick(): Promise<void> {
    this.#beats = this.#beats.then(() => this.#beat());
    return this.#beats;
  }

  /** The live replicas, this one always among them, sorted by id. */
  live(): readonly ReplicaInfo[] {
    return this.#live;
  }

  find(id: string): ReplicaInfo | undefined {
    return this.#live.find((replica) => replica.id === id);
  }

  /** Listens for changes of the live set; returns the way to stop listening. */
  onChange(listener: ReplicaListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Why this replica cannot take its share of the traffic (for /readyz), or undefined. */
  notReadyBecause(): string | undefined {
    if (this.#storeFailing) return 'the store cannot be reached';
    // The others would forward this replica's sessions and users to it, and cannot.
    if (this.self.url === undefined && this.#live.length > 1) return 'another replica is running and BROKER_REPLICA_URL is not set';
    return undefined;
  }

  /** Stops heartbeating and removes this replica's row, so the others stop counting it at once. Never rejects. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#beats;
    try {
      await this.#options.replicas.remove(this.self.id);
    } catch (error) {
      this.#options.log.warn(
        { event: 'replica_remove_failed', replicaId: this.self.id, err: errorMessage(error) },
        'could not remove this replica from the store; the others count it gone once its heartbeats stop',
      );
    }
  }

  /** The next beat once this one is done: a store that answers slowly never piles up heartbeats. */
  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.tick().then(() => this.#schedule());
    }, this.#options.heartbeatMs);
    this.#timer.unref();
  }

  async #beat(): Promise<void> {
    if (this.#stopped) return;
    const { replicas, log, goneAfterMs } = this.#options;
    const now = this.#now();
    const aliveSince = now - goneAfterMs;
    try {
      await replicas.heartbeat({ id: this.self.id, url: this.self.url?.href ?? null, startedAt: this.#startedAt ?? now }, now);
      const rows = await replicas.list(aliveSince);
      this.#others = rows.filter((row) => row.id !== this.self.id).map((row) => ({ info: infoOf(row), heartbeatAt: row.heartbeatAt }));
      await this.#forgetLongGone(now);
      if (this.#storeFailing)
        log.info({ event: 'replica_heartbeat_recovered', replicaId: this.self.id }, 'the store answers heartbeats again');
      this.#storeFailing = false;
    } catch (error) {
      if (!this.#storeFailing) {
        log.warn(
          { event: 'replica_heartbeat_failed', replicaId: this.self.id, err: errorMessage(error) },
          'cannot record this replica in the store; not ready until it can',
        );
      }
      this.#storeFailing = true;
      // Nothing new is known: the others seen count as alive until their last heartbeat is too old.
      this.#others = this.#others.filter((other) => other.heartbeatAt >= aliveSince);
    }
    this.#update();
  }

  async #forgetLongGone(now: number): Promise<void> {
    const forgetAfterMs = this.#options.forgetAfterMs ?? REPLICA_FORGET_AFTER_MS;
    if (this.#forgottenAt !== undefined && now - this.#forgottenAt < forgetAfterMs) return;
    this.#forgottenAt = now;
    const forgotten = await this.#options.replicas.removeGoneBefore(now - forgetAfterMs);
    if (forgotten > 0) this.#options.log.debug({ event: 'replicas_forgotten', count: forgotten }, 'long gone replicas forgotten');
  }

  #update(): void {
    const live = [this.self, ...this.#others.map((other) => other.info)].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (fingerprint(live) === fingerprint(this.#live)) return;
    this.#live = live;
    this.#options.log.info(
      { event: 'replicas_changed', replicaId: this.self.id, live: live.map((replica) => replica.id) },
      `${live.length} live replica(s)`,
    );
    for (const listener of this.#listeners) {
      try {
        listener(live);
      } catch (error) {
        this.#options.log.error({ event: 'replica_listener_failed', err: errorMessage(error) }, 'a replica change listener failed');
      }
    }
  }
}

function infoOf(row: StoredReplica): ReplicaInfo {
  return { id: row.id, url: row.url === null || !URL.canParse(row.url) ? undefined : new URL(row.url) };
}

function fingerprint(live: readonly ReplicaInfo[]): string {
  return live.map((replica) => `${replica.id} ${replica.url?.href ?? ''}`).join('\n');
}
