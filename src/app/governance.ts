import type { AuditLog } from '../audit/audit-log.js';
import type { Config } from '../config/config.js';
import { TEAM_CACHE_MS } from '../config/defaults.js';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { BrokerMetrics } from '../metrics/metrics.js';
import { CallGate } from '../policy/gate.js';
import { ToolPolicy } from '../policy/policy.js';
import { TeamDirectory } from '../policy/teams.js';
import type { AuthParts } from './auth-parts.js';

/** The tool policy and the audit log, as the fronts use them. */
export interface Governance {
  readonly gate: CallGate;
  readonly policy: ToolPolicy;
  readonly audit: AuditLog | undefined;
}

/**
 * Opens the tool policy (a bad BROKER_POLICY_FILE is a ConfigError here, at
 * start) and joins it, the audit log the auth parts bring and the metrics
 * into the gate every client request passes. Team rules ask Forgejo with
 * the user's own token.
 */
export async function openGovernance(
  config: Config,
  log: Logger,
  metrics: BrokerMetrics,
  auth: AuthParts,
  clock: () => number,
): Promise<Governance> {
  const teams =
    config.policy.file === undefined || config.forgejoUrl === undefined
      ? undefined
      : new TeamDirectory({ forgejoUrl: config.forgejoUrl, credentials: auth.credentials, cacheMs: TEAM_CACHE_MS, log, now: clock });
  const policy = await ToolPolicy.open(config.policy, teams, log);
  const audit = auth.audit;
  audit?.onDropped((reason, count) => metrics.auditDropped(reason, count));
  audit?.startPurging();
  return { gate: new CallGate(policy, { audit, events: metrics, now: clock }), policy, audit };
}

/**
 * SIGHUP rereads BROKER_POLICY_FILE. A file that does not pass the checks is
 * logged and the policy in force stays. Returns the function that stops listening.
 */
export function reloadPolicyOnHangup(policy: ToolPolicy, log: Logger): () => void {
  const onHangup = (): void => {
    policy.reload().then(
      () => undefined,
      (error: unknown) =>
        log.error(
          { event: 'policy_reload_failed', err: errorMessage(error) },
          'the policy file was not reloaded; the previous policy stays in force',
        ),
    );
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}
