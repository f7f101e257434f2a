import type { AuditLog } from '../audit/audit-log.js';
import type { Authenticator, ForgejoCredentials } from '../auth/principal.js';
import type { RouteHandler } from '../http/route.js';
import type { LegacyFront } from '../legacy/front.js';
import type { BrokerMetrics } from '../metrics/metrics.js';
import type { ModernFront } from '../modern/front.js';
import type { ChannelPool } from '../pool/pool.js';
import type { ToolPolicy } from '../policy/policy.js';
import type { ReplicaRegistry } from '../replicas/registry.js';
import type { LegacySessionRepository } from '../store/store.js';

/** What authentication brings to the broker: sign-in through Forgejo in production, fakes in tests. */
export interface AuthParts {
  readonly authenticator: Authenticator;
  readonly credentials: ForgejoCredentials;
  readonly routes: readonly RouteHandler[];
  /** Why the parts are not ready (the store cannot write, Forgejo does not answer), or undefined. */
  readonly notReadyBecause?: () => Promise<string | undefined>;
  /** Where shared mode keeps its legacy sessions (the store); absent: they live and die with this process. */
  readonly legacySessions?: LegacySessionRepository;
  /** Called once the pool and fronts exist: credential changes rotate channels, revocations end sessions, refreshes are counted, the consent page learns the tool policy. */
  readonly connect?: (
    pool: ChannelPool,
    metrics: BrokerMetrics,
    fronts: { readonly legacy: LegacyFront; readonly modern: ModernFront },
    policy: ToolPolicy,
  ) => void;
  /** Called once the broker listens (the Forgejo probe's first look). */
  readonly listening?: () => Promise<void>;
  /** Called after every session has ended, to close what the parts hold (the store). */
  readonly close?: () => Promise<void>;
  /** The replicas sharing the store, this one among them (started once the broker listens); absent: this process alone. */
  readonly replicas?: ReplicaRegistry;
  /** The key replicas mark forwarded requests with (derived from BROKER_ENCRYPTION_KEY); with `replicas`. */
  readonly forwardingKey?: Buffer;
  /** The audit log in the store (BROKER_AUDIT); absent: nothing is recorded. `close` writes what it still holds. */
  readonly audit?: AuditLog;
}
