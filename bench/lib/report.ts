/** The bench's outputs: a Markdown report (figures, targets, method) and an SVG chart, written by hand. */
import { fmt, mark, table, times } from './markdown.js';
import { renderUpstreamModes } from './report-upstream.js';
import type { BenchResults } from './results.js';
import { issue16Verdicts, latency, throughput, verdicts } from './verdicts.js';

const MiB = 2 ** 20;
const KiB = 1024;

/** Issue 16's ratios side by side with their targets and verdicts: what `--quick` prints. */
export function renderGuard(results: BenchResults): string {
  return [
    `Issue 16 targets (${results.meta.quick ? 'quick run' : 'full run'}, commit ${results.meta.commit}, ${fmt(results.meta.durationS)} s):`,
    table(
      ['target', 'this run', 'verdict'],
      issue16Verdicts(results).map((v) => [v.target, v.figure, mark(v.met)]),
    ),
  ].join('\n');
}

export function renderMarkdown(results: BenchResults): string {
  const { meta } = results;
  const parts: string[] = [];
  parts.push('# forgejo-mcp-broker benchmarks');
  parts.push(
    [
      `Run ${meta.date} on commit \`${meta.commit}\`${meta.dirtySrc > 0 ? ` (with ${meta.dirtySrc} uncommitted change(s) under src/)` : ''}; Node ${meta.node}, ` +
        `${meta.cpus} × ${meta.cpuModel}, ${fmt(meta.memoryBytes / 2 ** 30)} GiB; load average at start ${meta.loadAverageAtStart.map((v) => v.toFixed(1)).join(' / ')}; ` +
        `${fmt(meta.durationS)} s.${meta.quick ? ' **Quick run: too few samples for real numbers.**' : ''}`,
      '',
      'A shared, noisy 2-core machine: read medians and ratios between targets measured in the same run, interleaved round by round, never single timings.',
      'Every target runs the same stand-in child (`dist/src/standin/forgejo-mcp.js`, an SDK stdio server) except the memory ladder (a tiny bash child, `bench/tiny-child.sh`).',
    ].join('\n'),
  );

  parts.push('## Targets (issue 16: close to the floor)');
  parts.push(
    table(
      ['target', 'this run', 'verdict'],
      issue16Verdicts(results).map((v) => [v.target, v.figure, mark(v.met)]),
    ),
  );
  parts.push(
    'The floor is the *bare bridge*; *added* latency is over the child alone (*direct (stdio)*). A target without figures in this run shows `n/a` and `?`.',
  );

  parts.push('## Targets (issue 6)');
  parts.push(
    table(
      ['target', 'this run', 'verdict'],
      verdicts(results).map((v) => [v.target, v.figure, mark(v.met)]),
    ),
  );

  for (const client of ['raw', 'sdk'] as const) {
    const floorName = 'direct (stdio)';
    const floor = latency(results, client, floorName)?.summary;
    const sg = latency(results, client, 'supergateway')?.summary;
    const rows = results.latency
      .filter((figure) => figure.client === client)
      .map((figure) => {
        const s = figure.summary;
        const added50 = floor === undefined ? undefined : s.p50 - floor.p50;
        const added99 = floor === undefined ? undefined : s.p99 - floor.p99;
        const sgAdded = floor === undefined || sg === undefined ? undefined : sg.p50 - floor.p50;
        return [
          figure.target,
          fmt(s.n),
          fmt(s.p50),
          fmt(s.p99),
          figure.target === floorName ? '—' : fmt(added50),
          figure.target === floorName ? '—' : fmt(added99),
          figure.target === floorName || figure.target === 'supergateway' || sgAdded === undefined || added50 === undefined
            ? '—'
            : times(added50 / sgAdded),
          figure.roundP50s.map((v) => fmt(v)).join(' / '),
          figure.errors === 0 ? '0' : `${figure.errors} (${figure.firstError ?? ''})`,
        ];
      });
    parts.push(
      client === 'raw'
        ? "## Latency of a small `tools/call` (`echo`) at concurrency 1, minimal client\n\nThe harness's own client (node:http keep-alive, or JSON lines on the child's stdin for *direct*) adds as little as possible, so the differences are the gateways'. Microseconds; *added* is over *direct (stdio)*."
        : "## The same through the official SDK client\n\n`Client` + `StdioClientTransport` for *direct*, `StreamableHTTPClientTransport` with `versionNegotiation: { mode: 'legacy' }` or `{ mode: 'auto' }` (lands on 2026-07-28) for the others: what an application sees. Microseconds.",
    );
    parts.push(
      table(['target', 'n', 'p50', 'p99', 'added p50', 'added p99', "added p50 ÷ supergateway's", 'p50 per round', 'errors'], rows),
    );
  }
  parts.push(
    "*bare HTTP* answers the same bytes with no child (HTTP's floor); *bare bridge* is the least a stdio↔HTTP bridge can do (node:http, one child, id renaming, no SDK transport, no sessions, no auth); " +
      '*supergateway* is supergateway 4.0.0 stateful (`--stateful`, a child per session, `--logLevel none`, no auth); *supergateway modern* is a 2026-07-28 request to it, for which it spawns a child per request. ' +
      "The broker runs `forgejo-mcp-broker serve` with a real SQLite store and a real OAuth access token (obtained through registration, consent and the Forgejo stand-in's login), log level info.",
  );

  parts.push('## Throughput (closed loop, `echo`)');
  const sessionsMax = Math.max(...results.throughput.map((figure) => figure.sessions));
  parts.push(
    table(
      [
        'target',
        'sessions',
        'concurrency',
        'median req/s',
        'trials req/s',
        'p50 µs',
        'p99 µs',
        '× supergateway',
        'CPU µs/req: gateway',
        'children',
        'load generator',
        'errors',
      ],
      results.throughput.map((figure) => {
        const sg = throughput(results, 'supergateway', figure.sessions, figure.concurrency)?.medianRps;
        return [
          figure.target,
          String(figure.sessions),
          String(figure.concurrency),
          fmt(figure.medianRps),
          figure.trials.map((v) => fmt(v)).join(' / '),
          fmt(figure.p50us),
          fmt(figure.p99us),
          sg === undefined || figure.target === 'supergateway' ? '—' : times(figure.medianRps / sg),
          figure.target === 'direct (stdio)' ? '—' : fmt(figure.cpuPerRequestUs.gateway),
          fmt(figure.cpuPerRequestUs.children),
          fmt(figure.cpuPerRequestUs.client),
          figure.errors === 0 ? '0' : `${figure.errors} (${figure.firstError ?? ''})`,
        ];
      }),
    ),
  );
  parts.push(
    `One session: every request on one legacy session (or, modern, one user's shared child). ${sessionsMax} sessions: requests spread round-robin over ${sessionsMax} legacy sessions (${sessionsMax} children), or, modern, over ${sessionsMax} signed-in users (a child each). ` +
      'Load generator, gateway and children share the 2 cores, so these are whole-system figures; the ratio between gateways is what carries over. ' +
      'The CPU columns split the time the machine spent per request (from /proc/PID/stat, 10 ms ticks, median over trials): the gateway process alone, its children, and the harness.',
  );

  parts.push('## Session start');
  parts.push(
    table(
      ['what', 'median ms', 'minus the child alone (paired), median ms', 'IQR of that, ms', 'samples ms'],
      results.sessionStart.map((figure) => [
        figure.target,
        fmt(figure.medianMs, 1),
        figure.overheadMs === undefined ? '—' : fmt(figure.overheadMs, 1),
        figure.overheadIqrMs === undefined ? '—' : `${fmt(figure.overheadIqrMs[0], 1)} … ${fmt(figure.overheadIqrMs[1], 1)}`,
        figure.samplesMs.map((v) => fmt(v)).join(' / '),
      ]),
    ),
  );
  parts.push(
    "The child's own start is spawn → `initialize` answered over its stdio (Node start, module loading, its `GET /api/v1/version`), measured from the harness the same way, interleaved with the others. " +
      "A modern first request is compared with the child's start *and* its first `echo` (a cold child's first call costs tens of ms of its own); the broker's extra is then its own `initialize` round trip, the sign-in lookup and the bookkeeping.",
  );

  parts.push('## Memory per idle session');
  for (const memory of results.memory) {
    parts.push(
      `**${memory.gateway}**: ${fmt(memory.rssBytesPerSession / KiB, 1)} KiB of RSS per idle session, ${fmt(memory.heapBytesPerSession / KiB, 1)} KiB of JS heap + external (after a full GC).`,
    );
    parts.push(
      table(
        [
          'idle sessions',
          `${memory.gateway} RSS MiB`,
          'heap used MiB',
          'external MiB',
          'child processes',
          'children RSS MiB',
          'p50 µs',
          'p99 µs',
          'time to open them, s',
        ],
        memory.levels.map((level) => [
          String(level.idleSessions),
          fmt(level.rss / MiB, 1),
          fmt(level.heapUsed / MiB, 1),
          fmt(level.external / MiB, 1),
          String(level.childCount),
          fmt(level.childrenRss / MiB, 0),
          fmt(level.latency.p50),
          fmt(level.latency.p99),
          fmt(level.openMs / 1000, 1),
        ]),
      ),
    );
    parts.push(
      memory.heapPerSession === undefined
        ? `After every idle session ended again: RSS ${fmt(memory.afterClose.rss / MiB, 1)} MiB, heap used ${fmt(memory.afterClose.heapUsed / MiB, 1)} MiB (nothing kept per ended session when this is back near the first level).`
        : `After every idle session ended again: heap used ${fmt(memory.afterClose.heapUsed / MiB, 1)} MiB (back near the first level: nothing kept per ended session; RSS is not comparable here, the heap snapshot just written holds its own memory).`,
    );
    if (memory.heapPerSession !== undefined) {
      parts.push(
        `Heap snapshots (all idle sessions vs none, \`bench/results/profiles/\`): ${fmt(memory.heapPerSession.total, 0)} bytes of JS heap per session, by constructor:`,
      );
      parts.push(
        table(
          ['constructor', 'bytes per session', 'objects per session'],
          memory.heapPerSession.rows.map((row) => [`\`${row.name}\``, fmt(row.size), fmt(row.count, 1)]),
        ),
      );
    }
  }
  parts.push(
    "The gateway runs in its own process; RSS is the kernel's VmRSS of that process only (median of 5 reads after a forced full GC through the bench probe), children excluded. Sessions are opened with `initialize` + `notifications/initialized` and left idle; latency is c=1 `echo` on one more session, which exists at every level.",
  );

  parts.push('## A 10 MB tool result (`big`, 10 MiB of text)');
  parts.push(
    table(
      ['target', 'median ms', 'samples ms', 'gateway peak RSS growth, MiB', '× message size'],
      results.big.map((figure) => [
        figure.target,
        fmt(figure.medianMs),
        figure.timesMs.map((v) => fmt(v)).join(' / '),
        figure.medianPeakGrowth === undefined ? '—' : fmt(figure.medianPeakGrowth / MiB, 1),
        figure.medianPeakGrowth === undefined ? '—' : times(figure.medianPeakGrowth / figure.bytes),
      ]),
    ),
  );
  parts.push(
    "Peak growth: the kernel's peak-RSS mark (VmHWM, reset through /proc/PID/clear_refs just before the call) minus the settled RSS before it.",
  );

  parts.push('## Token validation per request');
  parts.push(
    table(
      ['case', 'µs per call (median of batches)', 'store reads per call', 'calls'],
      results.auth.map((figure) => [
        figure.name,
        fmt(figure.perCallUs, 1),
        figure.storeReadsPerCall === undefined ? '—' : fmt(figure.storeReadsPerCall, 3),
        fmt(figure.calls),
      ]),
    ),
  );
  parts.push(
    "Measured directly: `BrokerAuthenticator.authenticate` on the broker's own SQLite store (the one the running broker signed the bench users into), without and with the broker's token cache (kept fresh by a revocation follower on that store, as in the broker). Store reads are counted per call: a hot `/mcp` request pays the *cached* figure.",
  );

  if (results.profiles.length > 0) {
    parts.push("## Where the broker's CPU goes");
    for (const profile of results.profiles) {
      parts.push(`**${profile.name}** (${fmt(profile.samples)} samples, \`bench/results/profiles/${profile.name}.cpuprofile\`)`);
      parts.push(
        table(
          ['stage (inclusive)', '% of samples'],
          profile.stages.map((line) => [line.name, fmt(line.selfPercent, 1)]),
        ),
      );
      parts.push(
        table(
          ['component', 'self %'],
          profile.components.slice(0, 10).map((line) => [line.name, fmt(line.selfPercent, 1)]),
        ),
      );
      parts.push(
        table(
          ['function', 'self %'],
          profile.functions.slice(0, 12).map((line) => [`\`${line.name}\``, fmt(line.selfPercent, 1)]),
        ),
      );
    }
  }
  parts.push(...renderUpstreamModes(results));
  parts.push('![latency and memory against load](chart.svg)');
  return parts.join('\n\n') + '\n';
}

// ---- The chart -------------------------------------------------------------------------------------

interface Series {
  readonly name: string;
  readonly color: string;
  readonly values: readonly (number | undefined)[];
}

interface Panel {
  readonly title: string;
  readonly xTitle: string;
  readonly yTitle: string;
  readonly xLabels: readonly string[];
  readonly series: readonly Series[];
  readonly log: boolean;
}

const COLORS: Record<string, string> = {
  'direct (stdio)': '#7f7f7f',
  'bare bridge': '#bcbd22',
  supergateway: '#d62728',
  'broker legacy': '#1f77b4',
  'broker modern': '#2ca02c',
  broker: '#1f77b4',
};

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function niceTicks(min: number, max: number, log: boolean): number[] {
  if (log) {
    const ticks: number[] = [];
    for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) ticks.push(10 ** e);
    return ticks;
  }
  const span = max - min || 1;
  const step = 10 ** Math.floor(Math.log10(span / 4));
  const nice = [1, 2, 5, 10].map((k) => k * step).find((candidate) => span / candidate <= 6) ?? step * 10;
  const ticks: number[] = [];
  for (let v = Math.floor(min / nice) * nice; v <= max + nice / 2; v += nice) ticks.push(v);
  return ticks;
}

function panel(p: Panel, x0: number, y0: number, width: number, height: number): string {
  const left = x0 + 60;
  const right = x0 + width - 10;
  const top = y0 + 30;
  const bottom = y0 + height - 70;
  const values = p.series.flatMap((s) => s.values).filter((v): v is number => v !== undefined && Number.isFinite(v) && (!p.log || v > 0));
  if (values.length === 0) return '';
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (p.log) {
    min = 10 ** Math.floor(Math.log10(min));
    max = 10 ** Math.ceil(Math.log10(max));
  } else {
    min = 0;
    max = max * 1.1;
  }
  const ticks = niceTicks(min, max, p.log);
  if (!p.log) max = Math.max(max, ticks[ticks.length - 1] ?? max);
  const y = (v: number): number =>
    p.log
      ? bottom - ((Math.log10(v) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (bottom - top)
      : bottom - ((v - min) / (max - min)) * (bottom - top);
  const x = (i: number): number => left + ((i + 0.5) / p.xLabels.length) * (right - left);
  const out: string[] = [];
  out.push(`<text x="${(left + right) / 2}" y="${y0 + 16}" text-anchor="middle" font-weight="bold">${escapeXml(p.title)}</text>`);
  for (const tick of ticks) {
    if (tick < min || tick > max) continue;
    out.push(`<line x1="${left}" x2="${right}" y1="${y(tick).toFixed(1)}" y2="${y(tick).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${(y(tick) + 4).toFixed(1)}" text-anchor="end" font-size="11">${fmt(tick)}</text>`);
  }
  out.push(
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#333"/><line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`,
  );
  p.xLabels.forEach((label, i) =>
    out.push(`<text x="${x(i).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" font-size="11">${escapeXml(label)}</text>`),
  );
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 32}" text-anchor="middle" font-size="11">${escapeXml(p.xTitle)}</text>`);
  out.push(
    `<text transform="translate(${x0 + 14} ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="11">${escapeXml(p.yTitle)}</text>`,
  );
  p.series.forEach((s, index) => {
    const points = s.values.map((v, i) => (v === undefined || !Number.isFinite(v) ? undefined : `${x(i).toFixed(1)},${y(v).toFixed(1)}`));
    const defined = points.filter((point): point is string => point !== undefined);
    if (defined.length > 1) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${defined.join(' ')}"/>`);
    for (const point of defined) {
      const [cx, cy] = point.split(',');
      out.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`);
    }
    const lx = left + (index % 3) * ((right - left) / 3);
    const ly = bottom + 48 + Math.floor(index / 3) * 14;
    out.push(
      `<rect x="${lx}" y="${ly - 8}" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="${ly + 1}" font-size="11">${escapeXml(s.name)}</text>`,
    );
  });
  return out.join('\n');
}

export function renderChart(results: BenchResults): string {
  const targets = ['direct (stdio)', 'bare bridge', 'supergateway', 'broker legacy', 'broker modern'];
  const latencyPanel: Panel = {
    title: 'p50 latency of echo vs concurrency (one session)',
    xTitle: 'concurrent requests',
    yTitle: 'p50 latency, µs (log)',
    xLabels: ['1', '16', '64'],
    log: true,
    series: targets.map((name) => ({
      name,
      color: COLORS[name] ?? '#000',
      values: [
        latency(results, 'raw', name)?.summary.p50,
        throughput(results, name, 1, 16)?.p50us,
        throughput(results, name, 1, 64)?.p50us,
      ],
    })),
  };
  const levels = results.memory[0]?.levels.map((level) => String(level.idleSessions)) ?? [];
  const memoryPanel: Panel = {
    title: 'gateway RSS vs idle sessions (children excluded)',
    xTitle: 'idle sessions',
    yTitle: 'RSS, MiB',
    xLabels: levels,
    log: false,
    series: results.memory.map((memory) => ({
      name: memory.gateway,
      color: COLORS[memory.gateway] ?? '#000',
      values: memory.levels.map((level) => level.rss / MiB),
    })),
  };
  const flatPanel: Panel = {
    title: 'p50 latency of echo vs idle sessions',
    xTitle: 'idle sessions',
    yTitle: 'p50 latency, µs',
    xLabels: levels,
    log: false,
    series: results.memory.map((memory) => ({
      name: memory.gateway,
      color: COLORS[memory.gateway] ?? '#000',
      values: memory.levels.map((level) => level.latency.p50),
    })),
  };
  const width = 1260;
  const height = 380;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    panel(latencyPanel, 0, 0, 440, height),
    panel(memoryPanel, 440, 0, 410, height),
    panel(flatPanel, 850, 0, 410, height),
    '</svg>',
    '',
  ].join('\n');
}
