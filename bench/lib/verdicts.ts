/** Where each target of issue 6 (ahead of supergateway) and issue 16 (close to the floor) stands in a run. */
import { fmt, times } from './markdown.js';
import type { BenchResults, LatencyFigure, ThroughputFigure } from './results.js';

const MiB = 2 ** 20;
const KiB = 1024;

export function latency(results: BenchResults, client: 'raw' | 'sdk', target: string): LatencyFigure | undefined {
  return results.latency.find((figure) => figure.client === client && figure.target === target);
}

export function throughput(results: BenchResults, target: string, sessions: number, concurrency: number): ThroughputFigure | undefined {
  return results.throughput.find(
    (figure) => figure.target === target && figure.sessions === sessions && figure.concurrency === concurrency,
  );
}

export interface Verdict {
  readonly target: string;
  readonly figure: string;
  readonly met: boolean | undefined;
}

/** Where each of issue 6's targets stands in this run. */
export function verdicts(results: BenchResults): Verdict[] {
  const out: Verdict[] = [];
  const floor = latency(results, 'raw', 'direct (stdio)')?.summary.p50;
  const sg = latency(results, 'raw', 'supergateway')?.summary.p50;
  for (const era of ['broker legacy', 'broker modern']) {
    const broker = latency(results, 'raw', era)?.summary.p50;
    const added = broker === undefined || floor === undefined ? undefined : broker - floor;
    const sgAdded = sg === undefined || floor === undefined ? undefined : sg - floor;
    out.push({
      target: `p50 added latency at c=1 ≤ supergateway's, auth on (${era.replace('broker ', '')})`,
      figure: `${fmt(added)} µs vs ${fmt(sgAdded)} µs (${times(added !== undefined && sgAdded !== undefined ? added / sgAdded : undefined)})`,
      met: added === undefined || sgAdded === undefined ? undefined : added <= sgAdded,
    });
  }
  const sessions = Math.max(...results.throughput.map((figure) => figure.sessions));
  for (const era of ['broker legacy', 'broker modern']) {
    for (const count of [1, sessions]) {
      const broker = throughput(results, era, count, 64)?.medianRps;
      const base = throughput(results, 'supergateway', count, 64)?.medianRps;
      const ratio = broker === undefined || base === undefined ? undefined : broker / base;
      out.push({
        target: `throughput at c=64 ≥ 1.5× supergateway's (${era.replace('broker ', '')}, ${count} session${count === 1 ? '' : 's'})`,
        figure: `${fmt(broker)} vs ${fmt(base)} req/s (${times(ratio)})`,
        met: ratio === undefined ? undefined : ratio >= 1.5,
      });
    }
  }
  const memory = results.memory.find((figure) => figure.gateway === 'broker');
  if (memory !== undefined) {
    out.push({
      target: '< 100 KB of broker RSS per idle session',
      figure: `${fmt(memory.rssBytesPerSession / KiB, 1)} KiB per session (heap + external: ${fmt(memory.heapBytesPerSession / KiB, 1)} KiB)`,
      met: memory.rssBytesPerSession < 100 * 1000,
    });
    const first = memory.levels[0];
    const last = memory.levels[memory.levels.length - 1];
    const ratio = first === undefined || last === undefined ? undefined : last.latency.p50 / first.latency.p50;
    out.push({
      target: `flat latency with ${last?.idleSessions ?? '?'} idle sessions (p50 within 1.25× of 0)`,
      figure: `p50 ${fmt(first?.latency.p50)} µs → ${fmt(last?.latency.p50)} µs (${times(ratio)})`,
      met: ratio === undefined ? undefined : ratio <= 1.25,
    });
  }
  for (const era of ['broker legacy', 'broker modern']) {
    const big = results.big.find((figure) => figure.target === era);
    const growth = big?.medianPeakGrowth;
    const ratio = growth === undefined || big === undefined ? undefined : growth / big.bytes;
    out.push({
      target: `10 MB result: peak RSS growth < 3× the message (${era.replace('broker ', '')})`,
      figure: `${fmt(growth === undefined ? undefined : growth / MiB, 1)} MiB (${times(ratio)})`,
      met: ratio === undefined ? undefined : ratio < 3,
    });
  }
  return out;
}

const era16 = (era: string): string => era.replace('broker ', '');

/** Added p50 at c=1 over the child alone, microseconds. */
function added(results: BenchResults, target: string): number | undefined {
  const floor = latency(results, 'raw', 'direct (stdio)')?.summary.p50;
  const p50 = latency(results, 'raw', target)?.summary.p50;
  return floor === undefined || p50 === undefined ? undefined : p50 - floor;
}

function ratioVerdict(
  target: string,
  figure: (ratio: string) => string,
  ratio: number | undefined,
  met: (ratio: number) => boolean,
): Verdict {
  return { target, figure: figure(times(ratio)), met: ratio === undefined || !Number.isFinite(ratio) ? undefined : met(ratio) };
}

/** Issue 16's targets: the floor is the bare bridge (node:http, one child, id renaming, no SDK transport, no auth). */
export function issue16Verdicts(results: BenchResults): Verdict[] {
  const out: Verdict[] = [];
  const bridgeAdded = added(results, 'bare bridge');
  for (const era of ['broker legacy', 'broker modern']) {
    const brokerAdded = added(results, era);
    out.push(
      ratioVerdict(
        `added p50 at c=1, auth on ≤ 1.25× the bare bridge's (${era16(era)})`,
        (ratio) => `${fmt(brokerAdded)} vs ${fmt(bridgeAdded)} µs (${ratio})`,
        brokerAdded === undefined || bridgeAdded === undefined ? undefined : brokerAdded / bridgeAdded,
        (ratio) => ratio <= 1.25,
      ),
    );
  }
  const bridgeRps = throughput(results, 'bare bridge', 1, 64)?.medianRps;
  for (const era of ['broker legacy', 'broker modern']) {
    const rps = throughput(results, era, 1, 64)?.medianRps;
    out.push(
      ratioVerdict(
        `throughput at c=64, one session ≥ 0.6× the bare bridge's (${era16(era)})`,
        (ratio) => `${fmt(rps)} vs ${fmt(bridgeRps)} req/s (${ratio})`,
        rps === undefined || bridgeRps === undefined ? undefined : rps / bridgeRps,
        (ratio) => ratio >= 0.6,
      ),
    );
  }
  const sessions = Math.max(0, ...results.throughput.map((figure) => figure.sessions));
  const sgCpu = sessions > 1 ? throughput(results, 'supergateway', sessions, 64)?.cpuPerRequestUs.gateway : undefined;
  if (sgCpu !== undefined) {
    for (const era of ['broker legacy', 'broker modern']) {
      const cpu = throughput(results, era, sessions, 64)?.cpuPerRequestUs.gateway;
      out.push(
        ratioVerdict(
          `broker CPU per request over ${sessions} sessions, c=64 ≤ 0.5× supergateway's (${era16(era)})`,
          (ratio) => `${fmt(cpu)} vs ${fmt(sgCpu)} µs (${ratio})`,
          cpu === undefined ? undefined : cpu / sgCpu,
          (ratio) => ratio <= 0.5,
        ),
      );
    }
  }
  for (const era of ['broker legacy', 'broker modern']) {
    const big = results.big.find((figure) => figure.target === era);
    const growth = big?.medianPeakGrowth;
    out.push(
      ratioVerdict(
        `10 MB result: peak RSS growth ≤ 1.5× the message (${era16(era)})`,
        (ratio) => `${fmt(growth === undefined ? undefined : growth / MiB, 1)} MiB (${ratio})`,
        growth === undefined || big === undefined ? undefined : growth / big.bytes,
        (ratio) => ratio <= 1.5,
      ),
    );
  }
  const cached = results.auth.find((figure) => figure.storeReadsPerCall !== undefined);
  const uncached = results.auth.find((figure) => figure.name.startsWith('hot, no cache'));
  if (cached !== undefined) {
    out.push({
      target: 'token validation: a hot request does no store read (bounded cache by token hash)',
      figure: `${fmt(cached.storeReadsPerCall, 3)} store reads per request; ${fmt(cached.perCallUs, 1)} µs vs ${fmt(uncached?.perCallUs, 1)} µs uncached`,
      met: cached.storeReadsPerCall === 0,
    });
  }
  const modes = results.upstreamModes;
  const modeLatency = (name: string): number | undefined => modes.latency.find((figure) => figure.target === name)?.summary.p50;
  const modeRps = (name: string): number | undefined =>
    modes.throughput.find((figure) => figure.target === name && figure.concurrency === 64)?.medianRps;
  for (const era of ['legacy', 'modern']) {
    const shared = modeLatency(`${era} · shared`);
    const stdio = modeLatency(`${era} · stdio`);
    if (shared === undefined || stdio === undefined) continue;
    out.push(
      ratioVerdict(
        `shared upstream: p50 at c=1 within 1.2× of stdio mode (${era})`,
        (ratio) => `${fmt(shared)} vs ${fmt(stdio)} µs (${ratio})`,
        shared / stdio,
        (ratio) => ratio <= 1.2,
      ),
    );
    const sharedRps = modeRps(`${era} · shared`);
    const stdioRps = modeRps(`${era} · stdio`);
    out.push(
      ratioVerdict(
        `shared upstream: throughput at c=64 within 1.2× of stdio mode (${era})`,
        (ratio) => `${fmt(sharedRps)} vs ${fmt(stdioRps)} req/s (${ratio})`,
        sharedRps === undefined || stdioRps === undefined ? undefined : sharedRps / stdioRps,
        (ratio) => ratio >= 1 / 1.2,
      ),
    );
  }
  for (const figure of (modes.firstCalls ?? []).filter((one) => one.target.endsWith('· shared'))) {
    out.push({
      target: `shared upstream: a new user's first call at most 5 ms more than their next (${figure.target.replace(' · shared', '')})`,
      figure: `${fmt(figure.added.p50)} µs added (p50 over ${figure.users} users)`,
      met: figure.added.p50 <= 5_000,
    });
  }
  return out;
}
