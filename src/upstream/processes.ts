import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { BrokerError, errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import { childEnvironment } from '../supervisor/env.js';
import { LineSplitter } from '../supervisor/lines.js';
import { ChildLogLimiter } from '../supervisor/log-limiter.js';
import { settlesWithin, signalProcessGroup } from '../supervisor/process-group.js';
import { waitUntilListening, type UpstreamEndpoint } from './endpoint.js';

export interface UpstreamProcessOptions {
  /** argv with `{port}` where the HTTP port goes; never a token nor the operator-token fallback (config refuses both). */
  readonly command: readonly string[];
  readonly forgejoUrl: string;
  readonly envAllow: readonly string[];
  readonly parentEnv: Readonly<Record<string, string | undefined>>;
  /** How long a started process may take to accept connections. */
  readonly startTimeoutMs: number;
  /** After SIGTERM, how long before SIGKILL. */
  readonly stopGraceMs: number;
  readonly log: Logger;
  /** Counts restarts after an unexpected exit (the metric). */
  readonly onRestart?: () => void;
  readonly onLogLinesSuppressed?: (lines: number) => void;
}

const FIRST_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 30_000;
/** A process that ran this long before it exited starts again at once: it was no crash loop. */
const HEALTHY_RUN_MS = 60_000;
const MAX_LOG_LINE_BYTES = 64 * 1024;

/** The upstream processes BROKER_UPSTREAM_COMMAND runs; each user's sessions go to one of them, always the same. */
export class UpstreamProcesses {
  readonly #slots: UpstreamProcess[];

  constructor(count: number, options: UpstreamProcessOptions) {
    this.#slots = Array.from({ length: count }, (_, index) => new UpstreamProcess(index, options));
  }

  /** Starts every process; resolves when all accept connections. */
  async start(): Promise<void> {
    await Promise.all(this.#slots.map((slot) => slot.start()));
  }

  endpointFor(userId: string): UpstreamEndpoint {
    const slot = createHash('sha256').update(userId).digest().readUInt32BE(0) % this.#slots.length;
    return this.#slots[slot] as UpstreamProcess;
  }

  /** Where each process listens now (tests read the stand-in's counters there). */
  get urls(): URL[] {
    return this.#slots.flatMap((slot) => (slot.url === undefined ? [] : [slot.url]));
  }

  /** Restarts after an unexpected exit, over all processes. */
  get restarts(): number {
    return this.#slots.reduce((sum, slot) => sum + slot.restarts, 0);
  }

  get pids(): number[] {
    return this.#slots.flatMap((slot) => (slot.pid === undefined ? [] : [slot.pid]));
  }

  async stop(): Promise<void> {
    await Promise.all(this.#slots.map((slot) => slot.stop()));
  }
}

/**
 * One upstream process: started on a free loopback port, awaited until it
 * accepts connections, restarted with backoff when it exits, stopped with
 * SIGTERM then SIGKILL. Its sessions wait while it restarts.
 */
class UpstreamProcess implements UpstreamEndpoint {
  #proc: ChildProcess | undefined;
  #port: number | undefined;
  #ready: Promise<URL> | undefined;
  #exited: Promise<void> = Promise.resolve();
  #stopped = false;
  #restartDelayMs = FIRST_RESTART_DELAY_MS;
  #restartTimer: NodeJS.Timeout | undefined;
  restarts = 0;
  readonly #log: Logger;
  readonly #logBudget: ChildLogLimiter;

  readonly #options: UpstreamProcessOptions;

  constructor(index: number, options: UpstreamProcessOptions) {
    this.#options = options;
    this.#log = options.log.child({ upstream: index });
    this.#logBudget = new ChildLogLimiter(this.#log, (lines) => options.onLogLinesSuppressed?.(lines));
  }

  get url(): URL | undefined {
    return this.#port === undefined ? undefined : urlOf(this.#port);
  }

  /** The running process's pid; undefined between an exit and the restart. */
  get pid(): number | undefined {
    const proc = this.#proc;
    return proc === undefined || proc.exitCode !== null || proc.signalCode !== null ? undefined : proc.pid;
  }

  start(): Promise<URL> {
    this.#ready = this.#launch();
    // A failed start is retried by the exit handler; callers of ready() see the failure.
    this.#ready.catch(() => undefined);
    return this.#ready;
  }

  ready(): Promise<URL> {
    if (this.#stopped) return Promise.reject(new BrokerError('unavailable', 'The broker is shutting down'));
    return this.#ready ?? this.start();
  }

  async unreachable(url: URL): Promise<URL> {
    const current = await this.ready();
    if (current.href !== url.href) return current;
    // It may have died with its exit not seen yet, or be busy: whichever comes first, a restart or an answer.
    const answering = waitUntilListening(url, this.#options.startTimeoutMs, () => this.#stopped).then(() => url);
    const restarted = this.#exited.then(() => this.ready());
    return Promise.race([answering, restarted]);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    const proc = this.#proc;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    signalProcessGroup(proc, 'SIGTERM');
    if (await settlesWithin(this.#exited, this.#options.stopGraceMs)) return;
    this.#log.warn({ event: 'upstream_kill', pid: proc.pid }, 'upstream ignored SIGTERM; killing it');
    signalProcessGroup(proc, 'SIGKILL');
    await this.#exited;
  }

  async #launch(): Promise<URL> {
    this.#port ??= await freeLoopbackPort();
    const url = urlOf(this.#port);
    const port = String(this.#port);
    const [file, ...args] = this.#options.command.map((word) => word.replaceAll('{port}', port)) as [string, ...string[]];
    const startedAt = Date.now();
    const proc = spawn(file, args, {
      env: childEnvironment(this.#options.parentEnv, this.#options.envAllow, this.#options.forgejoUrl, undefined),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      shell: false,
    });
    this.#proc = proc;
    this.#exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    this.#logOutput(proc);
    proc.once('exit', (code, signal) => this.#onExit(proc, code, signal, startedAt));
    await new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', reject);
    });
    this.#log.info({ event: 'upstream_spawn', pid: proc.pid, url: url.href }, 'upstream started');
    try {
      await waitUntilListening(
        url,
        this.#options.startTimeoutMs,
        () => this.#stopped || proc.exitCode !== null || proc.signalCode !== null,
      );
    } catch (error) {
      signalProcessGroup(proc, 'SIGKILL');
      // Something else may hold the port: the next start picks another.
      this.#port = undefined;
      throw new BrokerError('child_failed', `the upstream did not start: ${errorMessage(error)}`, { cause: error });
    }
    this.#log.info({ event: 'upstream_ready', pid: proc.pid }, 'upstream accepts connections');
    return url;
  }

  #onExit(proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null, startedAt: number): void {
    this.#logBudget.flush();
    // What it started in its process group goes with it.
    signalProcessGroup(proc, 'SIGKILL');
    if (this.#stopped) {
      this.#log.info({ event: 'upstream_exit', pid: proc.pid, code, signal }, 'upstream stopped');
      return;
    }
    if (Date.now() - startedAt >= HEALTHY_RUN_MS) this.#restartDelayMs = FIRST_RESTART_DELAY_MS;
    const delay = this.#restartDelayMs;
    this.#restartDelayMs = Math.min(delay * 2, MAX_RESTART_DELAY_MS);
    this.#log.warn({ event: 'upstream_exit', pid: proc.pid, code, signal, restartInMs: delay }, 'upstream exited; restarting it');
    this.restarts++;
    this.#options.onRestart?.();
    // Sessions asking meanwhile wait for the restarted process.
    let launched!: (url: Promise<URL>) => void;
    this.#ready = new Promise<URL>((resolve) => (launched = resolve));
    this.#ready.catch(() => undefined);
    this.#restartTimer = setTimeout(() => launched(this.#launch()), delay);
  }

  #logOutput(proc: ChildProcess): void {
    const line = (text: string): void => {
      if (text !== '') this.#logBudget.line(() => this.#log.info({ event: 'upstream_log', line: redactTokens(text) }));
    };
    for (const stream of [proc.stdout, proc.stderr]) {
      const lines = new LineSplitter(MAX_LOG_LINE_BYTES, line, () =>
        this.#logBudget.line(() => this.#log.warn({ event: 'upstream_log_truncated' })),
      );
      stream?.on('data', (chunk: Buffer) => lines.push(chunk));
      stream?.on('end', () => lines.flush());
    }
  }
}

/** The upstream sees every user's token; a debug line that echoes an Authorization header never reaches the broker's log whole. */
function redactTokens(line: string): string {
  return line.replace(/\b(bearer|token)(\s+|=|:\s*)[A-Za-z0-9._~+/=-]{8,}/gi, '$1$2[REDACTED]');
}

function urlOf(port: number): URL {
  return new URL(`http://127.0.0.1:${port}/mcp`);
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
