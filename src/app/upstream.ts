import type { Config } from '../config/config.js';
import { ConfigError } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import type { BrokerMetrics } from '../metrics/metrics.js';
import { ExternalUpstream, type UpstreamEndpoint } from '../upstream/endpoint.js';
import { UpstreamProcesses } from '../upstream/processes.js';

/** Shared mode's upstream as the broker holds it: where each user's sessions go, and the processes when the broker runs them. */
export interface SharedUpstream {
  readonly endpointFor: (userId: string) => UpstreamEndpoint;
  readonly processes: UpstreamProcesses | undefined;
  stop(): Promise<void>;
}

/** Shared mode's upstream: started (and awaited) when the broker runs it, only named when someone else does; undefined in stdio mode. */
export async function startUpstream(config: Config, log: Logger, metrics: BrokerMetrics): Promise<SharedUpstream | undefined> {
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
