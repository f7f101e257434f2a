/** The report's section on issue 12: the broker with a child per session (stdio mode) and with one shared HTTP upstream. */
import type { BenchResults, LatencyFigure, ThroughputFigure, UpstreamModeLevel, UpstreamModeMemory } from './results.js';
import { fmt, mark, table, times } from './markdown.js';
import { totalRss } from './upstream-modes.js';

const MiB = 2 ** 20;
const KiB = 1024;

/** `legacy · shared` → `legacy · stdio`: the figure each one is compared with. */
function stdioTwin(target: string): string {
  return target.replace(/· shared$/, '· stdio');
}

function errors(figure: LatencyFigure | ThroughputFigure): string {
  return figure.errors === 0 ? '0' : `${figure.errors} (${figure.firstError ?? ''})`;
}

function verdictRows(results: BenchResults): string[][] {
  const { latency, throughput, memory, unavailable } = results.upstreamModes;
  const rows: string[][] = unavailable.map((failure) => [`${failure.target}: answers at all`, `its first \`echo\` failed`, '**failed**']);
  const shared = memory.find((figure) => figure.mode === 'shared');
  const overall = shared?.slopes[shared.slopes.length - 1];
  if (overall !== undefined) {
    rows.push([
      `shared: < 100 KB of broker memory per additional user (${fmt(overall.from)} → ${fmt(overall.to)} users)`,
      `${fmt(overall.brokerRss / KiB, 1)} KiB of RSS (heap + external: ${fmt(overall.brokerHeap / KiB, 1)} KiB)`,
      mark(overall.brokerRss < 100 * 1000),
    ]);
    rows.push([
      'shared: zero processes per additional user',
      `${fmt(overall.processes, 3)} (${shared?.levels.map((level) => level.processes).join(' / ')} at ${shared?.levels.map((level) => fmt(level.users)).join(' / ')} users)`,
      mark(overall.processes === 0),
    ]);
  }
  // Issue 16's aim for shared mode: latency and throughput within 1.2× of stdio mode.
  for (const figure of latency.filter((one) => one.target.endsWith('· shared') && !one.target.startsWith('direct'))) {
    const stdio = latency.find((one) => one.target === stdioTwin(figure.target));
    const ratio = stdio === undefined ? undefined : figure.summary.p50 / stdio.summary.p50;
    rows.push([
      `shared: p50 at c=1 within 1.2× of stdio's (${figure.target.replace(' · shared', '')}; issue 16)`,
      `${fmt(figure.summary.p50)} vs ${fmt(stdio?.summary.p50)} µs (${times(ratio)})`,
      mark(ratio === undefined ? undefined : ratio <= 1.2),
    ]);
  }
  for (const figure of throughput.filter((one) => one.target.endsWith('· shared') && !one.target.startsWith('direct'))) {
    const stdio = throughput.find(
      (one) => one.target === stdioTwin(figure.target) && one.sessions === figure.sessions && one.concurrency === figure.concurrency,
    );
    const ratio = stdio === undefined ? undefined : figure.medianRps / stdio.medianRps;
    rows.push([
      `shared: throughput at c=${figure.concurrency} ≥ stdio's ÷ 1.2 (${figure.target.replace(' · shared', '')}, ${figure.sessions} session${figure.sessions === 1 ? '' : 's'}; issue 16)`,
      `${fmt(figure.medianRps)} vs ${fmt(stdio?.medianRps)} req/s (${times(ratio)})`,
      mark(ratio === undefined ? undefined : ratio >= 1 / 1.2),
    ]);
  }
  const firstCalls = results.upstreamModes.firstCalls ?? [];
  const floor = firstCalls.find((one) => one.target.startsWith('direct'));
  for (const figure of firstCalls.filter((one) => one.target.endsWith('· shared'))) {
    const floorNote =
      floor === undefined || !figure.target.startsWith('modern')
        ? ''
        : ` (the upstream alone, for a new session: ${fmt(floor.added.p50)} µs)`;
    rows.push([
      `shared: a new user's first call ≤ 5 ms more than their next (${figure.target.replace(' · shared', '')}, ${figure.users} users; issue 16)`,
      `${fmt(figure.first.p50)} vs ${fmt(figure.next.p50)} µs p50; added p50 ${fmt(figure.added.p50)} µs${floorNote}`,
      mark(figure.added.p50 <= 5_000),
    ]);
  }
  return rows;
}

function firstCallRows(results: BenchResults): string[][] {
  return (results.upstreamModes.firstCalls ?? []).map((figure) => [
    figure.target,
    String(figure.users),
    figure.open === undefined ? '—' : fmt(figure.open.p50),
    fmt(figure.first.p50),
    fmt(figure.first.p90),
    fmt(figure.next.p50),
    fmt(figure.added.p50),
    fmt(figure.added.p90),
  ]);
}

function levelRow(mode: string, level: UpstreamModeLevel, label = fmt(level.users)): string[] {
  return [
    mode,
    level.measured ? label : `*${label} (extrapolated)*`,
    fmt(level.brokerRss / MiB, 1),
    fmt(level.brokerHeap / MiB, 1),
    level.measured ? fmt(level.brokerFds) : `*${fmt(level.brokerFds)}*`,
    level.measured ? String(level.processes) : `*${fmt(level.processes)}*`,
    fmt(level.descendantsRss / MiB, 0),
    level.measured ? fmt(totalRss(level) / MiB, 0) : `*${fmt(totalRss(level) / MiB, 0)}*`,
    level.idleCpuPercent === undefined ? '—' : `${fmt(level.idleCpuPercent.broker, 1)} + ${fmt(level.idleCpuPercent.descendants, 1)}`,
    fmt(level.latency?.p50),
    fmt(level.latency?.p99),
    level.signInMs === undefined ? '—' : fmt(level.signInMs / 1000, 1),
    level.openMs === undefined ? '—' : fmt(level.openMs / 1000, 1),
  ];
}

function memoryNotes(figure: UpstreamModeMemory): string[] {
  const parts: string[] = [];
  const after = figure.afterClose;
  parts.push(
    `**${figure.mode}**, once every idle session had ended again (users still signed in): broker RSS ${fmt(after.brokerRss / MiB, 1)} MiB, ` +
      `heap + external ${fmt(after.brokerHeap / MiB, 1)} MiB (${fmt(figure.baseline.brokerHeap / MiB, 1)} MiB before the first level), ` +
      `${after.processes} process${after.processes === 1 ? '' : 'es'} of ${fmt(after.descendantsRss / MiB, 0)} MiB` +
      (figure.heapPerSession === undefined
        ? '.'
        : ' (its RSS is not comparable here: the heap snapshot just written holds memory of its own).'),
  );
  if (figure.upstreamStats !== undefined) {
    const { atTop, atEnd } = figure.upstreamStats;
    const show = (stats: Record<string, unknown>): string =>
      Object.entries(stats)
        .map(([key, value]) => `${key} ${typeof value === 'number' ? fmt(value) : JSON.stringify(value)}`)
        .join(', ');
    parts.push(`The shared upstream's own counters (\`GET /stats\`) with every session open: ${show(atTop)}; at the end: ${show(atEnd)}.`);
  }
  if (figure.heapPerSession !== undefined) {
    parts.push(
      `Heap snapshots of the ${figure.mode}-mode broker (every idle session vs none, \`bench/results/profiles/\`): ${fmt(figure.heapPerSession.total)} bytes of JS heap per session, by constructor:`,
    );
    parts.push(
      table(
        ['constructor', 'bytes per session', 'objects per session'],
        figure.heapPerSession.rows.map((row) => [`\`${row.name}\``, fmt(row.size), fmt(row.count, 1)]),
      ),
    );
  }
  return parts;
}

/** The section, or nothing when the phase did not run. */
export function renderUpstreamModes(results: BenchResults): string[] {
  const { latency, throughput, memory, unavailable } = results.upstreamModes;
  if (latency.length === 0 && throughput.length === 0 && memory.length === 0 && unavailable.length === 0) return [];
  const parts: string[] = [];
  parts.push('## Shared upstream vs a child per session (issue 12)');
  parts.push(
    'Two brokers side by side, each `forgejo-mcp-broker serve` with its own SQLite store and Forgejo stand-in: *stdio* runs a stand-in child per session ' +
      '(`BROKER_CHILD_COMMAND`, `--transport stdio`); *shared* runs one stand-in forgejo-mcp in its multi-tenant HTTP mode (`BROKER_UPSTREAM_COMMAND` ' +
      "`… --transport http --http-port {port}`, the broker picks the port) and sends every user's own Forgejo token with each request.",
  );
  parts.push(table(['target', 'this run', 'verdict'], verdictRows(results)));
  for (const failure of unavailable)
    parts.push(`**${failure.target} not measured**: its first \`echo\` failed: \`${failure.error.replaceAll('`', "'")}\``);

  const firstCalls = firstCallRows(results);
  if (firstCalls.length > 0) {
    parts.push("### A new user's first call (issue 16)");
    parts.push(
      'Users signed in and never called: half make a 2026-07-28 `echo` then another, half open a legacy session, then two `echo`s; ' +
        'the modes interleaved user by user. *Added* is first minus next, per user. In stdio mode the first call starts a child. ' +
        '*direct · shared* is what the broker asks of the upstream for a new modern user, straight at it with the Forgejo token: ' +
        'a new session (initialize, initialized), `tools/list`, then the call.',
    );
    parts.push(
      table(['target', 'users', 'open p50 µs', 'first p50 µs', 'first p90 µs', 'next p50 µs', 'added p50 µs', 'added p90 µs'], firstCalls),
    );
  }

  const big = results.upstreamModes.big ?? [];
  if (big.length > 0) {
    parts.push('### A 10 MB result (`big`) on one session (issue 16)');
    parts.push(
      table(
        ['target', 'median ms', 'samples ms', 'broker peak RSS growth, MiB', '× message size'],
        big.map((figure) => [
          figure.target,
          fmt(figure.medianMs),
          figure.timesMs.map((v) => fmt(v)).join(' / '),
          figure.medianPeakGrowth === undefined ? '—' : fmt(figure.medianPeakGrowth / (1024 * 1024), 1),
          figure.medianPeakGrowth === undefined ? '—' : times(figure.medianPeakGrowth / figure.bytes),
        ]),
      ),
    );
    parts.push(
      "The measuring user's session, the modes interleaved sample by sample; peak growth as in the 10 MB section above (VmHWM of the broker process alone).",
    );
  }

  parts.push('### Latency of `echo` at concurrency 1, one session');
  parts.push(
    table(
      ['target', 'n', 'p50 µs', 'p99 µs', 'added p50 over direct', "p50 ÷ stdio's", "p99 ÷ stdio's", 'p50 per round', 'errors'],
      latency.map((figure) => {
        const stdio = latency.find((one) => one.target === stdioTwin(figure.target));
        const own = stdio === figure;
        const direct = latency.find((one) => one.target === figure.target.replace(/^\w+ ·/, 'direct ·'));
        return [
          figure.target,
          fmt(figure.summary.n),
          fmt(figure.summary.p50),
          fmt(figure.summary.p99),
          direct === undefined || direct === figure ? '—' : fmt(figure.summary.p50 - direct.summary.p50),
          own || stdio === undefined ? '—' : times(figure.summary.p50 / stdio.summary.p50),
          own || stdio === undefined ? '—' : times(figure.summary.p99 / stdio.summary.p99),
          figure.roundP50s.map((value) => fmt(value)).join(' / '),
          errors(figure),
        ];
      }),
    ),
  );

  parts.push('### Throughput at concurrency 64 (closed loop, `echo`)');
  parts.push(
    table(
      [
        'target',
        'sessions',
        'median req/s',
        'trials req/s',
        'p50 µs',
        'p99 µs',
        "÷ stdio's",
        'CPU µs/req: broker',
        'children / upstream',
        'load generator',
        'errors',
      ],
      throughput.map((figure) => {
        const stdio = throughput.find(
          (one) => one.target === stdioTwin(figure.target) && one.sessions === figure.sessions && one.concurrency === figure.concurrency,
        );
        return [
          figure.target,
          fmt(figure.sessions),
          fmt(figure.medianRps),
          figure.trials.map((value) => fmt(value)).join(' / '),
          fmt(figure.p50us),
          fmt(figure.p99us),
          stdio === undefined || stdio === figure ? '—' : times(figure.medianRps / stdio.medianRps),
          fmt(figure.cpuPerRequestUs.gateway),
          fmt(figure.cpuPerRequestUs.children),
          fmt(figure.cpuPerRequestUs.client),
          errors(figure),
        ];
      }),
    ),
  );
  parts.push(
    "*direct*: each mode's stand-in without the broker, the floor: a stdio child driven with JSON lines (*stdio*), or a legacy session straight at the shared upstream with the user's Forgejo token (*shared*). " +
      "One session (measured last, once the ladder's idle sessions had ended): the measuring user's legacy session, or its 2026-07-28 calls (stdio: that user's child; shared: its upstream session). " +
      "Spread: requests round-robin over the first signed-in users' legacy sessions, with every level's sessions still open (stdio: a child each; shared: one upstream for all).",
  );

  if (memory.length > 0) {
    parts.push('### Memory and processes per signed-in user with a session');
    parts.push(
      table(
        [
          'mode',
          'users',
          'broker RSS MiB',
          'broker heap + external MiB',
          'broker fds',
          'processes',
          'their RSS MiB',
          'broker + descendants RSS MiB',
          'idle CPU, % of a core: broker + descendants',
          'p50 µs',
          'p99 µs',
          'sign-in s',
          'open s',
        ],
        memory.flatMap((figure) => [
          levelRow(figure.mode, figure.baseline, '0 (the measuring user)'),
          ...figure.levels.map((level) => levelRow(figure.mode, level)),
        ]),
      ),
    );
    parts.push('Per additional user, from the slope between levels:');
    parts.push(
      table(
        ['mode', 'users', 'broker RSS KiB', 'broker heap + external KiB', 'broker + descendants RSS KiB', 'processes', 'broker fds'],
        memory.flatMap((figure) =>
          figure.slopes.map((one) => [
            figure.mode,
            `${fmt(one.from)} → ${fmt(one.to)}`,
            fmt(one.brokerRss / KiB, 1),
            fmt(one.brokerHeap / KiB, 1),
            fmt(one.totalRss / KiB, 1),
            fmt(one.processes, 3),
            fmt(one.brokerFds, 2),
          ]),
        ),
      ),
    );
    const extrapolated = memory.flatMap((figure) =>
      figure.levels.filter((level) => !level.measured).map((level) => `${figure.mode} at ${fmt(level.users)}`),
    );
    parts.push(
      "Each user signs in through the whole OAuth flow (registration, consent, the Forgejo stand-in's login, PKCE) and opens one legacy session (`initialize` + `notifications/initialized`), left idle; " +
        "the measuring user's legacy session exists at every level (row 0). The ladder runs first, on brokers that carried no load yet, so their RSS holds no slack from it. Broker RSS: the kernel's VmRSS of the broker process, median of 5 reads after a full GC (bench probe); " +
        "broker fds: its open file descriptors (/proc/PID/fd); the descendants' RSS is summed over every process below it, read once (the upstream runs no probe and is not collected). Idle CPU: the broker and its descendants over a quiet window after the level opened (/proc, 10 ms ticks), before the memory is read. " +
        'p50/p99: c=1 `echo` on the measuring session at that level.' +
        (extrapolated.length === 0
          ? ''
          : ` **Extrapolated, not measured** (${extrapolated.join(', ')}): the children would have needed more than half the memory available, so that level is the last measured one plus its slope per user; the per-user rows above use measured levels only.`),
    );
    for (const figure of memory) parts.push(...memoryNotes(figure));
  }
  return parts;
}
