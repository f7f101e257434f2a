/**
 * `node dist/bench/tools/drive.js [legacy|modern|bare] [seconds] [concurrency] [--profile DIR]`:
 * one target under closed-loop `echo` load on one session, and where the
 * machine's CPU went per request: the gateway process, its children, this
 * load generator. For A/B runs of a hot-path change (`BENCH_BROKER_CLI`
 * points at the other build; alternate the two, compare medians), and for a
 * CPU profile of the broker under exactly this load (`--profile`).
 */
import { closedLoop } from '../lib/load.js';
import { keepAliveAgent, RawLegacyClient, RawModernClient, type EchoClient } from '../lib/mcp.js';
import { descendants, ProcessSet, procCpuUs } from '../lib/procs.js';
import { benchUsers, STANDIN_ARGV, startBareBridge, startBrokerTarget } from '../lib/targets.js';

const args = process.argv.slice(2);
const profileAt = args.indexOf('--profile');
const profileDir = profileAt === -1 ? undefined : args[profileAt + 1];
const [target = 'legacy', seconds = '6', concurrency = '64'] = args.filter(
  (_, i) => profileAt === -1 || (i !== profileAt && i !== profileAt + 1),
);
if (!['legacy', 'modern', 'bare'].includes(target)) {
  process.stderr.write('usage: drive [legacy|modern|bare] [seconds] [concurrency] [--profile DIR]\n');
  process.exit(2);
}

const procs = new ProcessSet();
try {
  const users = benchUsers(1);
  const broker = await startBrokerTarget(procs, {
    name: 'broker',
    upstream: { mode: 'stdio', childArgv: STANDIN_ARGV },
    users,
    ...(profileDir === undefined ? {} : { nodeFlags: ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profileDir}`] }),
  });
  const agent = keepAliveAgent();
  let pid = broker.proc.pid;
  let client: EchoClient;
  if (target === 'bare') {
    const bare = await startBareBridge(procs, broker.forge.url, 'unused');
    pid = bare.proc.pid;
    client = await RawLegacyClient.open({ url: bare.mcpUrl }, agent);
  } else {
    const http = { url: broker.mcpUrl, bearer: await broker.token(users[0] as (typeof users)[number]) };
    client = target === 'legacy' ? await RawLegacyClient.open(http, agent) : new RawModernClient(http, agent);
  }
  const cpu = (): { gateway: number; children: number; self: number } => {
    const own = process.cpuUsage();
    return {
      gateway: procCpuUs(pid),
      children: descendants(pid).reduce((sum, child) => sum + procCpuUs(child), 0),
      self: own.user + own.system,
    };
  };
  let perRequest = '';
  const result = await closedLoop(() => client.echo(), {
    concurrency: Number(concurrency),
    maxRequests: Number.MAX_SAFE_INTEGER,
    maxMs: Number(seconds) * 1000,
    warmup: 3000,
    onStart: cpu,
    onEnd: (started, completed) => {
      const before = started as ReturnType<typeof cpu>;
      const after = cpu();
      const per = (key: keyof ReturnType<typeof cpu>): string => ((after[key] - before[key]) / completed).toFixed(0);
      perRequest = `gateway ${per('gateway')}, children ${per('children')}, load generator ${per('self')}`;
    },
  });
  const p50 = [...result.latenciesUs].sort((a, b) => a - b)[Math.floor(result.latenciesUs.length / 2)] ?? 0;
  process.stdout.write(
    `${target} c=${concurrency}: ${Math.round(result.throughput)} req/s, p50 ${Math.round(p50)} µs; CPU µs per request: ${perRequest}\n`,
  );
  if (result.errors > 0) process.stdout.write(`${result.errors} errors, the first: ${result.firstError ?? ''}\n`);
  await client.close();
  agent.destroy();
  await broker.forge.close();
} finally {
  await procs.stopAll();
}
