import { randomBytes } from 'node:crypto';
import { AuditLog } from '../audit/audit-log.js';
import { auditedSecurityEvents, type SecurityEvents } from '../audit/security-events.js';
import { requireForgejo, type Config } from '../config/config.js';
import {
  AUDIT_BATCH_SIZE,
  AUDIT_FLUSH_MS,
  AUDIT_MAX_QUEUED,
  AUDIT_PURGE_INTERVAL_MS,
  REPLICA_GONE_AFTER_MS,
  REPLICA_HEARTBEAT_MS,
  rateLimitFor,
} from '../config/defaults.js';
import { ForgejoProbe } from '../forgejo/probe.js';
import { landingPage } from '../http/landing.js';
import type { Logger } from '../log/logger.js';
import { openBrokerAuth } from '../oauth/setup.js';
import type { ToolPolicy } from '../policy/policy.js';
import { ReplicaRegistry } from '../replicas/registry.js';
import { LiveSessions } from '../revocation/live-sessions.js';
import { requireChildProgram } from '../supervisor/executable.js';
import type { AuthParts } from './auth-parts.js';

/**
 * Sign-in through Forgejo (store, OAuth server, credential manager), wired so
 * a new login or a refresh moves the user's channels to the new token and a
 * revoked credential ends them.
 */
export async function openSignedInAuth(config: Config, log: Logger, clock: () => number): Promise<AuthParts> {
  const forgejo = requireForgejo(config);
  const { upstream } = config;
  if (upstream.kind === 'command') await requireChildProgram(upstream.command, process.env.PATH, 'BROKER_UPSTREAM_COMMAND');
  if (upstream.kind === 'stdio') await requireChildProgram(config.childCommand, process.env.PATH);
  const { signIn } = config;
  // The OAuth server reports to the audit log, which needs the store the server opens: joined once both exist.
  let securityEvents: SecurityEvents | undefined;
  // The tool policy opens with the broker's other parts, after the OAuth server: the consent page asks it once it exists.
  let toolPolicy: ToolPolicy | undefined;
  // This broker's live sessions, bound to its fronts in connect(): the Connections page lists them, revocations end them.
  const sessions = new LiveSessions();
  const auth = await openBrokerAuth({
    sessions,
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
    // Each replica enforces its share of the limit.
    liveReplicas: () => replicas.live().length,
    forgejoRefreshTimeoutMs: signIn.forgejoRefreshTimeoutMs,
    trustedProxies: signIn.trustedProxies,
    securityEvents: (event) => securityEvents?.(event),
    toolPolicyFor: (user) => toolPolicy?.describeFor(user) ?? Promise.resolve({ lines: [], mayDiffer: false }),
    now: clock,
  });
  const audit = config.audit.enabled
    ? new AuditLog({
        repository: auth.store.audit,
        log,
        storeArguments: config.audit.storeArguments,
        retentionMs: config.audit.retentionMs,
        maxQueued: AUDIT_MAX_QUEUED,
        batchSize: AUDIT_BATCH_SIZE,
        flushMs: AUDIT_FLUSH_MS,
        purgeIntervalMs: AUDIT_PURGE_INTERVAL_MS,
        clientName: async (clientId) => (await auth.store.clients.find(clientId))?.clientName ?? undefined,
        userLogin: async (userId) => (await auth.store.users.find(userId))?.forgejoLogin,
        now: clock,
      })
    : undefined;
  if (audit !== undefined) securityEvents = auditedSecurityEvents(audit, clock);
  const forgejoProbe = new ForgejoProbe({ forgejoUrl: forgejo.forgejoUrl, log });
  // This process among the replicas, in front of its session ids and request states: 12 hex digits, no dots.
  const replicas = new ReplicaRegistry({
    replicas: auth.store.replicas,
    self: { id: randomBytes(6).toString('hex'), url: config.replicaUrl },
    heartbeatMs: REPLICA_HEARTBEAT_MS,
    goneAfterMs: REPLICA_GONE_AFTER_MS,
    log,
  });
  return {
    authenticator: auth.authenticator,
    credentials: auth.credentials,
    legacySessions: auth.store.legacySessions,
    routes: [auth.routes, landingPage(config.publicUrl, forgejo.forgejoUrl)],
    notReadyBecause: async () => {
      if (!(await auth.ready())) return 'the store cannot write';
      // The store just took a write: a heartbeat now, rather than "cannot be reached" until the next one.
      if (replicas.notReadyBecause() !== undefined) await replicas.tick();
      return replicas.notReadyBecause() ?? forgejoProbe.notReadyBecause();
    },
    listening: async () => {
      // Others may forward here once it is in the store: only once it listens.
      await replicas.start();
      await forgejoProbe.start();
      // From now on a revocation made anywhere (admin revoke, another replica) ends this one's sessions within a poll.
      await auth.revocations.start();
    },
    replicas,
    forwardingKey: auth.forwardingKey,
    ...(audit === undefined ? {} : { audit }),
    connect: (pool, metrics, fronts, policy) => {
      toolPolicy = policy;
      sessions.bind({ ...fronts, pool });
      auth.credentials.onCredentialChanged((userId) => void pool.rotateUser(userId));
      auth.credentials.onCredentialRevoked((userId) => {
        securityEvents?.({ kind: 'revocation', userId, clientId: null, detail: 'Forgejo credential ended; sessions ended', failed: true });
        void pool.endUser(userId, 'credential_revoked');
      });
      auth.credentials.onRefreshOutcome((outcome, userId) => {
        metrics.forgejoRefresh(outcome);
        if (outcome !== 'ok')
          securityEvents?.({ kind: 'refresh_failure', userId, clientId: null, detail: `Forgejo refresh ${outcome}`, failed: true });
      });
    },
    close: async () => {
      await replicas.stop();
      forgejoProbe.close();
      await audit?.close();
      await auth.close();
    },
  };
}
