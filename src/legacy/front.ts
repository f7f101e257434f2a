import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../auth/principal.js';
import { BrokerError, errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { SessionEvents } from '../metrics/metrics.js';
import type { GrantHolder, HolderMatch, LiveSessionView } from '../pool/live-view.js';
import type { ChannelLease, ChannelPool } from '../pool/pool.js';
import type { CallGate, CallerGate } from '../policy/gate.js';
import type { LegacySessionRepository, StoredLegacySession } from '../store/store.js';
import { answerLostStream } from './lost-answers.js';
import { LegacySession, type LegacyBody } from './session.js';
import { hashSessionId, newSessionId } from './session-id.js';

export const SESSION_ID_HEADER = 'mcp-session-id';

/** The first protocol revision without JSON-RPC batches. */
const FIRST_VERSION_WITHOUT_BATCHES = '2025-06-18';

export interface LegacyFrontOptions {
  readonly pool: ChannelPool;
  readonly log: Logger;
  /** A new session must answer its initialize and send one more request within this long, or it ends. */
  readonly initTimeoutMs: number;
  /** Counters for sessions; none in most tests. */
  readonly events?: Pick<SessionEvents, 'sessionStarted' | 'sessionEnded'>;
  /**
   * Shared mode: sessions are state kept here, so that a restarted broker
   * (or another replica) carries one on when its client comes back. Absent:
   * a session lives and dies with this process (its child does too).
   */
  readonly sessionStore?: LegacySessionRepository;
  /** A stored session unused this long is not carried on (the idle timeout). */
  readonly idleTimeoutMs: number;
  /** This replica's id, in front of every session id it mints (`<replica>.<random>`): any replica knows the owner without asking the store. */
  readonly replicaId: string;
  /** The tool policy and the audit log, which every client request passes; none in most tests. */
  readonly gate?: CallGate;
  readonly now?: () => number;
}

/** How often a session's last use is written to the store, at most. */
const STORED_TOUCH_INTERVAL_MS = 60_000;

interface LiveSession extends GrantHolder {
  readonly session: LegacySession;
  readonly lease: ChannelLease;
  readonly gate: CallerGate | undefined;
  readonly startedAt: number;
  /** When a request of the client last came (the Connections page shows it). */
  lastUsedAt: number;
  /** When the store last heard the session was used (shared mode). */
  storedTouchAt: number;
}

/**
 * The legacy era (2025-11-25 and earlier): maps `Mcp-Session-Id` to a
 * session on the SDK transport and its channel from the pool; mints sessions
 * on `initialize` and binds each to the OAuth grant that started it.
 */
export class LegacyFront {
  readonly #sessions = new Map<string, LiveSession>();
  readonly #sessionsByUser = new Map<string, Set<string>>();
  /** Sessions whose initialize has not succeeded yet: not registered, but stopped with the broker. */
  readonly #starting = new Set<LegacySession>();
  /** Stored sessions being carried on, by id: concurrent requests of one client share the adoption. */
  readonly #adopting = new Map<string, Promise<LiveSession | undefined>>();
  /** Ends a new session unless its client comes back after the initialize; cleared by its next request. */
  readonly #initTimers = new Map<LegacySession, NodeJS.Timeout>();
  #stopped = false;
  #sweeper: NodeJS.Timeout | undefined;
  readonly #now: () => number;

  readonly #options: LegacyFrontOptions;

  constructor(options: LegacyFrontOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Number of live sessions. */
  get active(): number {
    return this.#sessions.size;
  }

  /** Session ids of one user, for tests and metrics. */
  sessionIdsOf(userId: string): string[] {
    return [...(this.#sessionsByUser.get(userId) ?? [])];
  }

  /** The user's live sessions on this replica, for their Connections page. */
  sessionsOf(userId: string): LiveSessionView[] {
    return this.sessionIdsOf(userId).flatMap((sessionId) => {
      const live = this.#sessions.get(sessionId);
      return live === undefined
        ? []
        : [
            {
              era: 'legacy' as const,
              sessionIdHash: hashSessionId(sessionId),
              clientId: live.clientId,
              grantId: live.grantId,
              startedAt: live.startedAt,
              lastUsedAt: live.lastUsedAt,
            },
          ];
    });
  }

  /** Ends the live sessions whose grant `match` accepts (a revocation); returns how many. */
  async endWhere(match: HolderMatch, reason: string): Promise<number> {
    const ending = [...this.#sessions.values()].filter((live) => match(live));
    await Promise.all(ending.map((live) => live.session.close(reason)));
    return ending.length;
  }

  /** A live session, for tests. */
  sessionOf(sessionId: string): LegacySession | undefined {
    return this.#sessions.get(sessionId)?.session;
  }

  /**
   * Serves one authenticated `/mcp` request of the legacy era.
   * Throws a BrokerError for every refusal; the HTTP layer renders it.
   */
  async handle(req: IncomingMessage, res: ServerResponse, principal: Principal, body: LegacyBody): Promise<void> {
    if (this.#stopped) throw new BrokerError('unavailable', 'The broker is shutting down');
    const header = req.headers[SESSION_ID_HEADER];
    const sessionId = Array.isArray(header) ? header[0] : header;
    if (sessionId === undefined || sessionId === '') {
      if (req.method === 'POST' && isInitializeRequest(body)) {
        await this.#startSession(req, res, principal, body);
        return;
      }
      throw new BrokerError('bad_request', 'Bad Request: Mcp-Session-Id header is required; start a session with initialize');
    }
    const live = this.#sessions.get(sessionId) ?? (await this.#adopt(sessionId, principal));
    if (live === undefined) {
      // The resumption of a stream whose process died: its calls get their error now, then the session answers 404.
      if (answerLostStream(req, res)) return;
      throw new BrokerError('not_found', 'Session not found');
    }
    if (live.grantId !== principal.grantId || live.userId !== principal.userId) {
      throw new BrokerError('forbidden', 'This session belongs to a different token');
    }
    if (Array.isArray(body)) checkBatchAllowed(live.session);
    live.lease.touch();
    live.lastUsedAt = this.#now();
    await live.gate?.refresh();
    this.#touchStored(live);
    clearTimeout(this.#initTimers.get(live.session));
    this.#initTimers.delete(live.session);
    // The broker began to stop during the awaits above and its sessions are ending: "stopping", not "not found",
    // so a replica that forwarded this request here carries the session on instead of passing a 404 to its client.
    if (this.#stopped) throw new BrokerError('unavailable', 'The broker is shutting down');
    await live.session.handle(req, res, body);
  }

  /** Whether this replica holds the session now. */
  holds(sessionId: string): boolean {
    return this.#sessions.has(sessionId);
  }

  /**
   * Shared mode: the replica that carries on a session whose first owner is
   * gone. The store names it; when the one it names cannot be reached either,
   * this replica claims it (or `claimant`, for a stopping replica handing its
   * sessions on; of several trying at once, one wins). Undefined when the
   * store has no such session.
   */
  async carrierOf(
    sessionId: string,
    reachable: (replicaId: string) => boolean,
    claimant: string = this.#options.replicaId,
  ): Promise<string | undefined> {
    const store = this.#options.sessionStore;
    if (store === undefined) return undefined;
    const hash = hashSessionId(sessionId);
    const stored = await store.find(hash);
    if (stored === undefined) return undefined;
    if (stored.ownerReplica === claimant || reachable(stored.ownerReplica)) return stored.ownerReplica;
    if (await store.claim(hash, stored.ownerReplica, claimant)) return claimant;
    return (await store.find(hash))?.ownerReplica;
  }

  /** Ends a session, as DELETE would. */
  async end(sessionId: string, reason: string): Promise<void> {
    await this.#sessions.get(sessionId)?.session.close(reason);
  }

  /** Shared mode: forgets stored sessions whose clients stopped coming (whichever broker process served them), every interval until stop(). */
  startMaintenance(intervalMs: number): void {
    const store = this.#options.sessionStore;
    if (store === undefined) return;
    this.#sweeper = setInterval(() => {
      store.deleteUnusedSince(this.#now() - this.#options.idleTimeoutMs).catch((error: unknown) => this.#storeFailed('sweep', error));
    }, intervalMs);
    this.#sweeper.unref();
  }

  /** Ends every session and refuses new ones. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#sweeper);
    await Promise.all([
      ...[...this.#starting].map((session) => session.close('broker_stopping')),
      ...[...this.#sessions.keys()].map((sessionId) => this.end(sessionId, 'broker_stopping')),
    ]);
  }

  /**
   * Starts a session for an initialize. It is registered (and its channel
   * goes live in the pool) only once the child answered the initialize with
   * success; a request the transport refuses never starts a child, and one
   * the child refuses stops it again. Until then it holds a reservation in
   * the pool. The Forgejo token is read first, so a credential Forgejo
   * refused is a 401 before the transport runs.
   */
  async #startSession(req: IncomingMessage, res: ServerResponse, principal: Principal, body: LegacyBody): Promise<void> {
    const sessionId = `${this.#options.replicaId}.${newSessionId()}`;
    const { session } = await this.#newSession(sessionId, principal, (live) => this.#store(live, principal, body));
    // Covers the whole start: a child that never answers the initialize, a client that never comes back.
    const initTimer = setTimeout(() => void session.close('init_timeout'), this.#options.initTimeoutMs);
    initTimer.unref();
    this.#initTimers.set(session, initTimer);
    await session.handle(req, res, body);
    // The transport answered the request itself (406, 415, 400, …): nothing was started.
    if (!session.accepted) await session.close('initialize_rejected');
  }

  /**
   * A session the pool holds a place for, registered once its initialize
   * succeeded (then `onStarted` runs), removed (and forgotten by the store,
   * unless the broker is only stopping) when it ends.
   */
  async #newSession(
    sessionId: string,
    principal: Principal,
    onStarted: (live: LiveSession) => void,
  ): Promise<{ session: LegacySession; lease: ChannelLease }> {
    const lease = await this.#options.pool.reserve(principal, sessionId);
    if (this.#stopped) {
      lease.release();
      throw new BrokerError('unavailable', 'The broker is shutting down');
    }
    const log = this.#options.log.child({ sessionId, user: principal.forgejoLogin });
    let gate: CallerGate | undefined;
    try {
      gate = await this.#options.gate?.caller(principal, 'legacy', sessionId);
    } catch (error) {
      lease.release();
      throw error;
    }
    let registered = false;
    const session: LegacySession = new LegacySession({
      sessionId,
      log,
      openChannel: (handlers) => lease.open({ log, ...handlers }),
      ...(gate === undefined ? {} : { guard: (request, sink) => gate.pass(request, sink) }),
      onInitialized: () => {
        this.#starting.delete(session);
        lease.commit();
        const now = this.#now();
        const live: LiveSession = {
          session,
          lease,
          userId: principal.userId,
          clientId: principal.clientId,
          grantId: principal.grantId,
          gate,
          startedAt: now,
          lastUsedAt: now,
          storedTouchAt: now,
        };
        this.#register(live);
        registered = true;
        log.info({ event: 'session_started', clientId: principal.clientId, pid: session.channel.child.pid }, 'session started');
        this.#options.events?.sessionStarted('legacy');
        onStarted(live);
      },
      onClosed: (reason) => {
        clearTimeout(this.#initTimers.get(session));
        this.#initTimers.delete(session);
        this.#starting.delete(session);
        lease.release();
        if (!registered) return;
        this.#remove(sessionId, principal.userId);
        this.#options.events?.sessionEnded('legacy', reason);
        // A broker that only stops leaves its sessions to the next one (or another replica).
        if (reason !== 'broker_stopping') this.#forgetStored(sessionId);
      },
    });
    this.#starting.add(session);
    return { session, lease };
  }

  /** Shared mode: a session unknown here may be one another broker process started; carried on when the store has it. */
  #adopt(sessionId: string, principal: Principal): Promise<LiveSession | undefined> {
    const store = this.#options.sessionStore;
    if (store === undefined) return Promise.resolve(undefined);
    let adopting = this.#adopting.get(sessionId);
    if (adopting === undefined) {
      adopting = this.#adoptStored(store, sessionId, principal).finally(() => this.#adopting.delete(sessionId));
      this.#adopting.set(sessionId, adopting);
    }
    return adopting;
  }

  async #adoptStored(store: LegacySessionRepository, sessionId: string, principal: Principal): Promise<LiveSession | undefined> {
    const stored = await store.find(hashSessionId(sessionId));
    if (stored === undefined) return undefined;
    if (stored.lastUsedAt < this.#now() - this.#options.idleTimeoutMs) {
      await store.delete(stored.sessionIdHash);
      return undefined;
    }
    // Another grant's session: refused as a live one would be, without starting anything.
    if (stored.grantId !== principal.grantId || stored.userId !== principal.userId) {
      throw new BrokerError('forbidden', 'This session belongs to a different token');
    }
    const { session } = await this.#newSession(sessionId, principal, () => undefined);
    let adopted = false;
    try {
      adopted = await session.adopt(JSON.parse(stored.initializeParams) as unknown, stored.protocolVersion);
    } catch (error) {
      this.#options.log.warn({ event: 'session_adopt_failed', err: errorMessage(error) }, 'could not carry the session on');
    }
    if (!adopted) {
      await session.close('adopt_failed');
      return undefined;
    }
    this.#options.log.info({ event: 'session_adopted', sessionId, user: principal.forgejoLogin }, 'carried a stored session on');
    return this.#sessions.get(sessionId);
  }

  /** Shared mode: the new session is written down, for a restarted broker or another replica to carry on. */
  #store(live: LiveSession, principal: Principal, initialize: unknown): void {
    const store = this.#options.sessionStore;
    const protocolVersion = live.session.channel.protocolVersion;
    if (store === undefined || protocolVersion === undefined) return;
    const now = this.#now();
    const record: StoredLegacySession = {
      sessionIdHash: hashSessionId(live.session.sessionId),
      userId: principal.userId,
      forgejoLogin: principal.forgejoLogin,
      grantId: principal.grantId,
      clientId: principal.clientId,
      initializeParams: JSON.stringify((initialize as { params?: unknown }).params ?? {}),
      protocolVersion,
      createdAt: now,
      lastUsedAt: now,
      ownerReplica: this.#options.replicaId,
    };
    store.save(record).catch((error: unknown) => this.#storeFailed('save', error));
  }

  #touchStored(live: LiveSession): void {
    const store = this.#options.sessionStore;
    const now = this.#now();
    // Often enough that a session in use is never swept as idle, seldom enough to cost nothing per request.
    if (store === undefined || now - live.storedTouchAt < Math.min(STORED_TOUCH_INTERVAL_MS, this.#options.idleTimeoutMs / 4)) return;
    live.storedTouchAt = now;
    store.touch(hashSessionId(live.session.sessionId), now).catch((error: unknown) => this.#storeFailed('touch', error));
  }

  #forgetStored(sessionId: string): void {
    this.#options.sessionStore?.delete(hashSessionId(sessionId)).catch((error: unknown) => this.#storeFailed('delete', error));
  }

  #storeFailed(operation: string, error: unknown): void {
    this.#options.log.warn({ event: 'session_store_failed', operation, err: errorMessage(error) }, 'could not record the session');
  }

  #register(live: LiveSession): void {
    const sessionId = live.session.sessionId;
    this.#sessions.set(sessionId, live);
    let ofUser = this.#sessionsByUser.get(live.userId);
    if (ofUser === undefined) this.#sessionsByUser.set(live.userId, (ofUser = new Set()));
    ofUser.add(sessionId);
  }

  #remove(sessionId: string, userId: string): void {
    if (!this.#sessions.delete(sessionId)) return;
    const ofUser = this.#sessionsByUser.get(userId);
    ofUser?.delete(sessionId);
    if (ofUser?.size === 0) this.#sessionsByUser.delete(userId);
  }
}

function checkBatchAllowed(session: LegacySession): void {
  const version = session.channel.protocolVersion;
  if (version !== undefined && version >= FIRST_VERSION_WITHOUT_BATCHES) {
    throw new BrokerError('bad_request', `Invalid Request: JSON-RPC batches are not allowed in protocol version ${version}`);
  }
}

function isInitializeRequest(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && (body as { method?: unknown }).method === 'initialize';
}
