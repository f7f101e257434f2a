import { spawn, type ChildProcess } from 'node:child_process';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { errorMessage } from '../errors/errors.js';
import { isJsonRpcMessage } from '../jsonrpc/messages.js';
import type { Logger } from '../log/logger.js';
import type { Child, ChildExit, ChildSpec, SpawnFunc } from '../pool/child.js';
import { childEnvironment } from './env.js';
import { RAW_ANSWER_MIN_BYTES, RawAnswer } from '../pool/raw-answer.js';
import { LineSplitter } from './lines.js';
import { settlesWithin, signalProcessGroup } from './process-group.js';
import { ChildLogLimiter } from './log-limiter.js';

export interface ProcessSpawnOptions {
  readonly command: readonly string[];
  readonly forgejoUrl: string;
  readonly envAllow: readonly string[];
  readonly parentEnv: Readonly<Record<string, string | undefined>>;
  /** Wait this long after closing stdin, and again after SIGTERM, before the next step. */
  readonly stopGraceMs: number;
  readonly maxMessageBytes: number;
  readonly log: Logger;
  /** Counts log lines of children that their log budget suppressed (the metric). */
  readonly onLogLinesSuppressed?: (lines: number) => void;
}

/** The production SpawnFunc: a real process per spec, behind the pool's `Child` interface. */
export function processSpawner(options: ProcessSpawnOptions): SpawnFunc {
  return (spec) => ProcessChild.start(options, spec);
}

class ProcessChild implements Child {
  onmessage: ((message: JSONRPCMessage, lineLength: number) => void) | undefined;
  onanswer: ((answer: RawAnswer) => void) | undefined;
  readonly exited: Promise<ChildExit>;
  #exitInfo: ChildExit | undefined;
  #stopping: Promise<ChildExit> | undefined;
  /** A write to stdin waits for the end of this event-loop turn, to leave with the others of the turn. */
  #corked = false;
  /** Every log line the child's output causes goes through it: stderr chatter, stdout garbage. */
  readonly #logBudget: ChildLogLimiter;

  readonly #proc: ChildProcess;
  readonly #options: ProcessSpawnOptions;
  readonly #log: Logger;

  private constructor(proc: ChildProcess, options: ProcessSpawnOptions, log: Logger, token: string) {
    this.#proc = proc;
    this.#options = options;
    this.#log = log;
    this.#logBudget = new ChildLogLimiter(log, (lines) => options.onLogLinesSuppressed?.(lines));
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.#exitInfo = { code, signal };
        // What the child started in its process group goes with it, so nothing outlives the session.
        signalProcessGroup(proc, 'SIGKILL');
        this.#logBudget.flush();
        this.#log.info({ event: 'child_exit', pid: proc.pid, code, signal }, 'child exited');
        resolve(this.#exitInfo);
      });
    });
    const stdout = new LineSplitter(
      options.maxMessageBytes,
      (line) => this.#receive(line),
      () => {
        this.#log.error(
          { event: 'child_message_too_large', limit: options.maxMessageBytes },
          'child sent an oversized message; stopping it',
        );
        void this.stop();
      },
      { minBytes: RAW_ANSWER_MIN_BYTES, onLine: (chunks) => this.#receiveLarge(chunks) },
    );
    proc.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    // A token could appear in a debug line; it never reaches the log.
    const redact = (line: string): string => (token === '' ? line : line.split(token).join('[REDACTED]'));
    const stderr = new LineSplitter(
      64 * 1024,
      (line) => {
        if (line !== '') this.#logBudget.line(() => this.#log.info({ event: 'child_stderr', line: redact(line) }));
      },
      () => this.#logBudget.line(() => this.#log.warn({ event: 'child_stderr_truncated' })),
    );
    proc.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    proc.stderr?.on('end', () => stderr.flush());
    // EPIPE after the child died is expected; the exit handler does the rest.
    proc.stdin?.on('error', (error) => this.#log.debug({ event: 'child_stdin_error', err: errorMessage(error) }));
  }

  static start(options: ProcessSpawnOptions, spec: ChildSpec): Promise<Child> {
    const [file, ...args] = options.command as [string, ...string[]];
    const log = options.log.child({ sessionId: spec.sessionId, user: spec.forgejoLogin });
    const proc = spawn(file, args, {
      env: childEnvironment(options.parentEnv, options.envAllow, options.forgejoUrl, spec.forgejoToken),
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group: a terminal's Ctrl-C reaches the broker only, which
      // then stops children in order; signals go to the whole group, so what a
      // child spawned stops with it.
      detached: true,
      shell: false,
    });
    return new Promise((resolve, reject) => {
      proc.once('spawn', () => {
        log.info({ event: 'child_spawn', pid: proc.pid }, 'child started');
        resolve(new ProcessChild(proc, options, log, spec.forgejoToken));
      });
      proc.once('error', (error) => reject(error));
    });
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  send(message: JSONRPCMessage): boolean {
    const stdin = this.#proc.stdin;
    if (this.#exitInfo !== undefined || this.#stopping !== undefined || stdin === null || !stdin.writable) return false;
    // Messages of one event-loop turn (many clients' requests arrive together) leave in one write: one wake-up of the child, not one each.
    if (!this.#corked) {
      this.#corked = true;
      stdin.cork();
      setImmediate(() => {
        this.#corked = false;
        stdin.uncork();
      });
    }
    stdin.write(JSON.stringify(message) + '\n');
    return true;
  }

  stop(): Promise<ChildExit> {
    this.#stopping ??= this.#terminate();
    return this.#stopping;
  }

  async #terminate(): Promise<ChildExit> {
    if (this.#exitInfo !== undefined) return this.#exitInfo;
    // A well-behaved stdio server exits when its input ends.
    this.#proc.stdin?.end();
    if (await settlesWithin(this.exited, this.#options.stopGraceMs)) return this.exited;
    this.#signal('SIGTERM');
    if (await settlesWithin(this.exited, this.#options.stopGraceMs)) return this.exited;
    this.#log.warn({ event: 'child_kill', pid: this.#proc.pid }, 'child ignored SIGTERM; killing it');
    this.#signal('SIGKILL');
    return this.exited;
  }

  #signal(signal: NodeJS.Signals): void {
    if (this.#exitInfo === undefined) signalProcessGroup(this.#proc, signal);
  }

  /** A large line: an answer passes through as bytes when the owner takes it so; anything else is parsed as usual. */
  #receiveLarge(chunks: Buffer[]): void {
    const answer = this.onanswer === undefined ? undefined : RawAnswer.scan(chunks);
    if (answer !== undefined) {
      this.onanswer?.(answer);
      return;
    }
    const text = Buffer.concat(chunks).toString('utf8');
    this.#receive(text.endsWith('\r') ? text.slice(0, -1) : text);
  }

  #receive(line: string): void {
    if (line.trim() === '') return;
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.#logBudget.line(() =>
        this.#log.warn({ event: 'child_stdout_not_json', bytes: line.length }, 'child wrote a line that is not JSON to stdout; dropped'),
      );
      return;
    }
    if (!isJsonRpcMessage(message)) {
      this.#logBudget.line(() =>
        this.#log.warn({ event: 'child_stdout_not_jsonrpc' }, 'child wrote JSON that is not JSON-RPC 2.0; dropped'),
      );
      return;
    }
    this.onmessage?.(message, line.length);
  }
}
