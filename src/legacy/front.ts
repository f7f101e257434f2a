import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../auth/principal.js';
import { BrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { SessionEvents } from '../metrics/metrics.js';
import type { ChannelLease, ChannelPool } from '../pool/pool.js';
import { LegacySession } from './session.js';

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
}

interface LiveSession {
  readonly session: LegacySession;
  readonly lease: ChannelLease;
  readonly userId: string;
  readonly grantId: string;
  /** Ends the session unless the client comes back after its initialize; cleared by its next request. */
  initTimer: NodeJS.Timeout | undefined;
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
  #stopped = false;

  readonly #options: LegacyFrontOptions;

  constructor(options: LegacyFrontOptions) {
    this.#options = options;
  }

  /** Number of live sessions. */
  get active(): number {
    return this.#sessions.size;
  }

  /** Session ids of one user, for tests and metrics. */
  sessionIdsOf(userId: string): string[] {
    return [...(this.#sessionsByUser.get(userId) ?? [])];
  }

  /** A live session, for tests. */
  sessionOf(sessionId: string): LegacySession | undefined {
    return this.#sessions.get(sessionId)?.session;
  }

  /**
   * Serves one authenticated `/mcp` request of the legacy era.
   * Throws a BrokerError for every refusal; the HTTP layer renders it.
   */
  async handle(req: IncomingMessage, res: ServerResponse, principal: Principal, body: unknown): Promise<void> {
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
    const live = this.#sessions.get(sessionId);
    if (live === undefined) throw new BrokerError('not_found', 'Session not found');
    if (live.grantId !== principal.grantId || live.userId !== principal.userId) {
      throw new BrokerError('forbidden', 'This session belongs to a different token');
    }
    if (Array.isArray(body)) checkBatchAllowed(live.session);
    live.lease.touch();
    clearTimeout(live.initTimer);
    live.initTimer = undefined;
    await live.session.handle(req, res, body);
  }

  /** Ends a session, as DELETE would. */
  async end(sessionId: string, reason: string): Promise<void> {
    await this.#sessions.get(sessionId)?.session.close(reason);
  }

  /** Ends every session and refuses new ones. */
  async stop(): Promise<void> {
    this.#stopped = true;
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
  async #startSession(req: IncomingMessage, res: ServerResponse, principal: Principal, body: unknown): Promise<void> {
    const sessionId = newSessionId();
    const lease = await this.#options.pool.reserve(principal, sessionId);
    if (this.#stopped) {
      lease.release();
      throw new BrokerError('unavailable', 'The broker is shutting down');
    }
    const log = this.#options.log.child({ sessionId, user: principal.forgejoLogin });
    let registered = false;
    const session: LegacySession = new LegacySession({
      sessionId,
      log,
      openChannel: (handlers) => lease.open({ log, ...handlers }),
      onInitialized: () => {
        this.#starting.delete(session);
        lease.commit();
        this.#register({ session, lease, userId: principal.userId, grantId: principal.grantId, initTimer });
        registered = true;
        log.info({ event: 'session_started', clientId: principal.clientId, pid: session.channel.child.pid }, 'session started');
        this.#options.events?.sessionStarted('legacy');
      },
      onClosed: (reason) => {
        clearTimeout(initTimer);
        this.#starting.delete(session);
        lease.release();
        if (!registered) return;
        this.#remove(sessionId, principal.userId);
        this.#options.events?.sessionEnded('legacy', reason);
      },
    });
    // Covers the whole start: a child that never answers the initialize, a client that never comes back.
    const initTimer = setTimeout(() => void session.close('init_timeout'), this.#options.initTimeoutMs);
    initTimer.unref();
    this.#starting.add(session);
    await session.handle(req, res, body);
    // The transport answered the request itself (406, 415, 400, …): nothing was started.
    if (!session.accepted) await session.close('initialize_rejected');
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

/** 192 random bits, base64url: visible ASCII as the transport spec requires. */
function newSessionId(): string {
  return randomBytes(24).toString('base64url');
}

function isInitializeRequest(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && (body as { method?: unknown }).method === 'initialize';
}
