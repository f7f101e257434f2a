import type { Authenticator, ForgejoCredentials } from './auth/principal.js';
import { requireForgejo, type Config } from './config/config.js';
import { errorMessage } from './errors/errors.js';
import type { RouteHandler } from './http/route.js';
import { landingPage } from './http/landing.js';
import { listenFailure } from './http/listen.js';
import { BrokerServer } from './http/server.js';
import type { Logger } from './log/logger.js';
import { ForgejoProbe } from './forgejo/probe.js';
import { startMetricsListener } from './metrics/listener.js';
import { BrokerMetrics } from './metrics/metrics.js';
import { LegacyFront } from './legacy/front.js';
import { ModernFront } from './modern/front.js';
import { openBrokerAuth } from './oauth/setup.js';
import { ChannelPool } from './pool/pool.js';
import { processSpawner } from './supervisor/child.js';
import { requireChildProgram } from './supervisor/executable.js';
import { BROKER_INFO } from './version.js';

/** What authentication brings to the broker: the OAuth server in production, injected parts in tests. */
export interface AuthParts {
  readonly authenticator: Authenticator;
  readonly credentials: ForgejoCredentials;
  readonly routes: readonly RouteHandler[];
  /** Why the parts are not ready (the store cannot write, Forgejo does not answer), or undefined. */
  readonly notReadyBecause?: () => Promise<string | undefined>;
  /** Called after every session has ended, to close what the parts hold (the store). */
  readonly close?: () => Promise<void>;
}

export interface RunningBroker {
  readonly url: string;
  readonly pool: ChannelPool;
  readonly legacy: LegacyFront;
  readonly modern: ModernFront;
  readonly server: BrokerServer;
  readonly metrics: BrokerMetrics;
  /** Where /metrics is served when BROKER_METRICS_LISTEN is set. */
  readonly metricsUrl: string | undefined;
  /** Graceful stop: in-flight requests finish (bounded), every child stops, the parts close. */
  stop(): Promise<void>;
}

/** Seconds a client is told to wait when the broker is full. */
const RETRY_AFTER_SECONDS = 30;
const MAX_CHILD_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Wires the session layer, the children and the HTTP edge, and listens. */
export async function startBroker(config: Config, forgejoUrl: URL, auth: AuthParts, log: Logger): Promise<RunningBroker> {
  const metrics = new BrokerMetrics();
  const pool = new ChannelPool({
    events: metrics,
    spawn: processSpawner({
      command: config.childCommand,
      forgejoUrl: forgejoUrl.href.replace(/\/$/, ''),
      envAllow: config.childEnvAllow,
      parentEnv: process.env,
      stopGraceMs: config.childStopGraceMs,
      maxMessageBytes: MAX_CHILD_MESSAGE_BYTES,
      log,
      onLogLinesSuppressed: (lines) => metrics.childLogLinesSuppressed(lines),
    }),
    credentials: auth.credentials,
    log,
    maxChannels: config.maxSessions,
    maxChannelsPerUser: config.maxSessionsPerUser,
    idleTimeoutMs: config.idleTimeoutMs,
    refreshLeadMs: config.refreshLeadMs,
    requestTimeoutMs: config.requestTimeoutMs,
    drainGraceMs: config.drainGraceMs,
  });
  const legacy = new LegacyFront({ pool, log, initTimeoutMs: config.initTimeoutMs, events: metrics });
  const modern = new ModernFront({ pool, log, events: metrics, inputTimeoutMs: config.requestTimeoutMs, serverInfo: BROKER_INFO, keepAliveMs: 15_000 });
  const server = new BrokerServer({
    publicUrl: config.publicUrl,
    allowedOrigins: config.allowedOrigins,
    authenticator: auth.authenticator,
    pool,
    legacy,
    modern,
    routes: auth.routes,
    maxBodyBytes: config.maxBodyBytes,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    retryAfterSeconds: RETRY_AFTER_SECONDS,
    log,
    metrics,
    serveMetrics: config.metricsListen === undefined,
    ...(auth.notReadyBecause === undefined ? {} : { notReadyBecause: auth.notReadyBecause }),
  });
  metrics.watch({ get active() { return legacy.active; }, get activeUserChannels() { return modern.activeUserChannels; }, get inflight() { return pool.inflight; } });
  const address = await server.listen(config.listen.host, config.listen.port).catch((error: unknown) => {
    throw listenFailure('BROKER_LISTEN', config.listen, error);
  });
  const metricsListener =
    config.metricsListen === undefined
      ? undefined
      : await startMetricsListener(metrics, config.metricsListen).catch(async (error: unknown) => {
          await server.shutdown(0);
          throw error;
        });
  pool.startMaintenance(config.reapIntervalMs, config.rotateIntervalMs);
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  const url = `http://${host}:${address.port}`;
  log.info({ event: 'listening', url, publicUrl: config.publicUrl.href, metricsUrl: metricsListener?.url }, 'broker listening');
  let stopping: Promise<void> | undefined;
  return {
    url,
    pool,
    legacy,
    modern,
    server,
    metrics,
    metricsUrl: metricsListener?.url,
    stop: () =>
      (stopping ??= (async () => {
        await server.shutdown(config.shutdownGraceMs);
        await metricsListener?.close();
        await auth.close?.();
      })()),
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

/**
 * The production broker: sign-in through Forgejo (store, OAuth server,
 * credential manager) wired to the session layer, so a new login or a
 * refresh moves the user's sessions to the new token and a revoked
 * credential ends them.
 */
export async function startSignedInBroker(config: Config, log: Logger): Promise<RunningBroker> {
  const forgejo = requireForgejo(config);
  await requireChildProgram(config.childCommand, process.env.PATH);
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
    rateLimit: { burst: Math.max(10, Math.ceil(signIn.rateLimitPerMinute / 2)), perMinute: signIn.rateLimitPerMinute },
    forgejoRefreshTimeoutMs: signIn.forgejoRefreshTimeoutMs,
    trustedProxies: signIn.trustedProxies,
  });
  const forgejoProbe = new ForgejoProbe({ forgejoUrl: forgejo.forgejoUrl, log });
  const close = async (): Promise<void> => {
    forgejoProbe.close();
    await auth.close();
  };
  let broker: RunningBroker;
  try {
    broker = await startBroker(
      config,
      forgejo.forgejoUrl,
      {
        authenticator: auth.authenticator,
        credentials: auth.credentials,
        routes: [auth.routes, landingPage(config.publicUrl, forgejo.forgejoUrl)],
        notReadyBecause: async () => ((await auth.ready()) ? forgejoProbe.notReadyBecause() : 'the store cannot write'),
        close,
      },
      log,
    );
  } catch (error) {
    await close();
    throw error;
  }
  await forgejoProbe.start();
  const { pool } = broker;
  auth.credentials.onCredentialChanged((userId) => void pool.rotateUser(userId));
  auth.credentials.onCredentialRevoked((userId) => void pool.endUser(userId, 'credential_revoked'));
  auth.credentials.onRefreshOutcome((outcome) => broker.metrics.forgejoRefresh(outcome));
  return broker;
}
