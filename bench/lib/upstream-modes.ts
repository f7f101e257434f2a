/**
 * The arithmetic of the stdio-vs-shared ladder (issue 12): what one more
 * signed-in user with a session costs, from the slope between levels; the
 * levels a machine cannot hold, extrapolated; and the shared upstream's own
 * counters.
 */
import { argvOf, descendants } from './procs.js';
import type { UpstreamModeLevel, UpstreamModeSlope } from './results.js';

/** Broker RSS plus every descendant's: what the mode costs the machine. */
export function totalRss(level: UpstreamModeLevel): number {
  return level.brokerRss + level.descendantsRss;
}

/** Per additional user between two levels. */
export function slope(from: UpstreamModeLevel, to: UpstreamModeLevel): UpstreamModeSlope {
  const users = to.users - from.users;
  return {
    from: from.users,
    to: to.users,
    brokerRss: (to.brokerRss - from.brokerRss) / users,
    brokerHeap: (to.brokerHeap - from.brokerHeap) / users,
    totalRss: (totalRss(to) - totalRss(from)) / users,
    processes: (to.processes - from.processes) / users,
    brokerFds: (to.brokerFds - from.brokerFds) / users,
  };
}

/** Between consecutive measured levels, then (with three or more) from the first to the last. */
export function slopes(levels: readonly UpstreamModeLevel[]): UpstreamModeSlope[] {
  const measured = levels.filter((level) => level.measured);
  const out: UpstreamModeSlope[] = [];
  for (let i = 1; i < measured.length; i++) out.push(slope(measured[i - 1] as UpstreamModeLevel, measured[i] as UpstreamModeLevel));
  if (measured.length > 2) out.push(slope(measured[0] as UpstreamModeLevel, measured[measured.length - 1] as UpstreamModeLevel));
  return out;
}

/** A level not measured: the last measured one plus the slope from the one before it (or from the baseline). */
export function extrapolate(users: number, previous: UpstreamModeLevel, last: UpstreamModeLevel): UpstreamModeLevel {
  const perUser = slope(previous, last);
  const added = users - last.users;
  return {
    users,
    measured: false,
    brokerRss: last.brokerRss + perUser.brokerRss * added,
    brokerHeap: last.brokerHeap + perUser.brokerHeap * added,
    processes: Math.round(last.processes + perUser.processes * added),
    brokerFds: Math.round(last.brokerFds + perUser.brokerFds * added),
    descendantsRss: last.descendantsRss + (perUser.totalRss - perUser.brokerRss) * added,
  };
}

/** The shared upstream the broker started: its pid and its MCP URL (`--http-port` on its command line). */
export function upstreamOf(brokerPid: number): { pid: number; url: URL } | undefined {
  for (const pid of descendants(brokerPid)) {
    const argv = argvOf(pid);
    const at = argv.indexOf('--http-port');
    if (at !== -1 && argv[at + 1] !== undefined) return { pid, url: new URL(`http://127.0.0.1:${argv[at + 1]}/mcp`) };
  }
  return undefined;
}

/** The shared upstream's `GET /stats` (the stand-in counts requests, sessions and the ones it refused for a missing header). */
export async function upstreamStats(brokerPid: number): Promise<Record<string, unknown>> {
  const upstream = upstreamOf(brokerPid);
  if (upstream === undefined) return { error: 'no upstream process with --http-port among the broker descendants' };
  const reply = await fetch(new URL('/stats', upstream.url));
  const stats = (await reply.json()) as Record<string, unknown>;
  // The fingerprints of every token it saw say nothing here; their number does.
  const { tokensSeen, ...counters } = stats;
  return { ...counters, ...(Array.isArray(tokensSeen) ? { tokensSeen: tokensSeen.length } : {}) };
}
