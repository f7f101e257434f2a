import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Implementation, InitializeResult, JSONRPCRequest, LoggingLevel, Tool } from '@modelcontextprotocol/server';
import { isJSONRPCErrorResponse, isJSONRPCRequest, isJSONRPCResultResponse, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/server';
import type { ForgejoCredentials, Principal } from '../auth/principal.js';
import { SessionBridge } from '../bridge/bridge.js';
import { ChildChannel, type ClientResponse } from '../bridge/channel.js';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { SessionEvents } from '../metrics/metrics.js';
import type { Child, SpawnFunc } from '../supervisor/child.js';
import { LOG_SEVERITY, type UserChannel } from './user-channel.js';

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
  /** A new session must answer its initialize and send one more request within this long, or it ends. */
  readonly initTimeoutMs: number;
  /** Refresh a Forgejo token when it expires within this long. */
  readonly refreshLeadMs: number;
  readonly requestTimeoutMs: number;
  readonly drainGraceMs: number;
  /** Seconds a client is told to wait when the broker is full. */
  readonly retryAfterSeconds: number;
  readonly now?: () => number;
  /** Counters for sessions and rotations; none in most tests. */
  readonly events?: SessionEvents;
}

/** What the rotator and the reaper need of a legacy session or a user's modern channel. */
interface ChannelEntry {
  readonly channel: ChildChannel;
  readonly userId: string;
  readonly forgejoLogin: string;
  lastActive: number;
  /** SHA-256 of the Forgejo token the current child holds. */
  tokenFingerprint: string;
}

interface Session extends ChannelEntry {
  readonly bridge: SessionBridge;
  readonly grantId: string;
  /** Ends the session unless the client comes back after its initialize; cleared by its next request. */
  initTimer: NodeJS.Timeout | undefined;
}

/**
 * The capabilities the broker declares to a user's modern child: everything
 * it can translate into the modern era's input requests, so the child may ask;
 * a request whose client lacks one is refused at the broker.
 */
const MODERN_CHILD_CAPABILITIES = { elicitation: { form: {}, url: {} }, sampling: {}, roots: { listChanged: true } };

/**
 * Maps `Mcp-Session-Id` to a bridge and its child: mints sessions on
 * `initialize`, enforces caps and the binding of a session to its OAuth
 * grant, reaps idle sessions and moves a user's sessions onto children with
 * that user's newest Forgejo token.
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  private readonly userChannels = new Map<string, UserChannel>();
  /**
   * Rotations that collected a user's channels to move, per user. A channel that
   * was starting meanwhile was not among them, and may hold the token they replaced.
   */
  private readonly rotationsCollected = new Map<string, number>();
  private readonly startingUserChannels = new Map<string, Promise<UserChannel>>();
  private readonly sessionsByUser = new Map<string, Set<string>>();
  /** Sessions whose initialize has not succeeded yet: not registered, but stopped with the broker. */
  private readonly startingSessions = new Set<SessionBridge>();
  /** Sessions being started, counted against the caps so a burst cannot overshoot them. */
  private starting = 0;
  private readonly startingByUser = new Map<string, number>();
  private readonly rotations = new Map<string, Promise<void>>();
  /** The one rotation per user that runs after the current one, for calls that came during it. */
  private readonly queuedRotations = new Map<string, { minValidityMs: number; done: Promise<void> }>();
  private readonly now: () => number;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Number of live legacy sessions. */
  get active(): number {
    return this.sessions.size;
  }

  /** Number of users with a live modern channel. */
  get activeUserChannels(): number {
    return this.userChannels.size;
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
    clearTimeout(session.initTimer);
    session.initTimer = undefined;
    await session.bridge.handle(req, res, body);
  }

  private checkBatchAllowed(session: Session): void {
    const version = session.bridge.channel.protocolVersion;
    if (version !== undefined && version >= FIRST_VERSION_WITHOUT_BATCHES) {
      throw new BrokerError('bad_request', `Invalid Request: JSON-RPC batches are not allowed in protocol version ${version}`);
    }
  }

  /**
   * Starts a session for an initialize. It is registered (and counts as a
   * session) only once the child answered the initialize with success; a
   * request the transport refuses never starts a child, and one the child
   * refuses stops it again. Until it is registered it holds a reservation
   * against the caps.
   */
  private async startSession(req: IncomingMessage, res: ServerResponse, principal: Principal, body: unknown): Promise<void> {
    this.reserve(principal.userId);
    let reserved = true;
    const release = (): void => {
      if (reserved) this.unreserve(principal.userId);
      reserved = false;
    };
    let bridge: SessionBridge;
    try {
      bridge = await this.newSession(principal, release);
    } catch (error) {
      release();
      throw error;
    }
    await bridge.handle(req, res, body);
    // The transport answered the request itself (406, 415, 400, …): nothing was started.
    if (!bridge.accepted) await bridge.close('initialize_rejected');
  }

  private reserve(userId: string): void {
    const { maxSessions, maxSessionsPerUser } = this.options;
    if (maxSessions > 0 && this.sessions.size + this.userChannels.size + this.starting >= maxSessions) {
      throw new BrokerError('capacity', 'The broker holds its maximum number of sessions; try again later');
    }
    const ofUser =
      (this.sessionsByUser.get(userId)?.size ?? 0) + (this.userChannels.has(userId) ? 1 : 0) + (this.startingByUser.get(userId) ?? 0);
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

  /** Starts a child with the user's current Forgejo token. */
  private async spawnChild(sessionId: string, principal: Pick<Principal, 'userId' | 'forgejoLogin'>): Promise<{ child: Child; fingerprint: string }> {
    const access = await this.options.credentials.access(principal.userId, 0);
    const child = await this.spawnWithToken(sessionId, principal, access.accessToken);
    return { child, fingerprint: fingerprint(access.accessToken) };
  }

  private async spawnWithToken(sessionId: string, principal: Pick<Principal, 'userId' | 'forgejoLogin'>, forgejoToken: string): Promise<Child> {
    try {
      return await this.options.spawn({ sessionId, userId: principal.userId, forgejoLogin: principal.forgejoLogin, forgejoToken });
    } catch (error) {
      this.options.log.error({ event: 'child_spawn_failed', sessionId, err: errorMessage(error) }, 'could not start the MCP server');
      throw new BrokerError('child_failed', 'The MCP server could not be started', { cause: error });
    }
  }

  /**
   * A session's bridge, its child not started yet. The Forgejo token is read
   * now, so a credential Forgejo refused is a 401 before the transport runs.
   */
  private async newSession(principal: Principal, release: () => void): Promise<SessionBridge> {
    const sessionId = newSessionId();
    const log = this.options.log.child({ sessionId, user: principal.forgejoLogin });
    const rotationsBefore = this.rotationsCollected.get(principal.userId) ?? 0;
    const access = await this.options.credentials.access(principal.userId, 0);
    let registered: Session | undefined;
    const bridge: SessionBridge = new SessionBridge({
      sessionId,
      log,
      requestTimeoutMs: this.options.requestTimeoutMs,
      drainGraceMs: this.options.drainGraceMs,
      startChild: () => this.spawnWithToken(sessionId, principal, access.accessToken),
      onInitialized: () => {
        this.startingSessions.delete(bridge);
        release();
        registered = this.register(bridge, principal, fingerprint(access.accessToken), initTimer, log);
        this.catchUpRotations(principal.userId, rotationsBefore);
      },
      onClosed: (reason) => {
        clearTimeout(initTimer);
        this.startingSessions.delete(bridge);
        release();
        if (registered === undefined) return;
        this.remove(sessionId);
        this.options.events?.sessionEnded('legacy', reason);
      },
    });
    // Covers the whole start: a child that never answers the initialize, a client that never comes back.
    const initTimer = setTimeout(() => void bridge.close('init_timeout'), this.options.initTimeoutMs);
    initTimer.unref();
    this.startingSessions.add(bridge);
    if (this.stopped) {
      await bridge.close('broker_stopping');
      throw new BrokerError('unavailable', 'The broker is shutting down');
    }
    return bridge;
  }

  private register(bridge: SessionBridge, principal: Principal, tokenFingerprint: string, initTimer: NodeJS.Timeout, log: Logger): Session {
    const session: Session = {
      bridge,
      channel: bridge.channel,
      userId: principal.userId,
      forgejoLogin: principal.forgejoLogin,
      grantId: principal.grantId,
      lastActive: this.now(),
      tokenFingerprint,
      initTimer,
    };
    this.sessions.set(bridge.sessionId, session);
    let ofUser = this.sessionsByUser.get(principal.userId);
    if (ofUser === undefined) this.sessionsByUser.set(principal.userId, (ofUser = new Set()));
    ofUser.add(bridge.sessionId);
    log.info({ event: 'session_started', clientId: principal.clientId, pid: bridge.channel.child.pid }, 'session started');
    this.options.events?.sessionStarted('legacy');
    return session;
  }

  /** Rotates a user again if a rotation collected their channels while this one was starting. */
  private catchUpRotations(userId: string, rotationsBefore: number): void {
    if ((this.rotationsCollected.get(userId) ?? 0) !== rotationsBefore) void this.rotateUser(userId);
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
    const idle = [...this.sessions.entries()].filter(([, s]) => s.lastActive < cutoff && s.channel.inflight === 0);
    const idleUsers = [...this.userChannels.values()].filter((u) => u.lastActive < cutoff && u.channel.inflight === 0 && u.listeners.size === 0);
    await Promise.all([...idle.map(([sessionId]) => this.end(sessionId, 'idle')), ...idleUsers.map((u) => u.channel.close('idle'))]);
    return idle.length + idleUsers.length;
  }

  /** One sweep of the rotator: every user with sessions gets a fresh enough token on every child. */
  async rotateDue(): Promise<void> {
    const users = new Set([...this.sessionsByUser.keys(), ...this.userChannels.keys()]);
    await Promise.all([...users].map((userId) => this.rotateUser(userId, this.options.refreshLeadMs)));
  }

  /**
   * Moves every session of a user onto a child that holds the user's current
   * token (refreshed first when it expires within `minValidityMs`). Single
   * flight per user. A credential Forgejo refused for good ends the user's
   * sessions, so their next request signs in again.
   *
   * Asked while a rotation of the user is under way, it does not just join
   * it: what prompted the call (a new login, a refresh) may be newer than the
   * token the running rotation took, so one more rotation runs after it (one,
   * however many calls came meanwhile, with the largest validity asked).
   */
  rotateUser(userId: string, minValidityMs = 0): Promise<void> {
    const running = this.rotations.get(userId);
    if (running === undefined) {
      const rotation = this.rotate(userId, minValidityMs).finally(() => this.rotations.delete(userId));
      this.rotations.set(userId, rotation);
      return rotation;
    }
    const queued = this.queuedRotations.get(userId);
    if (queued !== undefined) {
      queued.minValidityMs = Math.max(queued.minValidityMs, minValidityMs);
      return queued.done;
    }
    const next = { minValidityMs, done: Promise.resolve() };
    next.done = running.catch(() => undefined).then(() => {
      this.queuedRotations.delete(userId);
      return this.rotateUser(userId, next.minValidityMs);
    });
    this.queuedRotations.set(userId, next);
    return next.done;
  }

  private async rotate(userId: string, minValidityMs: number): Promise<void> {
    if (this.stopped) return;
    let access;
    try {
      access = await this.options.credentials.access(userId, minValidityMs);
    } catch (error) {
      if (isBrokerError(error, 'credential_revoked')) {
        this.options.log.warn({ event: 'credential_revoked', userId }, "Forgejo refused the user's credential; ending their sessions");
        this.options.events?.rotation('revoked');
        await this.endUser(userId, 'credential_revoked');
        return;
      }
      this.options.log.warn({ event: 'credential_refresh_failed', userId, err: errorMessage(error) }, 'could not refresh; will retry');
      return;
    }
    const target = fingerprint(access.accessToken);
    // Counted where the channels to move are collected: one that registers later missed this rotation.
    this.rotationsCollected.set(userId, (this.rotationsCollected.get(userId) ?? 0) + 1);
    const entries: [string, ChannelEntry][] = this.sessionIdsOf(userId).flatMap((sessionId) => {
      const session = this.sessions.get(sessionId);
      return session === undefined ? [] : [[sessionId, session] as [string, ChannelEntry]];
    });
    const modern = this.userChannels.get(userId);
    if (modern !== undefined) entries.push([`modern:${userId}`, modern]);
    await Promise.all(
      entries
        .filter(([, entry]) => entry.tokenFingerprint !== target && !entry.channel.ended)
        .map(async ([name, entry]) => {
          try {
            const child = await this.options.spawn({ sessionId: name, userId, forgejoLogin: entry.forgejoLogin, forgejoToken: access.accessToken });
            await entry.channel.swapChild(child);
            entry.tokenFingerprint = target;
            this.options.events?.rotation('moved');
          } catch (error) {
            this.options.events?.rotation('failed');
            this.options.log.error({ event: 'rotation_failed', sessionId: name, err: errorMessage(error) }, 'kept the old child');
          }
        }),
    );
  }

  /** Ends every session of a user. */
  async endUser(userId: string, reason: string): Promise<void> {
    await Promise.all([...this.sessionIdsOf(userId).map((sessionId) => this.end(sessionId, reason)), this.userChannels.get(userId)?.channel.close(reason)]);
  }

  /** Client requests waiting for a child's answer, across all sessions. */
  get inflight(): number {
    let count = 0;
    for (const session of this.sessions.values()) count += session.channel.inflight;
    for (const user of this.userChannels.values()) count += user.channel.inflight;
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
    await Promise.all([
      ...[...this.startingSessions].map((bridge) => bridge.close('broker_stopping')),
      ...[...this.sessions.keys()].map((sessionId) => this.end(sessionId, 'broker_stopping')),
      ...[...this.userChannels.values()].map((user) => user.channel.close('broker_stopping')),
    ]);
  }

  /**
   * The user's modern-era channel, started and initialised on first use with
   * the first client's identity (single flight per user).
   */
  userChannel(principal: Principal, clientInfo: Implementation): Promise<UserChannel> {
    if (this.stopped) return Promise.reject(new BrokerError('unavailable', 'The broker is shutting down'));
    const existing = this.userChannels.get(principal.userId);
    if (existing !== undefined && !existing.channel.ended) {
      existing.lastActive = this.now();
      return Promise.resolve(existing);
    }
    let starting = this.startingUserChannels.get(principal.userId);
    if (starting === undefined) {
      starting = this.startUserChannel(principal, clientInfo).finally(() => this.startingUserChannels.delete(principal.userId));
      this.startingUserChannels.set(principal.userId, starting);
    }
    return starting;
  }

  private async startUserChannel(principal: Principal, clientInfo: Implementation): Promise<UserChannel> {
    this.reserve(principal.userId);
    const name = `modern:${principal.userId}`;
    const log = this.options.log.child({ sessionId: name, user: principal.forgejoLogin });
    let user: UserChannel | undefined;
    const rotationsBefore = this.rotationsCollected.get(principal.userId) ?? 0;
    try {
      const { child, fingerprint: tokenFingerprint } = await this.spawnChild(name, principal);
      const channel = new ChildChannel(child, {
        log,
        requestTimeoutMs: this.options.requestTimeoutMs,
        drainGraceMs: this.options.drainGraceMs,
        onEnded: (reason) => {
          log.info({ event: 'user_channel_closed', reason }, 'modern channel closed');
          this.options.events?.sessionEnded('modern', reason);
          if (this.userChannels.get(principal.userId)?.channel === channel) this.userChannels.delete(principal.userId);
          for (const listener of user?.listeners ?? []) listener.end();
        },
        onUnrelated: (message) => {
          if (isJSONRPCRequest(message)) {
            channel.refuseServerRequest(message.id as number, -32601, 'No modern request is waiting for input');
            return;
          }
          if (user !== undefined && message.method === 'notifications/tools/list_changed') user.tools = undefined;
          for (const listener of user?.listeners ?? []) if (listener.wants(message)) listener.deliver(message);
        },
      });
      const server = await this.initialize(channel, clientInfo);
      user = {
        channel,
        userId: principal.userId,
        forgejoLogin: principal.forgejoLogin,
        server,
        clientInfo,
        lastActive: this.now(),
        tokenFingerprint,
        listeners: new Set(),
        resourceRefs: new Map(),
        logLevel: undefined,
        tools: undefined,
      };
      if (this.stopped || channel.ended) {
        await channel.close('broker_stopping');
        throw new BrokerError('unavailable', 'The broker is shutting down');
      }
      this.userChannels.set(principal.userId, user);
      this.catchUpRotations(principal.userId, rotationsBefore);
      log.info({ event: 'user_channel_started', pid: child.pid, clientId: principal.clientId }, 'modern channel started');
      this.options.events?.sessionStarted('modern');
      return user;
    } finally {
      this.unreserve(principal.userId);
    }
  }

  /** The broker's own legacy handshake with a child it serves modern clients through. */
  private async initialize(channel: ChildChannel, clientInfo: Implementation): Promise<InitializeResult> {
    const answer = await this.internalRequest(channel, 'initialize', {
      protocolVersion: LATEST_PROTOCOL_VERSION,
      capabilities: MODERN_CHILD_CAPABILITIES,
      clientInfo,
    });
    if (isJSONRPCErrorResponse(answer)) {
      await channel.close('initialize_failed');
      throw new BrokerError('child_failed', `The MCP server refused to start: ${answer.error.message}`);
    }
    channel.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
    return answer.result as InitializeResult;
  }

  /** Sends a request of the broker's own to a channel and waits for the answer. */
  internalRequest(channel: ChildChannel, method: string, params: JSONRPCRequest['params']): Promise<ClientResponse> {
    return new Promise((resolve) => {
      channel.request(
        { jsonrpc: '2.0', id: `broker-${method}`, method, ...(params === undefined ? {} : { params }) },
        { notify: () => undefined, serverRequest: (request) => channel.refuseServerRequest(request.id as number, -32601, 'The broker cannot answer'), respond: resolve },
        { internal: true },
      );
    });
  }

  /** The child's tools, listed once (all pages) and kept until the child announces a change. */
  toolsOf(user: UserChannel): Promise<Map<string, Tool>> {
    user.tools ??= (async () => {
      const tools = new Map<string, Tool>();
      let cursor: string | undefined;
      do {
        const answer = await this.internalRequest(user.channel, 'tools/list', cursor === undefined ? undefined : { cursor });
        if (!isJSONRPCResultResponse(answer)) break;
        const page = answer.result as { tools?: Tool[]; nextCursor?: string };
        for (const tool of page.tools ?? []) tools.set(tool.name, tool);
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      return tools;
    })();
    return user.tools;
  }

  /** Lowers the child's log level when a request asks for more detail than it sends now. */
  async ensureLogLevel(user: UserChannel, level: LoggingLevel): Promise<void> {
    if (user.server.capabilities.logging === undefined) return;
    if (user.logLevel !== undefined && LOG_SEVERITY[user.logLevel] <= LOG_SEVERITY[level]) return;
    user.logLevel = level;
    await this.internalRequest(user.channel, 'logging/setLevel', { level });
  }

  /** Counts one more listener for a resource, subscribing at the child on the first. */
  async subscribeResource(user: UserChannel, uri: string): Promise<void> {
    const count = user.resourceRefs.get(uri) ?? 0;
    user.resourceRefs.set(uri, count + 1);
    if (count === 0) await this.internalRequest(user.channel, 'resources/subscribe', { uri });
  }

  /** Counts one listener less, unsubscribing at the child after the last. */
  async unsubscribeResource(user: UserChannel, uri: string): Promise<void> {
    const count = (user.resourceRefs.get(uri) ?? 1) - 1;
    if (count > 0) {
      user.resourceRefs.set(uri, count);
      return;
    }
    user.resourceRefs.delete(uri);
    if (!user.channel.ended) await this.internalRequest(user.channel, 'resources/unsubscribe', { uri });
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
