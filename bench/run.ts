/**
 * `npm run bench`: what the broker costs, side by side with its baselines,
 * in one run on this machine. Writes bench/results/report.md, report.json
 * and chart.svg. Every load loop is bounded in count and time, everything
 * listens on 127.0.0.1, and every process started here is stopped at the end.
 *
 *   node dist/bench/run.js [--quick] [--no-profile] [--only=phase,...]
 *
 * --quick is the regression guard run by hand before merging a hot-path
 * change (under two minutes): latency, one-session throughput at c=64, the
 * 10 MB result and token validation, against the bare bridge, without
 * supergateway, and prints issue 16's ratios with their verdicts; with
 * --only it runs those phases with a fraction of the samples (a smoke
 * check of the harness, not numbers). --no-profile skips the CPU
 * profiles and heap snapshots of the broker; --only runs some phases
 * (latency, sdk, start, throughput, spread, big, profile, auth, memory, shared, audit).
 * BENCH_BROKER_CLI=/path/to/dist/src/cli.js measures another build of the
 * broker, for an A/B comparison of a change.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type http from 'node:http';
import type { StandinUser } from '../src/standin/forgejo.js';
import { measureAuditCost } from './lib/audit-cost.js';
import { measureAuthCost } from './lib/auth-cost.js';
import { measureFirstCalls } from './lib/first-calls.js';
import { heapGrowth } from './lib/heap.js';
import { closedLoop, type LoadResult } from './lib/load.js';
import {
  keepAliveAgent,
  RawLegacyClient,
  RawModernClient,
  RawStdioClient,
  SdkClient,
  type EchoClient,
  type HttpTarget,
} from './lib/mcp.js';
import { RESULTS_DIR, ROOT, START_TIMER, SUPERGATEWAY, SUPERGATEWAY_DIR, TINY_CHILD } from './lib/paths.js';
import { availableMemory, descendants, openFds, procCpuUs, procMemory, ProcessSet, resetPeak, type Proc } from './lib/procs.js';
import { summarizeProfile } from './lib/profile.js';
import { renderChart, renderGuard, renderMarkdown } from './lib/report.js';
import { median, percentile, summarize } from './lib/stats.js';
import type {
  BenchResults,
  BigFigure,
  LatencyFigure,
  MemoryFigure,
  MemoryLevel,
  SessionStartFigure,
  ThroughputFigure,
  UpstreamModeLevel,
  UpstreamModeMemory,
  UpstreamModesResults,
} from './lib/results.js';
import {
  benchUsers,
  startBareBridge,
  startBareHttp,
  startBrokerTarget,
  startSdkTransport,
  startSupergateway,
  STANDIN_ARGV,
  STANDIN_UPSTREAM_ARGV,
  type BrokerTarget,
} from './lib/targets.js';
import { extrapolate, slope, slopes, upstreamOf, upstreamStats } from './lib/upstream-modes.js';

const QUICK = process.argv.includes('--quick');
const PROFILE = !process.argv.includes('--no-profile');
/** --only=latency,sdk,start,throughput,spread,big,profile,auth,memory,shared,audit runs just those figures (for A/B runs of a change). */
const ONLY = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice(7)
  .split(',');
/** What --quick runs without --only: the phases issue 16's ratios come from. */
const QUICK_PHASES = ['latency', 'throughput', 'big', 'auth'];
const run = (phase: string): boolean => (ONLY === undefined ? !QUICK || QUICK_PHASES.includes(phase) : ONLY.includes(phase));
/** The quick guard compares with the floor (the bare bridge), not with supergateway: it neither installs nor starts it. */
const WITH_SUPERGATEWAY = !QUICK;

/** How much of everything: the full run stays under ten minutes on the 2-core bench machine. */
const PLAN = QUICK
  ? {
      rounds: 3,
      latencyRequests: 400,
      latencyMs: 1_500,
      sdkRequests: 80,
      throughputTrials: 3,
      throughputMs: 1_000,
      sessions: 10,
      starts: 2,
      bigSamples: 3,
      memoryLevels: [0, 10, 40],
      memoryLatencyRequests: 100,
      upstreamLevels: [2, 10, 40],
      firstCallUsers: 6,
      idleCpuMs: 1_000,
    }
  : {
      rounds: 3,
      latencyRequests: 700,
      latencyMs: 2_500,
      sdkRequests: 300,
      throughputTrials: 3,
      throughputMs: 2_000,
      sessions: 100,
      starts: 12,
      bigSamples: 7,
      memoryLevels: [0, 100, 1000],
      memoryLatencyRequests: 500,
      upstreamLevels: [10, 100, 1000],
      firstCallUsers: 16,
      idleCpuMs: 3_000,
    };
const BIG_BYTES = 10 * 1024 * 1024;
/** Hard ceiling on the whole run: whatever happens, the harness stops everything by then. */
const RUN_LIMIT_MS = 25 * 60_000;

const procs = new ProcessSet();
const log = (message: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

function childEnv(forgejoUrl: string, forgejoToken: string): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', FORGEJO_URL: forgejoUrl, FORGEJO_ACCESS_TOKEN: forgejoToken };
}

/** One target of the c=1 and throughput loops: a name and how to get a client for it. */
interface LoadTarget {
  readonly name: string;
  readonly client: EchoClient;
  readonly cpu: CpuScope;
}

/** Whose CPU time a throughput trial accounts: the gateway process and its children (the load generator is this process). */
interface CpuScope {
  readonly gateway: number | undefined;
  readonly children: () => number[];
}

interface CpuSample {
  readonly gateway: number;
  readonly children: number;
  readonly client: number;
}

function cpuNow(scope: CpuScope): { pids: number[]; sample: CpuSample } {
  const pids = scope.children();
  const sample = {
    gateway: scope.gateway === undefined ? 0 : procCpuUs(scope.gateway),
    children: pids.reduce((sum, pid) => sum + procCpuUs(pid), 0),
    client: ((usage) => usage.user + usage.system)(process.cpuUsage()),
  };
  return { pids, sample };
}

function gatewayScope(proc: Proc): CpuScope {
  return { gateway: proc.pid, children: () => descendants(proc.pid) };
}

function latencyFigure(client: 'raw' | 'sdk', name: string, runs: LoadResult[]): LatencyFigure {
  const all = runs.flatMap((run) => run.latenciesUs);
  return {
    client,
    target: name,
    summary: summarize(all),
    roundP50s: runs.map((run) => summarize(run.latenciesUs).p50),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    ...(runs.find((run) => run.firstError !== undefined)?.firstError === undefined
      ? {}
      : { firstError: runs.find((run) => run.firstError !== undefined)?.firstError }),
  };
}

/** c=1, rounds interleaved across targets so the machine's noise falls on all of them alike. */
async function latencyAtOne(
  client: 'raw' | 'sdk',
  targets: readonly Pick<LoadTarget, 'name' | 'client'>[],
  requests: number,
  maxMs: number,
): Promise<LatencyFigure[]> {
  const runs = new Map<string, LoadResult[]>(targets.map((target) => [target.name, []]));
  for (let round = 0; round < PLAN.rounds; round++) {
    for (const target of targets) {
      const result = await closedLoop(() => target.client.echo(), {
        concurrency: 1,
        maxRequests: requests,
        maxMs,
        warmup: Math.min(100, requests / 5),
      });
      runs.get(target.name)?.push(result);
    }
  }
  return targets.map((target) => latencyFigure(client, target.name, runs.get(target.name) ?? []));
}

/** One bounded closed-loop trial, requests spread round-robin over the clients (sessions), CPU time accounted. */
async function throughputRun(
  concurrency: number,
  clients: readonly EchoClient[],
  scope: CpuScope,
): Promise<LoadResult & { cpu: CpuSample }> {
  let cpu: CpuSample = { gateway: Number.NaN, children: Number.NaN, client: Number.NaN };
  const result = await closedLoop((i) => (clients[i % clients.length] as EchoClient).echo(), {
    concurrency,
    maxRequests: 200_000,
    maxMs: PLAN.throughputMs,
    warmup: concurrency * 4,
    onStart: () => cpuNow(scope),
    onEnd: (started, completed) => {
      const before = started as ReturnType<typeof cpuNow>;
      const after = cpuNow({ gateway: scope.gateway, children: () => before.pids });
      cpu = {
        gateway: (after.sample.gateway - before.sample.gateway) / completed,
        children: (after.sample.children - before.sample.children) / completed,
        client: (after.sample.client - before.sample.client) / completed,
      };
    },
  });
  return { ...result, cpu };
}

/** Trials of c=16 and c=64 alternating, for one target. */
async function throughputTrials(
  target: string,
  sessions: number,
  concurrencies: readonly number[],
  clients: readonly EchoClient[],
  scope: CpuScope,
): Promise<ThroughputFigure[]> {
  const runs = new Map<number, (LoadResult & { cpu: CpuSample })[]>(concurrencies.map((c) => [c, []]));
  for (let trial = 0; trial < PLAN.throughputTrials; trial++) {
    for (const concurrency of concurrencies) runs.get(concurrency)?.push(await throughputRun(concurrency, clients, scope));
  }
  return concurrencies.map((concurrency) => throughputFigure(target, sessions, concurrency, runs.get(concurrency) ?? []));
}

function throughputFigure(
  target: string,
  sessions: number,
  concurrency: number,
  runs: (LoadResult & { cpu: CpuSample })[],
): ThroughputFigure {
  const all = runs.flatMap((run) => run.latenciesUs);
  const summary = summarize(all);
  const firstError = runs.find((run) => run.firstError !== undefined)?.firstError;
  return {
    target,
    sessions,
    concurrency,
    trials: runs.map((run) => run.throughput),
    medianRps: median(runs.map((run) => run.throughput)),
    p50us: summary.p50,
    p99us: summary.p99,
    requests: all.length,
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    ...(firstError === undefined ? {} : { firstError }),
    cpuPerRequestUs: {
      gateway: median(runs.map((run) => run.cpu.gateway)),
      children: median(runs.map((run) => run.cpu.children)),
      client: median(runs.map((run) => run.cpu.client)),
    },
  };
}

/** Trials of every target at every concurrency, interleaved trial by trial so the machine's noise falls on all of them alike. */
async function interleavedThroughput(
  targets: readonly { readonly name: string; readonly clients: readonly EchoClient[]; readonly cpu: CpuScope }[],
  sessions: number,
  concurrencies: readonly number[],
): Promise<ThroughputFigure[]> {
  const runs = new Map<string, (LoadResult & { cpu: CpuSample })[]>();
  for (let trial = 0; trial < PLAN.throughputTrials; trial++) {
    for (const target of targets) {
      for (const concurrency of concurrencies) {
        const key = `${target.name}|${concurrency}`;
        runs.set(key, [...(runs.get(key) ?? []), await throughputRun(concurrency, target.clients, target.cpu)]);
      }
    }
  }
  const figures: ThroughputFigure[] = [];
  for (const target of targets) {
    const own = concurrencies.map((concurrency) =>
      throughputFigure(target.name, sessions, concurrency, runs.get(`${target.name}|${concurrency}`) ?? []),
    );
    log(`  ${target.name}: ${own.map((figure) => `c=${figure.concurrency} ${figure.medianRps.toFixed(0)}/s`).join(', ')}`);
    figures.push(...own);
  }
  return figures;
}

/** A small separate process that times the child's own start (bench/servers/start-timer.ts). */
class StartTimer {
  private constructor(private readonly proc: Proc) {}

  static async start(set: ProcessSet): Promise<StartTimer> {
    const proc = set.start('start-timer', process.execPath, [START_TIMER], { ipc: true, env: { PATH: process.env.PATH } });
    await new Promise<void>((resolve, reject) => {
      proc.child.once('message', () => resolve());
      proc.child.once('exit', () => reject(new Error('start-timer exited')));
    });
    return new StartTimer(proc);
  }

  time(argv: readonly string[], env: Record<string, string>): Promise<{ startMs: number; firstCallMs: number }> {
    return new Promise((resolve, reject) => {
      this.proc.child.once('message', (reply: { startMs?: number; firstCallMs?: number; error?: string }) => {
        if (reply.startMs === undefined || reply.firstCallMs === undefined) reject(new Error(`start-timer: ${reply.error ?? 'no answer'}`));
        else resolve({ startMs: reply.startMs, firstCallMs: reply.firstCallMs });
      });
      this.proc.child.send({ argv, env });
    });
  }

  stop(set: ProcessSet): Promise<void> {
    return set.stop(this.proc);
  }
}

/** Opens `count` legacy sessions, a few at a time; the i-th at `target(i)` when each has its own (a user's bearer). */
async function openSessions(
  target: HttpTarget | ((index: number) => HttpTarget),
  agent: http.Agent,
  count: number,
  parallel = 8,
): Promise<RawLegacyClient[]> {
  const clients: RawLegacyClient[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const index = next++;
        clients.push(await RawLegacyClient.open(typeof target === 'function' ? target(index) : target, agent));
      }
    }),
  );
  return clients;
}

/** Each session's child runs a few calls first, so the trials measure warm children (JIT), not their first calls. */
async function warmUp(clients: readonly EchoClient[], calls = 20, parallel = 4): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < clients.length) {
        const client = clients[next++] as EchoClient;
        for (let i = 0; i < calls; i++) await client.echo();
      }
    }),
  );
}

/** Waits (bounded) until a gateway has no more than `keep` child processes left, so ended sessions do not load the next figure. */
async function childrenGone(proc: Proc, keep: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (descendants(proc.pid).length > keep && Date.now() < deadline) await delay(100);
}

async function closeAll(clients: readonly EchoClient[], parallel = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < clients.length) await (clients[next++] as EchoClient).close();
    }),
  );
}

/** Memory of a process after a full GC (via the probe), the kernel's RSS as the median of a few reads. */
async function settledMemory(proc: Proc): Promise<{ rss: number; heapUsed: number; external: number; arrayBuffers: number }> {
  const usage = await proc.probe('memory');
  const reads: number[] = [];
  for (let i = 0; i < 5; i++) {
    reads.push(proc.memory().rss);
    await delay(100);
  }
  return {
    rss: median(reads),
    heapUsed: Number(usage.heapUsed),
    external: Number(usage.external),
    arrayBuffers: Number(usage.arrayBuffers),
  };
}

function childrenOf(proc: Proc): { count: number; rss: number } {
  let rss = 0;
  const pids = descendants(proc.pid);
  for (const pid of pids) {
    try {
      rss += procMemory(pid).rss;
    } catch {
      // exited meanwhile
    }
  }
  return { count: pids.length, rss };
}

/**
 * The broker's (or supergateway's) own RSS with 0, 100 and 1,000 idle
 * sessions of the tiny child, and the c=1 latency of one more session at
 * each level.
 */
async function memoryLadder(gateway: string, proc: Proc, target: HttpTarget, snapshots: boolean): Promise<MemoryFigure> {
  const agent = keepAliveAgent();
  const measuring = await RawLegacyClient.open(target, agent);
  await closedLoop(() => measuring.echo(), { concurrency: 1, maxRequests: 200, maxMs: 3_000 });
  const idle: RawLegacyClient[] = [];
  const levels: MemoryLevel[] = [];
  for (const level of PLAN.memoryLevels) {
    const t0 = performance.now();
    idle.push(...(await openSessions(target, agent, level - idle.length)));
    const openMs = performance.now() - t0;
    await delay(1_000);
    const memory = await settledMemory(proc);
    const children = childrenOf(proc);
    const latency = await closedLoop(() => measuring.echo(), {
      concurrency: 1,
      maxRequests: PLAN.memoryLatencyRequests,
      maxMs: 8_000,
      warmup: 50,
    });
    levels.push({
      idleSessions: level,
      ...memory,
      childCount: children.count,
      childrenRss: children.rss,
      latency: summarize(latency.latenciesUs),
      openMs,
    });
    log(
      `  ${gateway}: ${level} idle sessions, RSS ${(memory.rss / 2 ** 20).toFixed(1)} MiB, heap ${(memory.heapUsed / 2 ** 20).toFixed(1)} MiB, ${children.count} child processes, p50 ${summarize(latency.latenciesUs).p50.toFixed(0)} µs`,
    );
  }
  // Heap snapshots only after every RSS figure is taken: writing one grows the process's own memory.
  const held = idle.length;
  const full = `${RESULTS_DIR}/profiles/${gateway}-${held}-idle.heapsnapshot`;
  if (snapshots) {
    mkdirSync(`${RESULTS_DIR}/profiles`, { recursive: true });
    await proc.probe('heap-snapshot', { path: full }, 120_000);
  }
  await closeAll(idle);
  await childrenGone(proc, 1);
  await delay(1_000);
  const afterMemory = await settledMemory(proc);
  let heapPerSession: MemoryFigure['heapPerSession'];
  if (snapshots) {
    const empty = `${RESULTS_DIR}/profiles/${gateway}-0-idle-after-close.heapsnapshot`;
    await proc.probe('heap-snapshot', { path: empty }, 120_000);
    const growth = heapGrowth(empty, full, held);
    heapPerSession = { total: growth.total, rows: growth.rows.slice(0, 15) };
  }
  await measuring.close();
  agent.destroy();
  const first = levels[0] as MemoryLevel;
  const last = levels[levels.length - 1] as MemoryLevel;
  const span = last.idleSessions - first.idleSessions;
  return {
    gateway,
    levels,
    rssBytesPerSession: (last.rss - first.rss) / span,
    heapBytesPerSession: (last.heapUsed + last.external - first.heapUsed - first.external) / span,
    afterClose: afterMemory,
    ...(heapPerSession === undefined ? {} : { heapPerSession }),
  };
}

/** A 10 MB tool result: time, and the gateway's peak RSS growth over its settled RSS before the call. */
async function bigResult(
  name: string,
  client: EchoClient,
  gateway: Proc | undefined,
): Promise<{ timeMs: number; peakGrowth: number | undefined }> {
  if (gateway !== undefined) {
    if (gateway.probed) await gateway.probe('memory');
    await delay(200);
    resetPeak(gateway.pid);
  }
  const before = gateway?.memory().rss;
  const t0 = performance.now();
  const length = await client.big(BIG_BYTES);
  const timeMs = performance.now() - t0;
  if (length !== BIG_BYTES) throw new Error(`${name}: big answered ${length} bytes`);
  const peak = gateway?.memory().hwm;
  return { timeMs, peakGrowth: peak === undefined || before === undefined ? undefined : peak - before };
}

// ---- Stdio vs shared upstream (issue 12) -----------------------------------------------------------

/** One broker of the stdio-vs-shared comparison: the measuring user's two clients, and the idle users' sessions of the ladder. */
interface ModeUnderTest {
  readonly mode: 'stdio' | 'shared';
  readonly broker: BrokerTarget;
  /** A Forgejo token of the measuring user, for the stand-in without the broker. */
  readonly forgejoToken: string;
  readonly agent: http.Agent;
  readonly legacy: RawLegacyClient;
  readonly modern: RawModernClient;
  readonly idle: RawLegacyClient[];
  readonly levels: UpstreamModeLevel[];
}

/** The broker after a full GC, and its descendants (children, or the upstream), as they stand. */
async function modeMemory(mode: ModeUnderTest, users: number): Promise<UpstreamModeLevel> {
  const memory = await settledMemory(mode.broker.proc);
  const family = childrenOf(mode.broker.proc);
  return {
    users,
    measured: true,
    brokerRss: memory.rss,
    brokerHeap: memory.heapUsed + memory.external,
    brokerFds: openFds(mode.broker.proc.pid),
    processes: family.count,
    descendantsRss: family.rss,
  };
}

/** CPU time of a process and of its descendants over a quiet window, % of one core each. */
async function idleCpuPercent(proc: Proc, windowMs: number): Promise<{ broker: number; descendants: number }> {
  const scope = gatewayScope(proc);
  const before = cpuNow(scope);
  const t0 = performance.now();
  await delay(windowMs);
  const after = cpuNow({ gateway: scope.gateway, children: () => before.pids });
  const percent = (usedUs: number): number => (usedUs / ((performance.now() - t0) * 1000)) * 100;
  return {
    broker: percent(after.sample.gateway - before.sample.gateway),
    descendants: percent(after.sample.children - before.sample.children),
  };
}

/** A ladder level: the idle CPU (a quiet window that also lets the broker settle), memory, then the c=1 latency of the measuring user's session. */
async function modeLevel(mode: ModeUnderTest, users: number, timings: { signInMs?: number; openMs?: number }): Promise<UpstreamModeLevel> {
  await delay(1_000);
  const idleCpu = await idleCpuPercent(mode.broker.proc, PLAN.idleCpuMs);
  const memory = await modeMemory(mode, users);
  const latency = await closedLoop(() => mode.legacy.echo(), {
    concurrency: 1,
    maxRequests: PLAN.memoryLatencyRequests,
    maxMs: 8_000,
    warmup: 50,
  });
  const level = { ...memory, idleCpuPercent: idleCpu, latency: summarize(latency.latenciesUs), ...timings };
  log(
    `  ${mode.mode}: ${users} users, broker RSS ${(level.brokerRss / 2 ** 20).toFixed(1)} MiB, heap ${(level.brokerHeap / 2 ** 20).toFixed(1)} MiB, ` +
      `${level.processes} processes of ${(level.descendantsRss / 2 ** 20).toFixed(0)} MiB, idle CPU ${idleCpu.broker.toFixed(1)} + ${idleCpu.descendants.toFixed(1)} %, ` +
      `p50 ${level.latency.p50.toFixed(0)} µs`,
  );
  return level;
}

/** The two brokers of the comparison, each with its measuring user signed in and holding a legacy session. */
async function startModes(users: readonly StandinUser[], measuringUser: StandinUser): Promise<ModeUnderTest[]> {
  const modes: ModeUnderTest[] = [];
  for (const upstream of [
    { mode: 'stdio', childArgv: STANDIN_ARGV },
    { mode: 'shared', upstreamArgv: STANDIN_UPSTREAM_ARGV },
  ] as const) {
    log(`starting the broker in ${upstream.mode} mode and signing its measuring user in`);
    const broker = await startBrokerTarget(procs, { name: `broker-${upstream.mode}`, upstream, users });
    const target: HttpTarget = { url: broker.mcpUrl, bearer: await broker.token(measuringUser) };
    const agent = keepAliveAgent();
    modes.push({
      mode: upstream.mode,
      broker,
      forgejoToken: broker.forge.issueTokens(measuringUser.login).access_token,
      agent,
      legacy: await RawLegacyClient.open(target, agent),
      modern: new RawModernClient(target, agent),
      idle: [],
      levels: [],
    });
  }
  return modes;
}

/**
 * Level by level, the modes alternating: sign the level's new users in, open
 * a legacy session for each, measure. A level whose children would take more
 * than half the memory available is extrapolated instead, and says so.
 */
async function ladderByUsers(
  modes: readonly ModeUnderTest[],
  others: readonly StandinUser[],
): Promise<Map<ModeUnderTest, UpstreamModeLevel>> {
  const baselines = new Map<ModeUnderTest, UpstreamModeLevel>();
  for (const mode of modes) baselines.set(mode, await modeLevel(mode, 0, {}));
  for (const users of PLAN.upstreamLevels) {
    for (const mode of modes) {
      const measured = [baselines.get(mode) as UpstreamModeLevel, ...mode.levels.filter((level) => level.measured)];
      const last = measured[measured.length - 1] as UpstreamModeLevel;
      const previous = measured[measured.length - 2] ?? last;
      const needs = previous === last ? 0 : slope(previous, last).totalRss * (users - last.users);
      if (mode.levels.some((level) => !level.measured) || needs > availableMemory() / 2) {
        mode.levels.push(extrapolate(users, previous, last));
        log(`  ${mode.mode}: ${users} users would need ${(needs / 2 ** 30).toFixed(1)} GiB more; extrapolated, not measured`);
        continue;
      }
      const t0 = performance.now();
      const tokens = await tokensFor(mode.broker, others.slice(mode.idle.length, users));
      const signInMs = performance.now() - t0;
      const t1 = performance.now();
      mode.idle.push(...(await openSessions((i) => ({ url: mode.broker.mcpUrl, bearer: tokens[i] }), mode.agent, tokens.length)));
      mode.levels.push(await modeLevel(mode, users, { signInMs, openMs: performance.now() - t1 }));
    }
  }
  return baselines;
}

/** The ladder's end: the upstream's counters, heap snapshots (shared mode), every idle session closed, what the broker gave back. */
async function closeLadder(mode: ModeUnderTest, baseline: UpstreamModeLevel): Promise<UpstreamModeMemory> {
  const upstreamAtTop = mode.mode === 'shared' ? await upstreamStats(mode.broker.proc.pid) : undefined;
  // Heap snapshots only after every RSS figure is taken: writing one grows the process's own memory.
  const held = mode.idle.length;
  const snapshots = PROFILE && mode.mode === 'shared' && held > 0;
  const full = `${RESULTS_DIR}/profiles/broker-${mode.mode}-${held}-users.heapsnapshot`;
  if (snapshots) {
    mkdirSync(`${RESULTS_DIR}/profiles`, { recursive: true });
    await mode.broker.proc.probe('heap-snapshot', { path: full }, 120_000);
  }
  await closeAll(mode.idle);
  // What stays: the measuring user's child in stdio mode, the upstream in shared mode.
  await childrenGone(mode.broker.proc, 1);
  await delay(1_000);
  const afterClose = await modeMemory(mode, 0);
  let heapPerSession: UpstreamModeMemory['heapPerSession'];
  if (snapshots) {
    const empty = `${RESULTS_DIR}/profiles/broker-${mode.mode}-0-users-after-close.heapsnapshot`;
    await mode.broker.proc.probe('heap-snapshot', { path: empty }, 120_000);
    const growth = heapGrowth(empty, full, held);
    heapPerSession = { total: growth.total, rows: growth.rows.slice(0, 15) };
  }
  return {
    mode: mode.mode,
    baseline,
    levels: mode.levels,
    slopes: slopes(mode.levels),
    afterClose,
    ...(heapPerSession === undefined ? {} : { heapPerSession }),
    ...(upstreamAtTop === undefined ? {} : { upstreamStats: { atTop: upstreamAtTop, atEnd: await upstreamStats(mode.broker.proc.pid) } }),
  };
}

/**
 * c=1 latency and c=64 throughput on the measuring user's session, both eras,
 * interleaved between the modes and their floors (the stand-in without the
 * broker); then, with profiling on, where each broker's CPU goes at c=64.
 */
async function oneSessionFigures(
  modes: readonly ModeUnderTest[],
  out: UpstreamModesResults,
  profiles: BenchResults['profiles'],
): Promise<void> {
  const [stdio, shared] = modes as [ModeUnderTest, ModeUnderTest];
  const child = (await RawStdioClient.start(process.execPath, STANDIN_ARGV.slice(1), childEnv(stdio.broker.forge.url, stdio.forgejoToken)))
    .client;
  const upstream = upstreamOf(shared.broker.proc.pid);
  if (upstream === undefined) throw new Error('the shared-mode broker runs no upstream');
  const agent = keepAliveAgent();
  const direct = await RawLegacyClient.open({ url: upstream.url, bearer: shared.forgejoToken }, agent);
  const targets: LoadTarget[] = [
    { name: 'direct · stdio', client: child, cpu: { gateway: undefined, children: () => [child.child.pid as number] } },
    { name: 'direct · shared', client: direct, cpu: { gateway: undefined, children: () => [upstream.pid] } },
    ...(['legacy', 'modern'] as const).flatMap((era) =>
      modes.map((mode) => ({
        name: `${era} · ${mode.mode}`,
        client: era === 'legacy' ? mode.legacy : mode.modern,
        cpu: gatewayScope(mode.broker.proc),
      })),
    ),
  ];
  // A target whose first call fails is reported as such, and the others are measured.
  const answering: LoadTarget[] = [];
  for (const target of targets) {
    try {
      await target.client.echo();
      answering.push(target);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      out.unavailable.push({ target: target.name, error: message });
      log(`  ${target.name} fails, not measured: ${message.slice(0, 300)}`);
    }
  }
  log('stdio vs shared: latency at concurrency 1, one session');
  out.latency.push(...(await latencyAtOne('raw', answering, PLAN.latencyRequests, PLAN.latencyMs)));
  log('stdio vs shared: throughput at concurrency 64, one session');
  out.throughput.push(
    ...(await interleavedThroughput(
      answering.map((target) => ({ ...target, clients: [target.client] })),
      1,
      [64],
    )),
  );
  if (PROFILE) {
    log('stdio vs shared: CPU profiles of both brokers (legacy, c=64, one session)');
    mkdirSync(`${RESULTS_DIR}/profiles`, { recursive: true });
    for (const mode of modes) {
      const name = `broker-${mode.mode}-legacy-c64`;
      const path = `${RESULTS_DIR}/profiles/${name}.cpuprofile`;
      await mode.broker.proc.probe('cpu-start');
      await closedLoop(() => mode.legacy.echo(), { concurrency: 64, maxRequests: 100_000, maxMs: PLAN.throughputMs });
      await mode.broker.proc.probe('cpu-stop', { path });
      profiles.push({ name, ...summarizeProfile(path) });
    }
  }
  await child.close();
  await direct.close();
  agent.destroy();
}

/** Issue 16: a 10 MB result through each mode and era, the modes interleaved sample by sample (shared mode's answers pass through as stdio's do). */
async function bigByMode(modes: readonly ModeUnderTest[]): Promise<BigFigure[]> {
  const targets = modes.flatMap((mode) => [
    { name: `legacy · ${mode.mode}`, client: mode.legacy, proc: mode.broker.proc },
    { name: `modern · ${mode.mode}`, client: mode.modern, proc: mode.broker.proc },
  ]);
  const runs = new Map<string, { timeMs: number; peakGrowth: number | undefined }[]>();
  for (let i = 0; i < PLAN.bigSamples; i++) {
    for (const target of targets)
      runs.set(target.name, [...(runs.get(target.name) ?? []), await bigResult(target.name, target.client, target.proc)]);
  }
  return [...runs].map(([target, samples]) => {
    const growth = samples.map((run) => run.peakGrowth).filter((value): value is number => value !== undefined);
    const figure: BigFigure = {
      target,
      bytes: BIG_BYTES,
      timesMs: samples.map((run) => run.timeMs),
      medianMs: median(samples.map((run) => run.timeMs)),
      peakGrowths: growth,
      medianPeakGrowth: growth.length === 0 ? undefined : median(growth),
    };
    log(
      `  ${target}: ${figure.medianMs.toFixed(0)} ms, peak RSS growth ${((figure.medianPeakGrowth ?? NaN) / BIG_BYTES).toFixed(2)}× the message`,
    );
    return figure;
  });
}

/**
 * The broker with a child per session and with one shared HTTP upstream, side
 * by side: memory and processes with 10, 100 and 1,000 signed-in users each
 * holding a legacy session, on brokers that carried no load yet (so their
 * RSS holds no slack from it); c=64 throughput spread over the first 100
 * users' sessions; then, the idle sessions closed, c=1 latency and c=64
 * throughput on one session.
 */
async function stdioVsShared(out: UpstreamModesResults, profiles: BenchResults['profiles']): Promise<void> {
  const users = benchUsers(Math.max(...PLAN.upstreamLevels) + PLAN.firstCallUsers);
  const [measuringUser, ...others] = users as [StandinUser, ...StandinUser[]];
  const newcomers = others.splice(others.length - PLAN.firstCallUsers);
  const modes = await startModes(users, measuringUser);

  log(`stdio vs shared: memory with ${PLAN.upstreamLevels.join(', ')} signed-in users, each holding a legacy session`);
  const baselines = await ladderByUsers(modes, others);

  const spread = Math.min(PLAN.sessions, ...modes.map((mode) => mode.idle.length));
  log(`stdio vs shared: throughput at concurrency 64 spread over ${spread} users' sessions`);
  const spreadTargets = modes.map((mode) => ({
    name: `legacy · ${mode.mode}`,
    clients: mode.idle.slice(0, spread),
    cpu: gatewayScope(mode.broker.proc),
  }));
  for (const target of spreadTargets) await warmUp(target.clients);
  out.throughput.push(...(await interleavedThroughput(spreadTargets, spread, [64])));

  for (const mode of modes) out.memory.push(await closeLadder(mode, baselines.get(mode) as UpstreamModeLevel));
  log(`stdio vs shared: the first call of ${newcomers.length} new users (signed in, no call yet) against their next`);
  const firstCallModes = [];
  for (const mode of modes)
    firstCallModes.push({ mode: mode.mode, url: mode.broker.mcpUrl, agent: mode.agent, bearers: await tokensFor(mode.broker, newcomers) });
  const [, shared] = modes as [ModeUnderTest, ModeUnderTest];
  const upstream = upstreamOf(shared.broker.proc.pid);
  const direct =
    upstream === undefined
      ? undefined
      : {
          url: upstream.url,
          agent: shared.agent,
          forgejoTokens: newcomers.map((user) => shared.broker.forge.issueTokens(user.login).access_token),
        };
  out.firstCalls.push(...(await measureFirstCalls(firstCallModes, direct)));
  for (const figure of out.firstCalls)
    log(
      `  ${figure.target}: first ${figure.first.p50.toFixed(0)} µs, next ${figure.next.p50.toFixed(0)} µs, added p50 ${figure.added.p50.toFixed(0)} µs`,
    );
  log('stdio vs shared: a 10 MB result on one session');
  out.big?.push(...(await bigByMode(modes)));
  await oneSessionFigures(modes, out, profiles);
  for (const mode of modes) {
    await mode.legacy.close();
    await procs.stop(mode.broker.proc, 20_000);
    await mode.broker.forge.close();
    mode.agent.destroy();
  }
}

function ensureSupergateway(): void {
  if (existsSync(SUPERGATEWAY)) return;
  log('installing the pinned supergateway baseline into bench/supergateway (npm ci)');
  execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: SUPERGATEWAY_DIR, stdio: 'inherit' });
}

function gitDescribe(): { commit: string; dirtySrc: number } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return { commit, dirtySrc: dirty === '' ? 0 : dirty.split('\n').length };
  } catch {
    return { commit: 'unknown', dirtySrc: -1 };
  }
}

async function tokensFor(broker: BrokerTarget, users: readonly StandinUser[]): Promise<string[]> {
  const tokens: string[] = [];
  let next = 0;
  const list = [...users];
  const result = new Array<string>(list.length);
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < list.length) {
        const i = next++;
        result[i] = await broker.token(list[i] as StandinUser);
      }
    }),
  );
  tokens.push(...result);
  return tokens;
}

async function main(): Promise<void> {
  const started = Date.now();
  mkdirSync(RESULTS_DIR, { recursive: true });
  // Only the side-by-side phases need the baseline; `--only=audit` (or shared) runs without installing it.
  if (WITH_SUPERGATEWAY && ['latency', 'sdk', 'start', 'throughput', 'spread', 'big', 'profile', 'auth', 'memory'].some(run)) {
    ensureSupergateway();
  }
  const { commit, dirtySrc } = gitDescribe();
  const results: BenchResults = {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryBytes: totalmem(),
      loadAverageAtStart: loadavg(),
      commit,
      dirtySrc,
      quick: QUICK,
      plan: PLAN,
      durationS: 0,
    },
    latency: [],
    throughput: [],
    sessionStart: [],
    memory: [],
    big: [],
    auth: [],
    profiles: [],
    upstreamModes: { latency: [], throughput: [], memory: [], unavailable: [], firstCalls: [], big: [] },
  };

  // ---- Main targets, all with the real stand-in child ------------------------------------
  if (['latency', 'sdk', 'start', 'throughput', 'spread', 'big', 'profile', 'auth'].some(run)) {
    const users = benchUsers(PLAN.sessions + PLAN.starts + 2);
    const [benchUser, ...others] = users as [StandinUser, ...StandinUser[]];
    const spreadUsers = others.slice(0, PLAN.sessions);
    const startUsers = others.slice(PLAN.sessions, PLAN.sessions + PLAN.starts);
    log('starting the broker (serve, SQLite store, Forgejo stand-in) and signing in');
    const broker = await startBrokerTarget(procs, { name: 'broker', upstream: { mode: 'stdio', childArgv: STANDIN_ARGV }, users });
    const token = await broker.token(benchUser);
    const forgejoToken = broker.forge.issueTokens('bench').access_token;
    const env = childEnv(broker.forge.url, forgejoToken);
    log(`starting ${WITH_SUPERGATEWAY ? 'supergateway, ' : ''}bare HTTP, bare bridge`);
    const supergateway = WITH_SUPERGATEWAY
      ? await startSupergateway(procs, 'supergateway', STANDIN_ARGV, broker.forge.url, forgejoToken)
      : undefined;
    const bareHttp = await startBareHttp(procs);
    const sdkTransport = await startSdkTransport(procs);
    const bareBridge = await startBareBridge(procs, broker.forge.url, forgejoToken);

    const brokerTarget: HttpTarget = { url: broker.mcpUrl, bearer: token };
    const signedIn = new Map<string, Promise<string[]>>();
    const tokens = (list: readonly StandinUser[]): Promise<string[]> => {
      const key = list.map((user) => user.login).join(',');
      const known = signedIn.get(key) ?? tokensFor(broker, list);
      signedIn.set(key, known);
      return known;
    };
    const agents = {
      broker: keepAliveAgent(),
      modern: keepAliveAgent(),
      sg: keepAliveAgent(),
      bare: keepAliveAgent(),
      bridge: keepAliveAgent(),
    };
    const direct = (await RawStdioClient.start(process.execPath, STANDIN_ARGV.slice(1), env)).client;
    const raw: LoadTarget[] = [
      { name: 'direct (stdio)', client: direct, cpu: { gateway: undefined, children: () => [direct.child.pid as number] } },
      { name: 'bare HTTP', client: await RawLegacyClient.open({ url: bareHttp.mcpUrl }, agents.bare), cpu: gatewayScope(bareHttp.proc) },
      {
        name: 'SDK transport alone',
        client: await RawLegacyClient.open({ url: sdkTransport.mcpUrl }, agents.bare),
        cpu: gatewayScope(sdkTransport.proc),
      },
      {
        name: 'bare bridge',
        client: await RawLegacyClient.open({ url: bareBridge.mcpUrl }, agents.bridge),
        cpu: gatewayScope(bareBridge.proc),
      },
      ...(supergateway === undefined
        ? []
        : [
            {
              name: 'supergateway',
              client: await RawLegacyClient.open({ url: supergateway.mcpUrl }, agents.sg),
              cpu: gatewayScope(supergateway.proc),
            },
          ]),
      { name: 'broker legacy', client: await RawLegacyClient.open(brokerTarget, agents.broker), cpu: gatewayScope(broker.proc) },
      { name: 'broker modern', client: new RawModernClient(brokerTarget, agents.modern), cpu: gatewayScope(broker.proc) },
    ];

    const rawClient = (name: string): EchoClient => {
      const found = raw.find((target) => target.name === name);
      if (found === undefined) throw new Error(`no target ${name}`);
      return found.client;
    };

    // ---- Latency at c=1 ---------------------------------------------------------------------
    if (run('latency')) {
      log('latency at concurrency 1, raw clients');
      // The quick guard: the floor, the bridge and the broker only.
      const measured = QUICK ? raw.filter((target) => !['bare HTTP', 'SDK transport alone'].includes(target.name)) : raw;
      results.latency.push(...(await latencyAtOne('raw', measured, PLAN.latencyRequests, PLAN.latencyMs)));
      if (supergateway !== undefined) {
        log('latency at concurrency 1: supergateway, 2026-07-28 request (a child spawned per request)');
        const sgModern = new RawModernClient({ url: supergateway.mcpUrl }, agents.sg);
        const sgModernRuns: LoadResult[] = [];
        for (let round = 0; round < PLAN.rounds; round++)
          sgModernRuns.push(await closedLoop(() => sgModern.echo(), { concurrency: 1, maxRequests: 4, maxMs: 5_000 }));
        results.latency.push(latencyFigure('raw', 'supergateway modern', sgModernRuns));
      }
    }

    if (run('sdk')) {
      log('latency at concurrency 1, SDK clients');
      const sdk: Pick<LoadTarget, 'name' | 'client'>[] = [
        { name: 'direct (stdio)', client: await SdkClient.stdio(process.execPath, STANDIN_ARGV.slice(1), env) },
        ...(supergateway === undefined
          ? []
          : [{ name: 'supergateway', client: await SdkClient.http({ url: supergateway.mcpUrl }, 'legacy') }]),
        { name: 'broker legacy', client: await SdkClient.http(brokerTarget, 'legacy') },
        { name: 'broker modern', client: await SdkClient.http(brokerTarget, 'auto') },
      ];
      results.latency.push(...(await latencyAtOne('sdk', sdk, PLAN.sdkRequests, PLAN.latencyMs)));
      await closeAll(sdk.map((target) => target.client));
    }

    // ---- Session start ----------------------------------------------------------------------
    if (run('start')) {
      log('session start');
      const starts = {
        child: [] as number[],
        childFirstCall: [] as number[],
        legacy: [] as number[],
        modern: [] as number[],
        sg: [] as number[],
      };
      const startTokens = await tokens(startUsers);
      const startTimer = await StartTimer.start(procs);
      for (let i = 0; i < PLAN.starts; i++) {
        const own = await startTimer.time(STANDIN_ARGV, env);
        starts.child.push(own.startMs);
        starts.childFirstCall.push(own.firstCallMs);
        let t0 = performance.now();
        const session = await RawLegacyClient.open(brokerTarget, agents.broker);
        starts.legacy.push(performance.now() - t0);
        await session.close();
        const fresh = new RawModernClient({ url: broker.mcpUrl, bearer: startTokens[i] }, agents.modern);
        t0 = performance.now();
        await fresh.echo();
        starts.modern.push(performance.now() - t0);
        if (supergateway !== undefined) {
          t0 = performance.now();
          const sgSession = await RawLegacyClient.open({ url: supergateway.mcpUrl }, agents.sg);
          starts.sg.push(performance.now() - t0);
          await sgSession.close();
        }
      }
      await startTimer.stop(procs);
      const startFigure = (target: string, samples: number[], own: number[] | undefined): SessionStartFigure => {
        const paired = own === undefined ? undefined : samples.map((value, i) => value - (own[i] as number)).sort((a, b) => a - b);
        return {
          target,
          samplesMs: samples,
          medianMs: median(samples),
          overheadMs: paired === undefined ? undefined : median(paired),
          overheadIqrMs: paired === undefined ? undefined : [percentile(paired, 25), percentile(paired, 75)],
        };
      };
      results.sessionStart.push(
        startFigure('child alone (from a small Node process): spawn → initialize answered', starts.child, undefined),
        startFigure('child alone (from a small Node process): spawn → first echo answered', starts.childFirstCall, undefined),
        startFigure('broker legacy: initialize answered (vs child → initialize)', starts.legacy, starts.child),
        startFigure("broker modern: a user's first echo answered (vs child → first echo)", starts.modern, starts.childFirstCall),
      );
      if (starts.sg.length > 0)
        results.sessionStart.push(startFigure('supergateway: initialize answered (vs child → initialize)', starts.sg, starts.child));
    }

    // ---- Throughput, one session --------------------------------------------------------------
    if (run('throughput')) {
      log(`throughput through one session at concurrency ${QUICK ? '64' : '16 and 64'}`);
      // The quick guard: c=64 through the bridge and the broker only.
      const oneSession = raw.filter((target) =>
        QUICK ? ['bare bridge', 'broker legacy', 'broker modern'].includes(target.name) : target.name !== 'bare HTTP',
      );
      results.throughput.push(
        ...(await interleavedThroughput(
          oneSession.map((target) => ({ ...target, clients: [target.client] })),
          1,
          QUICK ? [64] : [16, 64],
        )),
      );
    }

    // ---- Throughput, spread over 100 sessions ---------------------------------------------------
    if (run('spread')) {
      log(`throughput spread over ${PLAN.sessions} sessions`);
      for (const [name, target, agent, proc] of [
        ...(supergateway === undefined ? [] : [['supergateway', { url: supergateway.mcpUrl }, agents.sg, supergateway.proc] as const]),
        ['broker legacy', brokerTarget, agents.broker, broker.proc] as const,
      ]) {
        const clients = await openSessions(target, agent, PLAN.sessions);
        await warmUp(clients);
        results.throughput.push(...(await throughputTrials(name, PLAN.sessions, [16, 64], clients, gatewayScope(proc))));
        await closeAll(clients);
        await childrenGone(proc, name === 'supergateway' ? 1 : 2);
        const last = results.throughput.slice(-2);
        log(`  ${name}: ${last.map((figure) => `c=${figure.concurrency} ${figure.medianRps.toFixed(0)}/s`).join(', ')}`);
      }
      const spreadTokens = await tokens(spreadUsers);
      const modernClients = spreadTokens.map((bearer) => new RawModernClient({ url: broker.mcpUrl, bearer }, agents.modern));
      // The first request of each user starts that user's child; not part of the figure.
      await warmUp(modernClients);
      results.throughput.push(
        ...(await throughputTrials('broker modern', PLAN.sessions, [16, 64], modernClients, gatewayScope(broker.proc))),
      );
      log(
        `  broker modern: ${results.throughput
          .slice(-2)
          .map((figure) => `c=${figure.concurrency} ${figure.medianRps.toFixed(0)}/s`)
          .join(', ')}`,
      );
    }

    // ---- 10 MB result ---------------------------------------------------------------------------
    if (run('big')) {
      log('a 10 MB tool result');
      const bigTargets: [string, EchoClient, Proc | undefined][] = [
        ...(QUICK ? [] : [['direct (stdio)', direct, undefined] as [string, EchoClient, Proc | undefined]]),
        ['bare bridge', rawClient('bare bridge'), bareBridge.proc],
        ...(supergateway === undefined
          ? []
          : [['supergateway', rawClient('supergateway'), supergateway.proc] as [string, EchoClient, Proc]]),
        ['broker legacy', rawClient('broker legacy'), broker.proc],
        ['broker modern', rawClient('broker modern'), broker.proc],
      ];
      const bigRuns = new Map<string, { timeMs: number; peakGrowth: number | undefined }[]>();
      for (let i = 0; i < PLAN.bigSamples; i++) {
        for (const [name, client, proc] of bigTargets) {
          const runs = bigRuns.get(name) ?? [];
          runs.push(await bigResult(name, client, proc));
          bigRuns.set(name, runs);
        }
      }
      for (const [name, runs] of bigRuns) {
        const growth = runs.map((run) => run.peakGrowth).filter((value): value is number => value !== undefined);
        const figure: BigFigure = {
          target: name,
          bytes: BIG_BYTES,
          timesMs: runs.map((run) => run.timeMs),
          medianMs: median(runs.map((run) => run.timeMs)),
          peakGrowths: growth,
          medianPeakGrowth: growth.length === 0 ? undefined : median(growth),
        };
        results.big.push(figure);
      }
    }

    // ---- CPU profiles of the broker under load ---------------------------------------------------
    if (PROFILE && run('profile')) {
      log('CPU profiles of the broker (c=64, one session; one 10 MB result)');
      mkdirSync(`${RESULTS_DIR}/profiles`, { recursive: true });
      const profiled: [string, () => Promise<unknown>, number][] = [
        ['broker-legacy-c64', () => rawClient('broker legacy').echo(), 64],
        ['broker-modern-c64', () => rawClient('broker modern').echo(), 64],
        ['broker-legacy-10MB', () => rawClient('broker legacy').big(BIG_BYTES), 1],
      ];
      for (const [name, op, concurrency] of profiled) {
        const path = `${RESULTS_DIR}/profiles/${name}.cpuprofile`;
        await broker.proc.probe('cpu-start');
        await closedLoop(op, { concurrency, maxRequests: concurrency === 1 ? 3 : 100_000, maxMs: PLAN.throughputMs });
        await broker.proc.probe('cpu-stop', { path });
        results.profiles.push({ name, ...summarizeProfile(path) });
      }
    }

    // ---- Token validation -------------------------------------------------------------------------
    if (run('auth')) {
      log('token validation (BrokerAuthenticator.authenticate on the broker store)');
      results.auth.push(
        ...(await measureAuthCost(
          broker.dataDir,
          broker.url,
          [token, ...(await tokens(startUsers)), ...(await tokens(spreadUsers))],
          QUICK,
        )),
      );
    }

    await direct.close();
    await procs.stop(broker.proc);
    if (supergateway !== undefined) await procs.stop(supergateway.proc);
    await procs.stop(bareHttp.proc);
    await procs.stop(sdkTransport.proc);
    await procs.stop(bareBridge.proc);
    await broker.forge.close();
    for (const agent of Object.values(agents)) agent.destroy();
  }

  // ---- Memory per idle session, tiny children -----------------------------------------------------
  if (run('memory')) {
    log(`memory with ${PLAN.memoryLevels.join(', ')} idle sessions (tiny bash child)`);
    const tinyArgv = ['/bin/bash', TINY_CHILD];
    const tinyUsers = benchUsers(0);
    const tinyBroker = await startBrokerTarget(procs, {
      name: 'broker-tiny',
      upstream: { mode: 'stdio', childArgv: tinyArgv },
      users: tinyUsers,
    });
    const tinyToken = await tinyBroker.token(tinyUsers[0] as StandinUser);
    results.memory.push(
      await memoryLadder('broker', tinyBroker.proc, { url: tinyBroker.mcpUrl, bearer: tinyToken, echoReply: 'ok' }, PROFILE),
    );
    await procs.stop(tinyBroker.proc, 20_000);
    await tinyBroker.forge.close();
    if (WITH_SUPERGATEWAY) {
      const tinySg = await startSupergateway(procs, 'supergateway-tiny', tinyArgv, 'http://127.0.0.1:9', 'unused');
      results.memory.push(await memoryLadder('supergateway', tinySg.proc, { url: tinySg.mcpUrl, echoReply: 'ok' }, false));
      await procs.stop(tinySg.proc, 20_000);
    }
  }

  // ---- Stdio vs shared upstream: a child per session, or one multi-tenant forgejo-mcp over HTTP -----------
  if (run('shared')) await stdioVsShared(results.upstreamModes, results.profiles);

  // ---- The audit log's cost: bursts of 1,000 tools/call, audit on against off ---------------------------
  if (run('audit')) {
    log('audit log: bursts of 1,000 tools/call, BROKER_AUDIT on against off (same run, alternating)');
    const figure = await measureAuditCost(procs, QUICK, log);
    results.auditCost = figure;
    log(
      `audit on ${figure.auditOnCallsPerS.toFixed(0)} calls/s, off ${figure.auditOffCallsPerS.toFixed(0)} calls/s: ` +
        `ratio ${figure.ratio.toFixed(3)} (${((1 - figure.ratio) * 100).toFixed(1)}% cost); ${figure.recorded} of ${figure.called} calls recorded`,
    );
  }

  results.meta.durationS = (Date.now() - started) / 1000;
  writeFileSync(`${RESULTS_DIR}/report.json`, JSON.stringify(results, null, 2) + '\n');
  writeFileSync(`${RESULTS_DIR}/chart.svg`, renderChart(results));
  writeFileSync(`${RESULTS_DIR}/report.md`, renderMarkdown(results));
  log(`done in ${results.meta.durationS.toFixed(0)} s: bench/results/report.md, report.json, chart.svg`);
  process.stdout.write(`\n${renderGuard(results)}\n`);
}

const watchdog = setTimeout(() => {
  log(`the run exceeded ${RUN_LIMIT_MS / 60_000} minutes; stopping everything`);
  void procs.stopAll().finally(() => process.exit(1));
}, RUN_LIMIT_MS);
watchdog.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping every process the bench started`);
    void procs.stopAll().finally(() => process.exit(130));
  });
}

main()
  .catch((error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await procs.stopAll();
    clearTimeout(watchdog);
    // Keep-alive sockets and the stand-ins' servers must not hold the process.
    setTimeout(() => process.exit(), 200).unref();
  });
