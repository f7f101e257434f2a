/**
 * The composition root: the one place the parts are wired, by production
 * (cli.ts, demo.ts) and by every test, which pass fakes for the parts they
 * replace. The stop order lives here too.
 */
import { randomBytes } from 'node:crypto';
import type { Server as NetServer } from 'node:net';
import type { Authenticator, ForgejoCredentials } from './auth/principal.js';
import { ConfigError, requireForgejo, type Config } from './config/config.js';
import { MAX_CHILD_MESSAGE_BYTES, RETRY_AFTER_SECONDS, STREAM_KEEP_ALIVE_MS, rateLimitFor } from './config/defaults.js';
import { errorMessage } from './errors/errors.js';
import { ForgejoProbe } from './forgejo/probe.js';
import { landingPage } from './http/landing.js';
import { listenFailure } from './http/listen.js';
import { McpEndpoint } from './http/mcp-endpoint.js';
import type { RouteHandler } from './http/route.js';
import { BrokerServer } from './http/server.js';
import { LegacyFront } from './legacy/front.js';
import type { Logger } from './log/logger.js';
import { startMetricsListener } from './metrics/listener.js';
import { BrokerMetrics } from './metrics/metrics.js';
import { ModernFront } from './modern/front.js';
import { openBrokerAuth } from './oauth/setup.js';
import type { SpawnFunc } from './pool/child.js';
import type { LegacySessionRepository } from './store/store.js';
import { ChannelPool } from './pool/pool.js';
import { processSpawner } from './supervisor/child.js';
import { ExternalUpstream, type UpstreamEndpoint } from './upstream/endpoint.js';
import { UpstreamProcesses } from './upstream/processes.js';
import { upstreamSpawner } from './upstream/spawner.js';
import { requireChildProgram } from './supervisor/executable.js';
import { BROKER_INFO } from './version.js';

/** What authentication brings to the broker: sign-in through Forgejo in production, fakes in tests. */
export interface AuthParts {
  readonly authenticator: Authenticator;
  readonly credentials: ForgejoCredentials;
  readonly routes: readonly RouteHandler[];
  /** Why the parts are not ready (the store cannot write, Forgejo does not answer), or undefined. */
  readonly notReadyBecause?: () => Promise<string | undefined>;
  /** Where shared mode keeps its legacy sessions (the store); absent: they live and die with this process. */
  readonly legacySessions?: LegacySessionRepository;
  /** Called once the pool exists: credential changes rotate channels, revocations end them, refreshes are counted. */
  readonly connect?: (pool: ChannelPool, metrics: BrokerMetrics) => void;
  /** Called once the broker listens (the Forgejo probe's first look). */
  readonly listening?: () => Promise<void>;
  /** Called after every session has ended, to close what the parts hold (the store). */
  readonly close?: () => Promise<void>;
}

export interface BrokerParts {
  readonly config: Config;
  readonly log: Logger;
  /** Default: sign-in through the Forgejo the configuration names (store, OAuth server, credential manager). */
  readonly auth?: AuthParts;
  /** Given the process spawner production uses; returns the one to use (tests wrap it, or replace it with an in-memory child). */
  readonly spawn?: (processes: SpawnFunc) => SpawnFunc;
  /** The time tokens, credentials and idle channels are measured against. Default Date.now. */
  readonly clock?: () => number;
  /** A server already listening whose connections the broker takes (tests: port 0, kept across restarts). Default: listen on BROKER_LISTEN. */
  readonly listener?: NetServer;
}

export interface RunningBroker {
  /** Where it listens (http://host:port). */
  readonly url: string;
  readonly pool: ChannelPool;
  readonly legacy: LegacyFront;
  readonly modern: ModernFront;
  readonly endpoint: McpEndpoint;
  readonly server: BrokerServer;
  readonly metrics: BrokerMetrics;
  /** Where /metrics is served when BROKER_METRICS_LISTEN is set. */
  readonly metricsUrl: string | undefined;
  /** This process's id among the replicas (in front of its session ids and request states). */
  readonly replicaId: string;
  /** Shared mode: the upstream the sessions go to (the processes, when the broker runs them). */
  readonly upstream: SharedUpstream | undefined;
  /** The middle step of `stop`: every session and channel ends, new ones are refused; HTTP still answers. */
  stopSessions(): Promise<void>;
  /** Graceful stop: no new requests, in-flight ones finish (bounded), every child stops, connections close, the parts close. */
  stop(): Promise<void>;
}

/** Wires the parts and listens. */
export async function createBroker(parts: BrokerParts): Promise<RunningBroker> {
  const { config, log } = parts;
  const clock = parts.clock ?? Date.now;
  const auth = parts.auth ?? (await openSignedInAuth(config, log, clock));
  try {
    return await wire(parts, auth, clock);
  } catch (error) {
    await auth.close?.();
    throw error;
  }
}

async function wire(parts: BrokerParts, auth: AuthParts, clock: () => number): Promise<RunningBroker> {
  const { config, log } = parts;
  const metrics = new BrokerMetrics();
  // This process among the replicas: in front of its session ids and request states, so any replica knows where they live.
  const replicaId = randomBytes(6).toString('hex');
  const processes: SpawnFunc = (spec) => {
    if (config.forgejoUrl === undefined) throw new ConfigError('FORGEJO_URL', 'is required to start children');
    return processSpawner({
      command: config.childCommand,
      forgejoUrl: config.forgejoUrl.href.replace(/\/$/, ''),
      envAllow: config.childEnvAllow,
      parentEnv: process.env,
      stopGraceMs: config.childStopGraceMs,
      maxMessageBytes: MAX_CHILD_MESSAGE_BYTES,
      log,
      onLogLinesSuppressed: (lines) => metrics.childLogLinesSuppressed(lines),
    })(spec);
  };
  const upstream = await startUpstream(config, log, metrics);
  const base: SpawnFunc =
    upstream === undefined
      ? processes
      : upstreamSpawner({
          endpointFor: upstream.endpointFor,
          credentials: auth.credentials,
          log,
          stopTimeoutMs: config.childStopGraceMs,
        });
  const pool = new ChannelPool({
    events: metrics,
    spawn: parts.spawn === undefined ? base : parts.spawn(base),
    credentials: auth.credentials,
    log,
    maxChannels: config.maxSessions,
    maxChannelsPerUser: config.maxSessionsPerUser,
    idleTimeoutMs: config.idleTimeoutMs,
    refreshLeadMs: config.refreshLeadMs,
    requestTimeoutMs: config.requestTimeoutMs,
    drainGraceMs: config.drainGraceMs,
    now: clock,
  });
  const legacy = new LegacyFront({
    pool,
    log,
    initTimeoutMs: config.initTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    replicaId,
    events: metrics,
    now: clock,
    // Shared mode: a session is state, carried on by the next broker process (or another replica).
    ...(upstream === undefined || auth.legacySessions === undefined ? {} : { sessionStore: auth.legacySessions }),
  });
  const modern = new ModernFront({
    pool,
    log,
    events: metrics,
    inputTimeoutMs: config.requestTimeoutMs,
    serverInfo: BROKER_INFO,
    keepAliveMs: STREAM_KEEP_ALIVE_MS,
    replicaId,
  });
  const endpoint: McpEndpoint = new McpEndpoint({
    publicUrl: config.publicUrl,
    allowedOrigins: config.allowedOrigins,
    authenticator: auth.authenticator,
    legacy,
    modern,
    maxBodyBytes: config.maxBodyBytes,
    retryAfterSeconds: RETRY_AFTER_SECONDS,
    draining: (): boolean => server.draining,
  });
  const server: BrokerServer = new BrokerServer({
    publicUrl: config.publicUrl,
    mcp: (req, res): Promise<void> => endpoint.serve(req, res),
    routes: auth.routes,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    log,
    metrics,
    serveMetrics: config.metricsListen === undefined,
    ...(auth.notReadyBecause === undefined ? {} : { notReadyBecause: auth.notReadyBecause }),
  });
  metrics.watch({
    get active() {
      return legacy.active;
    },
    get activeUserChannels() {
      return modern.activeUserChannels;
    },
    get inflight() {
      return pool.inflight;
    },
  });
  auth.connect?.(pool, metrics);
  const address =
    parts.listener === undefined
      ? await server.listen(config.listen.host, config.listen.port).catch(async (error: unknown) => {
          await upstream?.stop();
          throw listenFailure('BROKER_LISTEN', config.listen, error);
        })
      : server.serveFrom(parts.listener);
  const metricsListener =
    config.metricsListen === undefined
      ? undefined
      : await startMetricsListener(metrics, config.metricsListen).catch(async (error: unknown) => {
          server.startDraining();
          await server.closeConnections();
          throw error;
        });
  pool.startMaintenance(config.reapIntervalMs, config.rotateIntervalMs);
  legacy.startMaintenance(config.reapIntervalMs);
  await auth.listening?.();
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  const url = `http://${host}:${address.port}`;
  log.info({ event: 'listening', url, publicUrl: config.publicUrl.href, metricsUrl: metricsListener?.url }, 'broker listening');
  const stopSessions = async (): Promise<void> => {
    await Promise.all([legacy.stop(), modern.stop(), pool.stop()]);
  };
  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    server.startDraining();
    // Requests waiting on a child get the grace period to finish; then every session and child ends.
    const deadline = Date.now() + config.shutdownGraceMs;
    while (pool.inflight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    await stopSessions();
    await upstream?.stop();
    await server.closeConnections();
    await metricsListener?.close();
    await auth.close?.();
  };
  return {
    url,
    pool,
    legacy,
    modern,
    endpoint,
    server,
    metrics,
    metricsUrl: metricsListener?.url,
    replicaId,
    upstream,
    stopSessions,
    stop: () => (stopping ??= stop()),
  };
}

/** Shared mode's upstream as the broker holds it: where each user's sessions go, and the processes when the broker runs them. */
export interface SharedUpstream {
  readonly endpointFor: (userId: string) => UpstreamEndpoint;
  readonly processes: UpstreamProcesses | undefined;
  stop(): Promise<void>;
}

/** Shared mode's upstream: started (and awaited) when the broker runs it, only named when someone else does; undefined in stdio mode. */
async function startUpstream(config: Config, log: Logger, metrics: BrokerMetrics): Promise<SharedUpstream | undefined> {
  const { upstream } = config;
  if (upstream.kind === 'stdio') return undefined;
  if (upstream.kind === 'url') {
    const external = new ExternalUpstream(upstream.url, config.initTimeoutMs);
    return { endpointFor: () => external, processes: undefined, stop: () => Promise.resolve() };
  }
  if (config.forgejoUrl === undefined) throw new ConfigError('FORGEJO_URL', 'is required to start the upstream');
  const processes = new UpstreamProcesses(upstream.processes, {
    command: upstream.command,
    forgejoUrl: config.forgejoUrl.href.replace(/\/$/, ''),
    envAllow: config.childEnvAllow,
    parentEnv: process.env,
    startTimeoutMs: config.initTimeoutMs,
    stopGraceMs: config.childStopGraceMs,
    log,
    onRestart: () => metrics.upstreamRestarted(),
    onLogLinesSuppressed: (lines) => metrics.childLogLinesSuppressed(lines),
  });
  try {
    await processes.start();
  } catch (error) {
    await processes.stop();
    throw error;
  }
  return { endpointFor: (userId) => processes.endpointFor(userId), processes, stop: () => processes.stop() };
}

/**
 * Sign-in through Forgejo (store, OAuth server, credential manager), wired so
 * a new login or a refresh moves the user's channels to the new token and a
 * revoked credential ends them.
 */
async function openSignedInAuth(config: Config, log: Logger, clock: () => number): Promise<AuthParts> {
  const forgejo = requireForgejo(config);
  const { upstream } = config;
  if (upstream.kind === 'command') await requireChildProgram(upstream.command, process.env.PATH, 'BROKER_UPSTREAM_COMMAND');
  if (upstream.kind === 'stdio') await requireChildProgram(config.childCommand, process.env.PATH);
  const { signIn } = config;
  const auth = await openBrokerAuth({
    publicUrl: config.publicUrl,
    forgejoUrl: forgejo.forgejoUrl,
    forgejoClientId: forgejo.clientId,
    forgejoClientSecret: forgejo.clientSecret,
    forgejoScopes: signIn.forgejoScopes,
    dataDir: config.dataDir,
    ...(config.databaseUrl === undefined ? {} : { databaseUrl: config.databaseUrl }),
    ...(signIn.encryptionKey === undefined ? {} : { encryptionKey: signIn.encryptionKey }),
    logger: log,
    lifetimes: { accessTokenMs: signIn.accessTokenTtlMs, refreshTokenMs: signIn.refreshTokenTtlMs },
    refreshGraceMs: signIn.refreshGraceMs,
    unusedClientTtlMs: signIn.unusedClientTtlMs,
    cimd: { allowPrivateNetwork: signIn.cimdAllowPrivate },
    metadataDocuments: signIn.metadataDocuments,
    maxUnusedClients: signIn.maxUnusedClients,
    rateLimit: rateLimitFor(signIn.rateLimitPerMinute),
    forgejoRefreshTimeoutMs: signIn.forgejoRefreshTimeoutMs,
    trustedProxies: signIn.trustedProxies,
    now: clock,
  });
  const forgejoProbe = new ForgejoProbe({ forgejoUrl: forgejo.forgejoUrl, log });
  return {
    authenticator: auth.authenticator,
    credentials: auth.credentials,
    legacySessions: auth.store.legacySessions,
    routes: [auth.routes, landingPage(config.publicUrl, forgejo.forgejoUrl)],
    notReadyBecause: async () => ((await auth.ready()) ? forgejoProbe.notReadyBecause() : 'the store cannot write'),
    listening: () => forgejoProbe.start(),
    connect: (pool, metrics) => {
      auth.credentials.onCredentialChanged((userId) => void pool.rotateUser(userId));
      auth.credentials.onCredentialRevoked((userId) => void pool.endUser(userId, 'credential_revoked'));
      auth.credentials.onRefreshOutcome((outcome) => metrics.forgejoRefresh(outcome));
    },
    close: async () => {
      forgejoProbe.close();
      await auth.close();
    },
  };
}

/**
 * SIGTERM and SIGINT stop the broker gracefully and exit 0; a second signal
 * exits at once. Children die with the broker either way: their stdin closes.
 */
export function stopOnSignals(stop: () => Promise<void>, log: Logger): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) process.exit(1);
    signalled = true;
    log.info({ event: 'shutdown', signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ event: 'shutdown_failed', err: errorMessage(error) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
