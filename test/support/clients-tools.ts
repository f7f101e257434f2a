/**
 * The third-party MCP clients the real-client tests drive, installed by the
 * separate npm project `clients/` (`(cd clients && npm ci)`), and the means
 * to run them: bounded child processes that never outlive a test, and
 * Debian's Chromium for browser steps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { chromium, type Browser } from 'playwright-core';
import { skipIfMissing } from './requirements.js';

/** The repository root (this file runs as dist/test/support/clients-tools.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLIENTS_BIN = fileURLToPath(new URL('../../../clients/node_modules/.bin/', import.meta.url));
export const CHROMIUM = '/usr/bin/chromium';

/** Path of a client's executable in `clients/node_modules/.bin`. */
export function clientBinary(name: string): string {
  return `${CLIENTS_BIN}${name}`;
}

/** A `skip` value for node:test: false when every named client is installed, else why not. */
export function skipUnlessInstalled(...names: string[]): string | false {
  const missing = names.filter((name) => !existsSync(clientBinary(name)));
  return skipIfMissing(missing.length === 0 ? false : `${missing.join(', ')} not installed: run (cd clients && npm ci)`);
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

export interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A child process in its own process group, so a stop reaches the helpers it started too. */
export class ClientProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Finished>;

  constructor(command: string, args: readonly string[], options: RunOptions & { stdin?: 'pipe' | 'ignore' } = {}) {
    this.child = spawn(command, args, {
      env: options.env ?? process.env,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }));
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM to the whole group, SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.running) {
      await this.exited.catch(() => undefined);
      return;
    }
    this.signalGroup('SIGTERM');
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
    try {
      await this.exited.catch(() => undefined);
    } finally {
      clearTimeout(timer);
      // Helpers of the client (its own children) go with it.
      this.signalGroup('SIGKILL');
    }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Runs a command to its end, killed (with its group) if it takes longer than `limitMs`. */
export async function runToEnd(command: string, args: readonly string[], limitMs: number, options: RunOptions = {}): Promise<Finished> {
  const run = new ClientProcess(command, args, options);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void run.stop(1000);
  }, limitMs);
  try {
    const finished = await run.exited;
    if (timedOut)
      throw new Error(
        `${command} ${args.join(' ')} did not finish within ${limitMs} ms\nstdout: ${finished.stdout}\nstderr: ${finished.stderr}`,
      );
    return finished;
  } finally {
    clearTimeout(timer);
    await run.stop(1000);
  }
}

/** Headless Chromium as the other browser tests launch it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}
