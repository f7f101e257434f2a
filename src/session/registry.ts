import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EventStore } from '@modelcontextprotocol/server';
import type { ForgejoCredentials, Principal } from '../auth/principal.js';
import { SessionBridge } from '../bridge/bridge.js';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { SpawnFunc } from '../supervisor/child.js';

export const SESSION_ID_HEADER = 'mcp-session-id';

/** The first protocol revision without JSON-RPC batches. */
const FIRST_VERSION_WITHOUT_BATCHES = '2025-06-18';

export interface RegistryOptions {
  readonly spawn: SpawnFunc;
  readonly credentials: ForgejoCredentials;
  readonly log: Logger;
  /** 0 means unlimited. */
  readonly maxSessions: number;
  /** 0 means unlimited. */
  readonly maxSessionsPerUser: number;
  readonly idleTimeoutMs: number;
  /** Refresh a Forgejo token when it expires within this long. */
  readonly refreshLeadMs: number;
  readonly requestTimeoutMs: number;
  readonly drainGraceMs: number;
  /** Seconds a client is told to wait when the broker is full. */
  readonly retryAfterSeconds: number;
  readonly eventStore?: () => EventStore;
  readonly now?: () => number;
}

interface Session {
  readonly bridge: SessionBridge;
  readonly userId: string;
  readonly forgejoLogin: string;
  readonly grantId: string;
  lastActive: number;
  /** SHA-256 of the Forgejo token the current child holds. */
  tokenFingerprint: string;
}

/**
 * Maps `Mcp-Session-Id` to a bridge and its child: mints sessions on
 * `initialize`, enforces caps and the binding of a session to its OAuth
 * grant, reaps idle sessions and moves a user's sessions onto children with
 * that user's newest Forgejo token.
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  private readonly sessionsByUser = new Map<string, Set<string>>();
  /** Sessions being spawned, counted against the caps so a burst cannot overshoot them. */
  private starting = 0;
  private readonly startingByUser = new Map<string, number>();
  private readonly rotations = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Number of live sessions. */
  get active(): number {
    return this.sessions.size;
  }

  /** Session ids of one user, for tests and metrics. */
  sessionIdsOf(userId: string): string[] {
    return [...(this.sessionsByUser.get(userId) ?? [])];
  }

  /** The bridge of a session, for tests and metrics. */
  bridgeOf(sessionId: string): SessionBridge | undefined {
    return this.sessions.get(sessionId)?.bridge;
  }

  lastActive(sessionId: string): number | undefined {
    return this.sessions.get(sessionId)?.lastActive;
  }

  /**
   * Serves one authenticated `/mcp` request of the legacy (session) era.
   * Throws a BrokerError for every refusal; the HTTP layer renders it.
   */
  async handle(req: IncomingMessage, res: ServerResponse, principal: Principal, body: unknown): Promise<void> {
    if (this.stopped) throw new BrokerError('unavailable', 'The broker is shutting down');
    const header = req.headers[SESSION_ID_HEADER];
    const sessionId = Array.isArray(header) ? header[0] : header;
    if (sessionId === undefined || sessionId === '') {
      if (req.method === 'POST' && isInitializeRequest(body)) {
        await this.startSession(req, res, principal, body);
        return;
      }
      throw new BrokerError('bad_request', 'Bad Request: Mcp-Session-Id header is required; start a session with initialize');
    }
    const session = this.sessions.get(sessionId);
    if (session === undefined) throw new BrokerError('not_found', 'Session not found');
    if (session.grantId !== principal.grantId || session.userId !== principal.userId) {
      throw new BrokerError('forbidden', 'This session belongs to a different token');
    }
    if (Array.isArray(body)) this.checkBatchAllowed(session);
    session.lastActive = this.now();
    await session.bridge.handle(req, res, body);
  }

  private checkBatchAllowed(session: Session): void {
    const version = session.bridge.channel.protocolVersion;
    if (version !== undefined && version >= FIRST_VERSION_WITHOUT_BATCHES) {
      throw new BrokerError('bad_request', `Invalid Request: JSON-RPC batches are not allowed in protocol version ${version}`);
    }
  }

  private async startSession(req: IncomingMessage, res: ServerResponse, principal: Principal, body: unknown): Promise<void> {
    this.reserve(principal.userId);
    let session: Session;
    try {
      session = await this.spawnSession(principal);
    } finally {
      this.unreserve(principal.userId);
    }
    await session.bridge.handle(req, res, body);
  }

  private reserve(userId: string): void {
    const { maxSessions, maxSessionsPerUser } = this.options;
    if (maxSessions > 0 && this.sessions.size + this.starting >= maxSessions) {
      throw new BrokerError('capacity', 'The broker holds its maximum number of sessions; try again later');
    }
    const ofUser = (this.sessionsByUser.get(userId)?.size ?? 0) + (this.startingByUser.get(userId) ?? 0);
    if (maxSessionsPerUser > 0 && ofUser >= maxSessionsPerUser) {
      throw new BrokerError('capacity', 'You have the maximum number of sessions; end one or try again later');
    }
    this.starting++;
    this.startingByUser.set(userId, (this.startingByUser.get(userId) ?? 0) + 1);
  }

  private unreserve(userId: string): void {
    this.starting--;
    const left = (this.startingByUser.get(userId) ?? 1) - 1;
    if (left === 0) this.startingByUser.delete(userId);
    else this.startingByUser.set(userId, left);
  }

  private async spawnSession(principal: Principal): Promise<Session> {
    const sessionId = newSessionId();
    const access = await this.options.credentials.access(principal.userId, 0);
    const log = this.options.log.child({ sessionId, user: principal.forgejoLogin });
    let child;
    try {
      child = await this.options.spawn({
        sessionId,
        userId: principal.userId,
        forgejoLogin: principal.forgejoLogin,
        forgejoToken: access.accessToken,
      });
    } catch (error) {
      log.error({ event: 'child_spawn_failed', err: errorMessage(error) }, 'could not start the MCP server');
      throw new BrokerError('child_failed', 'The MCP server could not be started', { cause: error });
    }
    const bridge = new SessionBridge(child, {
      sessionId,
      log,
      requestTimeoutMs: this.options.requestTimeoutMs,
      drainGraceMs: this.options.drainGraceMs,
      eventStore: this.options.eventStore?.(),
      onClosed: () => this.remove(sessionId),
    });
    const session: Session = {
      bridge,
      userId: principal.userId,
      forgejoLogin: principal.forgejoLogin,
      grantId: principal.grantId,
      lastActive: this.now(),
      tokenFingerprint: fingerprint(access.accessToken),
    };
    this.sessions.set(sessionId, session);
    let ofUser = this.sessionsByUser.get(principal.userId);
    if (ofUser === undefined) this.sessionsByUser.set(principal.userId, (ofUser = new Set()));
    ofUser.add(sessionId);
    log.info({ event: 'session_started', clientId: principal.clientId, pid: child.pid }, 'session started');
    if (this.stopped) await bridge.close('broker_stopping');
    return session;
  }

  private remove(sessionId: string): void {
    const session = this.sessions.get(sessionId);
    if (session === undefined) return;
    this.sessions.delete(sessionId);
    const ofUser = this.sessionsByUser.get(session.userId);
    ofUser?.delete(sessionId);
    if (ofUser?.size === 0) this.sessionsByUser.delete(session.userId);
  }

  /** Ends a session, as DELETE would. */
  async end(sessionId: string, reason: string): Promise<void> {
    await this.sessions.get(sessionId)?.bridge.close(reason);
  }

  /** One sweep of the idle reaper: ends sessions unused for longer than the idle timeout. Returns how many. */
  async reapIdle(): Promise<number> {
    const cutoff = this.now() - this.options.idleTimeoutMs;
    const idle = [...this.sessions.entries()].filter(([, s]) => s.lastActive < cutoff && s.bridge.channel.inflight === 0);
    await Promise.all(idle.map(([sessionId]) => this.end(sessionId, 'idle')));
    return idle.length;
  }

  /** One sweep of the rotator: every user with sessions gets a fresh enough token on every child. */
  async rotateDue(): Promise<void> {
    await Promise.all([...this.sessionsByUser.keys()].map((userId) => this.rotateUser(userId, this.options.refreshLeadMs)));
  }

  /**
   * Moves every session of a user onto a child that holds the user's current
   * token (refreshed first when it expires within `minValidityMs`). Single
   * flight per user. A credential Forgejo refused for good ends the user's
   * sessions, so their next request signs in again.
   */
  rotateUser(userId: string, minValidityMs = 0): Promise<void> {
    const running = this.rotations.get(userId);
    if (running !== undefined) return running;
    const rotation = this.rotate(userId, minValidityMs).finally(() => this.rotations.delete(userId));
    this.rotations.set(userId, rotation);
    return rotation;
  }

  private async rotate(userId: string, minValidityMs: number): Promise<void> {
    let access;
    try {
      access = await this.options.credentials.access(userId, minValidityMs);
    } catch (error) {
      if (isBrokerError(error, 'credential_revoked')) {
        this.options.log.warn({ event: 'credential_revoked', userId }, "Forgejo refused the user's credential; ending their sessions");
        await this.endUser(userId, 'credential_revoked');
        return;
      }
      this.options.log.warn({ event: 'credential_refresh_failed', userId, err: errorMessage(error) }, 'could not refresh; will retry');
      return;
    }
    const target = fingerprint(access.accessToken);
    const stale = this.sessionIdsOf(userId)
      .map((sessionId) => [sessionId, this.sessions.get(sessionId)] as const)
      .filter((entry): entry is readonly [string, Session] => entry[1] !== undefined && entry[1].tokenFingerprint !== target);
    await Promise.all(
      stale.map(async ([sessionId, session]) => {
        try {
          const child = await this.options.spawn({
            sessionId,
            userId,
            forgejoLogin: session.forgejoLogin,
            forgejoToken: access.accessToken,
          });
          await session.bridge.channel.swapChild(child);
          session.tokenFingerprint = target;
        } catch (error) {
          this.options.log.error({ event: 'rotation_failed', sessionId, err: errorMessage(error) }, 'session kept its old child');
        }
      }),
    );
  }

  /** Ends every session of a user. */
  async endUser(userId: string, reason: string): Promise<void> {
    await Promise.all(this.sessionIdsOf(userId).map((sessionId) => this.end(sessionId, reason)));
  }

  /** Client requests waiting for a child's answer, across all sessions. */
  get inflight(): number {
    let count = 0;
    for (const session of this.sessions.values()) count += session.bridge.channel.inflight;
    return count;
  }

  /** Runs the idle reaper and the rotator on their intervals until stop(). */
  startMaintenance(reapIntervalMs: number, rotateIntervalMs: number): void {
    const reap = setInterval(() => void this.reapIdle(), reapIntervalMs);
    const rotate = setInterval(() => void this.rotateDue(), rotateIntervalMs);
    reap.unref();
    rotate.unref();
    this.timers.push(reap, rotate);
  }

  /** Ends every session and refuses new ones; resolves when every child has exited. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all([...this.sessions.keys()].map((sessionId) => this.end(sessionId, 'broker_stopping')));
  }
}

/** 192 random bits, base64url: visible ASCII as the transport spec requires. */
function newSessionId(): string {
  return randomBytes(24).toString('base64url');
}

function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function isInitializeRequest(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && (body as { method?: unknown }).method === 'initialize';
}
