/**
 * What the audit log costs: bursts of 1,000 `tools/call` through two brokers
 * started alike, one with the audit log on (the default) and one with
 * BROKER_AUDIT=off, alternated round by round in the same run so both see the
 * same machine. Reported as calls per second and the ratio on/off (the
 * target: under 5% lost). The on-broker's store is read at the end to check
 * every call was recorded.
 */
import { silentLogger } from '../../src/log/logger.js';
import { loadEncryptionKey } from '../../src/store/encryption-key.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { closedLoop } from './load.js';
import { keepAliveAgent, RawLegacyClient } from './mcp.js';
import type { ProcessSet } from './procs.js';
import { median } from './stats.js';
import { benchUsers, startBrokerTarget, STANDIN_ARGV, type BrokerTarget } from './targets.js';

export interface AuditCostFigure {
  readonly burst: number;
  readonly concurrency: number;
  readonly rounds: number;
  /** Median over rounds, calls per second. */
  readonly auditOnCallsPerS: number;
  readonly auditOffCallsPerS: number;
  /** Median over rounds of auditOn / auditOff in the same round: 1 costs nothing, 0.95 is 5% lost. */
  readonly ratio: number;
  /** Tool calls the audit-on broker's store holds at the end (every burst's, warm-up included). */
  readonly recorded: number;
  readonly called: number;
}

const BURST = 1_000;
const CONCURRENCY = 16;

export async function measureAuditCost(procs: ProcessSet, quick: boolean, log: (message: string) => void): Promise<AuditCostFigure> {
  const rounds = quick ? 2 : 11;
  const users = benchUsers(0);
  const user = users[0];
  if (user === undefined) throw new Error('no bench user');
  const start = (name: string, env: Record<string, string>): Promise<BrokerTarget> =>
    startBrokerTarget(procs, { name, upstream: { mode: 'stdio', childArgv: STANDIN_ARGV }, users, env });
  const on = await start('broker-audit-on', {});
  const off = await start('broker-audit-off', { BROKER_AUDIT: 'off' });
  const agent = keepAliveAgent();
  try {
    const clientsOf = async (broker: BrokerTarget): Promise<RawLegacyClient[]> => {
      const bearer = await broker.token(user);
      return Promise.all(Array.from({ length: CONCURRENCY }, () => RawLegacyClient.open({ url: broker.mcpUrl, bearer }, agent)));
    };
    const onClients = await clientsOf(on);
    const offClients = await clientsOf(off);
    const burst = async (clients: readonly RawLegacyClient[]): Promise<number> => {
      const result = await closedLoop((i) => (clients[i % clients.length] as RawLegacyClient).echo(), {
        concurrency: CONCURRENCY,
        maxRequests: BURST,
        maxMs: 120_000,
      });
      if (result.errors > 0 || result.completed !== BURST)
        throw new Error(`audit burst: ${result.errors} errors (${result.firstError ?? ''})`);
      return result.throughput;
    };
    // Warm-up: children started, JIT warm, SQLite pages cached (throughput still climbs over the first bursts).
    for (let i = 0; i < 3; i++) {
      await burst(onClients);
      await burst(offClients);
    }
    const onRates: number[] = [];
    const offRates: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // Alternating which goes first, so a drift of the machine favours neither.
      if (round % 2 === 0) {
        offRates.push(await burst(offClients));
        onRates.push(await burst(onClients));
      } else {
        onRates.push(await burst(onClients));
        offRates.push(await burst(offClients));
      }
      log(`  round ${round + 1}: audit on ${onRates.at(-1)?.toFixed(0)} calls/s, off ${offRates.at(-1)?.toFixed(0)} calls/s`);
    }
    await Promise.all([...onClients, ...offClients].map((client) => client.close()));
    const called = (rounds + 3) * BURST;
    // Stopping the broker writes what its audit log still holds.
    await procs.stop(on.proc);
    const store = await openSqliteStore({
      dataDir: on.dataDir,
      encryptionKey: await loadEncryptionKey(on.dataDir, undefined, silentLogger()),
    });
    const recorded = (await store.audit.list({ toolGlob: 'echo', limit: called * 2 })).length;
    await store.close();
    const auditOnCallsPerS = median(onRates);
    const auditOffCallsPerS = median(offRates);
    return {
      burst: BURST,
      concurrency: CONCURRENCY,
      rounds,
      auditOnCallsPerS,
      auditOffCallsPerS,
      ratio: median(onRates.map((rate, i) => rate / (offRates[i] as number))),
      recorded,
      called,
    };
  } finally {
    agent.destroy();
    await procs.stop(on.proc);
    await procs.stop(off.proc);
    await on.forge.close();
    await off.forge.close();
  }
}
