/**
 * The composition root: the one place the parts are wired, by production
 * (cli.ts, demo.ts) and by every test, which pass fakes for the parts they
 * replace. The stop order lives here too.
 */
import { randomBytes } from 'node:crypto';
import type { Server as NetServer } from 'node:net';
import type { AuthParts } from './app/auth-parts.js';
import { openGovernance } from './app/governance.js';
import { openSignedInAuth } from './app/signed-in.js';
import { startUpstream, type SharedUpstream } from './app/upstream.js';
import { ConfigError, type Config } from './config/config.js';
import { MAX_CHILD_MESSAGE_BYTES, RETRY_AFTER_SECONDS, STREAM_KEEP_ALIVE_MS } from './config/defaults.js';
import { errorMessage } from './errors/errors.js';
import { listenFailure } from './http/listen.js';
import { McpEndpoint } from './http/mcp-endpoint.js';
import { BrokerServer } from './http/server.js';
import { LegacyFront } from './legacy/front.js';
import type { Logger } from './log/logger.js';
import { startMetricsListener } from './metrics/listener.js';
import { BrokerMetrics } from './metrics/metrics.js';
import { ModernFront } from './modern/front.js';
import type { SpawnFunc } from './pool/child.js';
import type { ToolPolicy } from './policy/policy.js';
import { ChannelPool } from './pool/pool.js';
import { ReplicaForwarder } from './replicas/forward.js';
import type { ReplicaRegistry } from './replicas/registry.js';
import { processSpawner } from './supervisor/child.js';
import { upstreamSpawner } from './upstream/spawner.js';
import { BROKER_INFO } from './version.js';

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
  /** The replicas sharing the store, this one among them; undefined when the auth parts bring none. */
  readonly replicas: ReplicaRegistry | undefined;
  /** The tool policy in force (`reload()` rereads BROKER_POLICY_FILE). */
  readonly policy: ToolPolicy;
  /** The middle step of `stop`: every session and channel ends, new ones are refused; HTTP still answers. */
  stopSessions(): Promise<void>;
  /** Graceful stop: no new requests, in-flight ones finish (bounded), every child stops, connections close, the parts close. */
  stop(): Promise<void>;
}

/**
 * A stopping replica among others keeps its connections until no request came
 * for this long: the balancer has taken it out (a health check every 500 ms or
 * 1 s is usual). A balancer without health checks (nginx) sends until the
 * connections are refused, which it retries elsewhere.
 */
const HANDOFF_QUIET_MS = 1000;

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
  const replicaId = auth.replicas?.self.id ?? randomBytes(6).toString('hex');
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
  const governance = await openGovernance(config, log, metrics, auth, clock);
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
    gate: governance.gate,
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
    gate: governance.gate,
  });
  // Several replicas: what belongs to another one (its sessions, its parked calls, its users) is forwarded there.
  const forwarder = auth.forwardingKey === undefined ? undefined : new ReplicaForwarder(replicaId, auth.forwardingKey);
  const endpoint: McpEndpoint = new McpEndpoint({
    publicUrl: config.publicUrl,
    allowedOrigins: config.allowedOrigins,
    authenticator: auth.authenticator,
    legacy,
    modern,
    maxBodyBytes: config.maxBodyBytes,
    retryAfterSeconds: RETRY_AFTER_SECONDS,
    draining: (): boolean => server.draining,
    listen: (sessionId, userId, open) => pool.listen(sessionId, userId, open),
    ...(forwarder === undefined || auth.replicas === undefined
      ? {}
      : { fleet: { selfId: replicaId, view: auth.replicas, forwarder, sessionsOutliveOwners: upstream !== undefined } }),
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
  auth.connect?.(pool, metrics, { legacy, modern }, governance.policy);
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
    const deadline = Date.now() + config.shutdownGraceMs;
    const pause = (): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, 25));
    // With other replicas, requests the balancer still sends here (until its health check sees /readyz fail) are
    // handed on. Connections stay open until requests stop coming: an idle one closed now could be closing under a
    // request on its way, which the balancer cannot retry (a POST) and the client sees fail.
    const handingOn = (auth.replicas?.live().length ?? 1) > 1;
    server.startDraining(handingOn);
    // Out of the store first: the other replicas stop sending this one's sessions and users here at their next look.
    await auth.replicas?.stop();
    if (handingOn) {
      // At most half the grace: the calls taken meanwhile get the other half to finish.
      const quietDeadline = Date.now() + config.shutdownGraceMs / 2;
      while (server.quietMs < HANDOFF_QUIET_MS && Date.now() < quietDeadline) await pause();
      server.stopAccepting();
    }
    // Requests waiting on a child (or on the replica they were forwarded to) get the grace period to finish; then every session and child ends.
    const inflight = (): number => pool.inflight + (forwarder?.inflight ?? 0);
    while (inflight() > 0 && Date.now() < deadline) await pause();
    await stopSessions();
    await upstream?.stop();
    await server.closeConnections();
    forwarder?.close();
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
    replicas: auth.replicas,
    policy: governance.policy,
    stopSessions,
    stop: () => (stopping ??= stop()),
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
