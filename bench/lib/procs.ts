import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { LOG_DIR } from './paths.js';

/** Memory of a process as the kernel sees it, in bytes. */
export interface ProcMemory {
  readonly rss: number;
  /** Peak RSS since start or since the last resetPeak(). */
  readonly hwm: number;
}

export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return match === null ? Number.NaN : Number(match[1]) * 1024;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** CPU time (user + system) a process has used so far, in microseconds; 0 once it is gone. */
export function procCpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of /proc/PID/stat (utime, stime), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return 0;
  }
}

/** Memory the kernel can give new allocations without swapping (MemAvailable), in bytes. */
export function availableMemory(): number {
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match === null ? Number.NaN : Number(match[1]) * 1024;
}

/** How many file descriptors (sockets, pipes, files) a process holds open. */
export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

/** The command line of a process, from /proc; empty once it is gone. */
export function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return [];
  }
}

/** Resets the kernel's peak-RSS mark (VmHWM) of a process (Linux: clear_refs 5). */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Every live descendant of a process, from /proc. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift() as number) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process the harness started, with its log file and, when asked for, the probe's IPC channel. */
export class Proc {
  private nextProbeId = 1;
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    /** Whether bench/probe.js runs in the process. */
    readonly probed: boolean,
  ) {
    this.exited = once(child, 'exit').then(() => undefined);
    child.on('message', (message: unknown) => {
      const reply = message as Record<string, unknown>;
      const id = reply.id;
      if (typeof id !== 'number') return;
      this.waiting.get(id)?.(reply);
      this.waiting.delete(id);
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Asks the probe loaded into the process (bench/probe.ts) to do something; bounded. */
  async probe(command: string, args: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    if (!this.probed) throw new Error(`${this.name} runs no probe`);
    const id = this.nextProbeId++;
    const reply = new Promise<Record<string, unknown>>((resolve) => this.waiting.set(id, resolve));
    this.child.send({ id, command, ...args });
    const timer = delay(timeoutMs).then(() => {
      throw new Error(`${this.name}: probe ${command} timed out`);
    });
    return Promise.race([reply, timer]);
  }

  memory(): ProcMemory {
    return procMemory(this.pid);
  }
}

/**
 * Every process the harness starts, so that all of them (and what they
 * started in turn) are stopped at the end, by pid, whatever happened.
 */
export class ProcessSet {
  private readonly procs: Proc[] = [];

  constructor() {
    mkdirSync(LOG_DIR, { recursive: true });
  }

  /** `ipc` opens a channel (bare servers report their port on it); `probe` says bench/probe.js is loaded and answers on it. */
  start(name: string, command: string, args: readonly string[], options: SpawnOptions & { ipc?: boolean; probe?: boolean } = {}): Proc {
    const log = createWriteStream(`${LOG_DIR}/${name}.log`);
    const { ipc, probe, ...spawnOptions } = options;
    const child = spawn(command, args, {
      ...spawnOptions,
      stdio: ['pipe', 'pipe', 'pipe', ...(ipc === true ? (['ipc'] as const) : [])],
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once('exit', () => setTimeout(() => log.end(), 100));
    const proc = new Proc(name, child, probe === true);
    this.procs.push(proc);
    return proc;
  }

  /** SIGTERM (graceful: a broker stops its children), then SIGKILL whatever is left, the started processes' descendants included. */
  async stop(proc: Proc, graceMs = 8_000): Promise<void> {
    if (!proc.running) return;
    const family = descendants(proc.pid);
    proc.child.kill('SIGTERM');
    await Promise.race([proc.exited, delay(graceMs)]);
    if (proc.running) proc.child.kill('SIGKILL');
    await Promise.race([proc.exited, delay(2_000)]);
    // Children of a gateway exit when their stdin closes; give them a moment, then make sure.
    const deadline = Date.now() + 3_000;
    while (family.some(alive) && Date.now() < deadline) await delay(50);
    for (const pid of family.filter(alive)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.procs.map((proc) => this.stop(proc)));
  }
}
