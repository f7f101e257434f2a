import { createHash } from 'node:crypto';
import type { JSONRPCNotification, JSONRPCRequest } from '@modelcontextprotocol/server';
import type { ForgejoCredentials } from '../auth/principal.js';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { SessionEvents } from '../metrics/metrics.js';
import { ChildChannel } from './channel.js';
import type { Child, SpawnFunc } from './child.js';

/** Whose token a channel's child holds. */
export interface ChannelOwner {
  readonly userId: string;
  readonly forgejoLogin: string;
}

export interface PoolOptions {
  readonly spawn: SpawnFunc;
  readonly credentials: ForgejoCredentials;
  readonly log: Logger;
  /** Channels at once, live and starting; 0 means unlimited. */
  readonly maxChannels: number;
  /** The same, per user; 0 means unlimited. */
  readonly maxChannelsPerUser: number;
  readonly idleTimeoutMs: number;
  /** Refresh a Forgejo token when it expires within this long. */
  readonly refreshLeadMs: number;
  readonly requestTimeoutMs: number;
  readonly drainGraceMs: number;
  readonly now?: () => number;
  /** Counts rotations; none in most tests. */
  readonly events?: Pick<SessionEvents, 'rotation'>;
}

/** What the front that borrows a channel hears from it. */
export interface ChannelHandlers {
  readonly log: Logger;
  /** The channel ended: its child exited, or it was closed (by its front, the reaper, a revoked credential, the stop). */
  readonly onEnded: (reason: string) => void;
  /** Messages from the child that belong to no request in flight (list_changed, resources/updated, …). */
  readonly onUnrelated: (message: JSONRPCNotification | JSONRPCRequest) => void;
}

/**
 * A place in the pool for one channel, from reservation to its end. The front
 * that asked for it opens the channel when it needs the child, and commits it
 * once the channel serves.
 */
export interface ChannelLease {
  /** The channel's name in logs and spawn specs: a legacy session id, or `modern:<user>`. */
  readonly name: string;
  /** Starts the child with the token read at reservation, and the channel over it. */
  open(handlers: ChannelHandlers): Promise<ChildChannel>;
  /** The channel serves: from now on it counts as live, is reaped when idle and moved on rotation. */
  commit(options?: { readonly busy?: () => boolean }): void;
  /** The channel was used just now (the idle reaper's clock). */
  touch(): void;
  /** Gives the place back unless the channel went live; idempotent. */
  release(): void;
}

interface PooledChannel {
  readonly name: string;
  readonly channel: ChildChannel;
  readonly owner: ChannelOwner;
  lastActive: number;
  /** SHA-256 of the Forgejo token the current child holds. */
  tokenFingerprint: string;
  /** In use though nothing is in flight (an open listen stream); the reaper spares it. */
  readonly busy: () => boolean;
}

/**
 * Owns every upstream channel, whichever era borrows it: starts children
 * through the injected spawner, holds the caps, reaps idle channels, moves a
 * user's channels onto children with the user's newest Forgejo token, stops
 * them all.
 */
export class ChannelPool {
  readonly #live = new Set<PooledChannel>();
  readonly #liveByUser = new Map<string, Set<PooledChannel>>();
  /** Places reserved for channels not live yet, counted against the caps so a burst cannot overshoot them. */
  #reserved = 0;
  readonly #reservedByUser = new Map<string, number>();
  /**
   * Rotations that collected a user's channels to move, per user. A channel that
   * was starting meanwhile was not among them, and may hold the token they replaced.
   */
  readonly #rotationsCollected = new Map<string, number>();
  readonly #rotations = new Map<string, Promise<void>>();
  /** The one rotation per user that runs after the current one, for calls that came during it. */
  readonly #queuedRotations = new Map<string, { minValidityMs: number; done: Promise<void> }>();
  /** Streams opened for channels not live yet, until they go live or the stream ends (`listen`). */
  readonly #listenersWaiting = new Set<{ readonly name: string; readonly userId: string }>();
  readonly #now: () => number;
  #stopped = false;
  readonly #timers: NodeJS.Timeout[] = [];

  readonly #options: PoolOptions;

  constructor(options: PoolOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Live channels. */
  get size(): number {
    return this.#live.size;
  }

  /** Client requests waiting for a child's answer, across all live channels. */
  get inflight(): number {
    let count = 0;
    for (const entry of this.#live) count += entry.channel.inflight;
    return count;
  }

  /**
   * Holds a place for a new channel against the caps, then reads the owner's
   * Forgejo token: a credential Forgejo refused throws here, before anything
   * starts.
   */
  async reserve(owner: ChannelOwner, name: string): Promise<ChannelLease> {
    if (this.#stopped) throw new BrokerError('unavailable', 'The broker is shutting down');
    this.#hold(owner.userId);
    const rotationsBefore = this.#rotationsCollected.get(owner.userId) ?? 0;
    let token: string;
    try {
      token = (await this.#options.credentials.access(owner.userId, 0)).accessToken;
    } catch (error) {
      this.#unhold(owner.userId);
      throw error;
    }
    let held = true;
    let entry: PooledChannel | undefined;
    let opened: ChildChannel | undefined;
    const release = (): void => {
      if (held) this.#unhold(owner.userId);
      held = false;
    };
    return {
      name,
      open: async (handlers) => {
        const child = await this.#spawn(name, owner, token);
        opened = new ChildChannel(child, {
          log: handlers.log,
          requestTimeoutMs: this.#options.requestTimeoutMs,
          drainGraceMs: this.#options.drainGraceMs,
          onEnded: (reason) => {
            if (entry !== undefined) this.#remove(entry);
            handlers.onEnded(reason);
          },
          onUnrelated: handlers.onUnrelated,
        });
        return opened;
      },
      commit: (options = {}) => {
        release();
        if (opened === undefined || opened.ended || entry !== undefined) return;
        entry = {
          name,
          channel: opened,
          owner,
          lastActive: this.#now(),
          tokenFingerprint: fingerprint(token),
          busy: options.busy ?? (() => false),
        };
        this.#add(entry);
        // A rotation that collected the user's channels while this one was starting missed it.
        if ((this.#rotationsCollected.get(owner.userId) ?? 0) !== rotationsBefore) void this.rotateUser(owner.userId);
      },
      touch: () => {
        if (entry !== undefined) entry.lastActive = this.#now();
      },
      release,
    };
  }

  /** One sweep of the idle reaper: ends channels unused for longer than the idle timeout. Returns how many. */
  async reapIdle(): Promise<number> {
    const cutoff = this.#now() - this.#options.idleTimeoutMs;
    const idle = [...this.#live].filter((entry) => entry.lastActive < cutoff && entry.channel.inflight === 0 && !entry.busy());
    await Promise.all(idle.map((entry) => entry.channel.close('idle')));
    return idle.length;
  }

  /** One sweep of the rotator: every user with channels gets a fresh enough token on every child. */
  async rotateDue(): Promise<void> {
    await Promise.all([...this.#liveByUser.keys()].map((userId) => this.rotateUser(userId, this.#options.refreshLeadMs)));
  }

  /**
   * Moves every channel of a user onto a child that holds the user's current
   * token (refreshed first when it expires within `minValidityMs`). Single
   * flight per user. A credential Forgejo refused for good ends the user's
   * channels, so their next request signs in again.
   *
   * Asked while a rotation of the user is under way, it does not just join
   * it: what prompted the call (a new login, a refresh) may be newer than the
   * token the running rotation took, so one more rotation runs after it (one,
   * however many calls came meanwhile, with the largest validity asked).
   */
  rotateUser(userId: string, minValidityMs = 0): Promise<void> {
    const running = this.#rotations.get(userId);
    if (running === undefined) {
      const rotation = this.#rotate(userId, minValidityMs).finally(() => this.#rotations.delete(userId));
      this.#rotations.set(userId, rotation);
      return rotation;
    }
    const queued = this.#queuedRotations.get(userId);
    if (queued !== undefined) {
      queued.minValidityMs = Math.max(queued.minValidityMs, minValidityMs);
      return queued.done;
    }
    const next = { minValidityMs, done: Promise.resolve() };
    next.done = running
      .catch(() => undefined)
      .then(() => {
        this.#queuedRotations.delete(userId);
        return this.rotateUser(userId, next.minValidityMs);
      });
    this.#queuedRotations.set(userId, next);
    return next.done;
  }

  /** Ends every channel of a user. */
  async endUser(userId: string, reason: string): Promise<void> {
    await Promise.all([...(this.#liveByUser.get(userId) ?? [])].map((entry) => entry.channel.close(reason)));
  }

  /** Runs the idle reaper and the rotator on their intervals until stop(). */
  /**
   * A client of the user's channel `name` opened a stream for the child's
   * messages that belong to no request: a child that holds such a stream only
   * on demand (a shared-upstream session) opens it; resolves once it is open.
   * A channel not live yet (a session this replica takes over by serving
   * that very stream) gets it when it goes live, while `open` is pending.
   */
  async listen(name: string, userId: string, open: Promise<unknown>): Promise<void> {
    for (const entry of this.#liveByUser.get(userId) ?? []) if (entry.name === name) return entry.channel.child.listen?.();
    const pending = { name, userId };
    this.#listenersWaiting.add(pending);
    const drop = (): boolean => this.#listenersWaiting.delete(pending);
    open.then(drop, drop);
  }

  startMaintenance(reapIntervalMs: number, rotateIntervalMs: number): void {
    const reap = setInterval(() => void this.reapIdle(), reapIntervalMs);
    const rotate = setInterval(() => void this.rotateDue(), rotateIntervalMs);
    reap.unref();
    rotate.unref();
    this.#timers.push(reap, rotate);
  }

  /** Ends every live channel and refuses new ones; resolves when every child has exited. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers) clearInterval(timer);
    await Promise.all([...this.#live].map((entry) => entry.channel.close('broker_stopping')));
  }

  async #rotate(userId: string, minValidityMs: number): Promise<void> {
    if (this.#stopped) return;
    let token: string;
    try {
      token = (await this.#options.credentials.access(userId, minValidityMs)).accessToken;
    } catch (error) {
      if (isBrokerError(error, 'credential_revoked')) {
        this.#options.log.warn({ event: 'credential_revoked', userId }, "Forgejo refused the user's credential; ending their sessions");
        this.#options.events?.rotation('revoked');
        await this.endUser(userId, 'credential_revoked');
        return;
      }
      this.#options.log.warn({ event: 'credential_refresh_failed', userId, err: errorMessage(error) }, 'could not refresh; will retry');
      return;
    }
    const target = fingerprint(token);
    // Counted where the channels to move are collected: one that goes live later missed this rotation.
    this.#rotationsCollected.set(userId, (this.#rotationsCollected.get(userId) ?? 0) + 1);
    const stale = [...(this.#liveByUser.get(userId) ?? [])].filter((entry) => entry.tokenFingerprint !== target && !entry.channel.ended);
    await Promise.all(
      stale.map(async (entry) => {
        const child = entry.channel.child;
        if (child.useToken !== undefined) {
          child.useToken(token);
          entry.tokenFingerprint = target;
          this.#options.events?.rotation('followed');
          return;
        }
        try {
          const child = await this.#options.spawn({
            sessionId: entry.name,
            userId,
            forgejoLogin: entry.owner.forgejoLogin,
            forgejoToken: token,
          });
          await entry.channel.swapChild(child);
          entry.tokenFingerprint = target;
          this.#options.events?.rotation('moved');
        } catch (error) {
          this.#options.events?.rotation('failed');
          this.#options.log.error({ event: 'rotation_failed', sessionId: entry.name, err: errorMessage(error) }, 'kept the old child');
        }
      }),
    );
  }

  async #spawn(name: string, owner: ChannelOwner, forgejoToken: string): Promise<Child> {
    try {
      return await this.#options.spawn({ sessionId: name, userId: owner.userId, forgejoLogin: owner.forgejoLogin, forgejoToken });
    } catch (error) {
      this.#options.log.error({ event: 'child_spawn_failed', sessionId: name, err: errorMessage(error) }, 'could not start the MCP server');
      throw new BrokerError('child_failed', 'The MCP server could not be started', { cause: error });
    }
  }

  #hold(userId: string): void {
    const { maxChannels, maxChannelsPerUser } = this.#options;
    if (maxChannels > 0 && this.#live.size + this.#reserved >= maxChannels) {
      throw new BrokerError('capacity', 'The broker holds its maximum number of sessions; try again later');
    }
    const ofUser = (this.#liveByUser.get(userId)?.size ?? 0) + (this.#reservedByUser.get(userId) ?? 0);
    if (maxChannelsPerUser > 0 && ofUser >= maxChannelsPerUser) {
      throw new BrokerError('capacity', 'You have the maximum number of sessions; end one or try again later');
    }
    this.#reserved++;
    this.#reservedByUser.set(userId, (this.#reservedByUser.get(userId) ?? 0) + 1);
  }

  #unhold(userId: string): void {
    this.#reserved--;
    const left = (this.#reservedByUser.get(userId) ?? 1) - 1;
    if (left === 0) this.#reservedByUser.delete(userId);
    else this.#reservedByUser.set(userId, left);
  }

  #add(entry: PooledChannel): void {
    for (const pending of this.#listenersWaiting) {
      if (pending.name !== entry.name || pending.userId !== entry.owner.userId) continue;
      this.#listenersWaiting.delete(pending);
      void entry.channel.child.listen?.();
    }
    this.#live.add(entry);
    let ofUser = this.#liveByUser.get(entry.owner.userId);
    if (ofUser === undefined) this.#liveByUser.set(entry.owner.userId, (ofUser = new Set()));
    ofUser.add(entry);
  }

  #remove(entry: PooledChannel): void {
    this.#live.delete(entry);
    const ofUser = this.#liveByUser.get(entry.owner.userId);
    ofUser?.delete(entry);
    if (ofUser?.size === 0) this.#liveByUser.delete(entry.owner.userId);
  }
}

function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
