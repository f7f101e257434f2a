/**
 * What the machine offers a test: waiting on a condition, processes from
 * /proc, a port for a process of its own, temporary directories, a small
 * filesystem that can be filled, and skipping when a tool is not installed.
 */
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';

/** Polls until the condition holds, or fails after the limit. Not a timing assertion: a bound on waiting. */
export async function eventually(condition: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether a process id is alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// --- processes
/**
 * Live processes whose parent is `parentPid` and whose command line mentions
 * `marker`, from /proc (Linux): what is really running, whatever anyone
 * recorded. Zombies (exited, not yet reaped) do not count.
 */
export function childProcesses(parentPid: number, marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) !== parentPid || state === 'Z' || state === 'X') continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Whether a process runs, from /proc: a zombie (exited, not yet reaped by whoever inherited it) does not. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * A port nothing listens on right now, for a broker in a process of its own
 * that must be told its port (and public URL) before it starts. In-process
 * brokers never need it: they take a socket already listening (listenOnAnyPort).
 */
export async function portForProcess(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

// --- tools installed outside npm
/**
 * A test that needs a tool installed outside npm (Chromium, the third-party
 * clients) is skipped on a developer machine without it, with the command
 * that installs it. In CI it is never skipped: .ci/run installs everything,
 * so a missing tool there fails the test instead of hiding it.
 */
export function skipIfMissing(missing: string | false): string | false {
  if (missing === false || process.env.CI === 'true') return false;
  return missing;
}

// --- temporary directories
/**
 * A temporary directory for the calling test file, made before its tests
 * and removed after them. The returned function names a new directory in it
 * on every call, not yet created: the code under test makes its own data
 * directory.
 */
export function freshDataDirs(prefix: string): () => string {
  let root: string | undefined;
  let made = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
  });
  after(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });
  return () => {
    if (root === undefined) throw new Error('data directories are named only while the tests run');
    made += 1;
    return join(root, `data-${made}`);
  };
}

// --- a small filesystem
/**
 * A real filesystem that can be filled to the last byte: a small tmpfs,
 * mounted without root in a mount namespace of its own (`unshare --user
 * --map-root-user --mount`), held open by the process that made it.
 * Processes started with `spawn` run in that namespace and see it at
 * `mountPoint`; this process reaches the same files through
 * `/proc/<holder>/root` (`dir`). Not through `dir` for SQLite: it resolves
 * that magic link to `/`, which is outside the namespace.
 */

export interface SmallFilesystem {
  /** The filesystem's root, as this process sees it. */
  readonly dir: string;
  /** The filesystem's root, as processes started with `spawn` see it. */
  readonly mountPoint: string;
  /** Starts a process inside the filesystem's namespace (same network, same everything else). */
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess;
  /** Writes a filler file until the kernel answers ENOSPC. Returns the bytes it took. */
  fill(): Promise<number>;
  /** Removes the filler. */
  free(): Promise<void>;
  /** Unmounts (the holder exits, its namespace and the tmpfs with it). */
  close(): Promise<void>;
}

const FILLER = '.filler';

export async function smallFilesystem(sizeBytes: number): Promise<SmallFilesystem> {
  const mountPoint = await mkdtemp(join(tmpdir(), 'small-fs-'));
  const holder = spawn(
    'unshare',
    [
      '--user',
      '--map-root-user',
      '--mount',
      'sh',
      '-c',
      'mount -t tmpfs -o size="$1" tmpfs "$2" && echo mounted && exec cat',
      'sh',
      String(sizeBytes),
      mountPoint,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  try {
    await mounted(holder);
  } catch (error) {
    await rm(mountPoint, { recursive: true, force: true });
    throw error;
  }
  const dir = `/proc/${holder.pid as number}/root${mountPoint}`;
  const filler = join(dir, FILLER);
  return {
    dir,
    mountPoint,
    spawn: (command, args, options) =>
      spawn('nsenter', ['--target', String(holder.pid), '--user', '--mount', '--', command, ...args], options),
    fill: async () => {
      const handle = await open(filler, 'a');
      const chunk = Buffer.alloc(64 * 1024);
      let written = 0;
      try {
        for (;;) written += (await handle.write(chunk)).bytesWritten;
      } catch (error) {
        if (!(error instanceof Error && 'code' in error && error.code === 'ENOSPC')) throw error;
      } finally {
        await handle.close();
      }
      return written;
    },
    free: () => rm(filler, { force: true }),
    close: async () => {
      if (holder.exitCode === null && holder.signalCode === null) {
        const exited = once(holder, 'exit');
        holder.stdin?.end();
        await exited;
      }
      await rm(mountPoint, { recursive: true, force: true });
    },
  };
}

/** Why a small filesystem cannot be made here (no util-linux `unshare`, user namespaces disabled), or false. */
export async function smallFilesystemUnavailable(): Promise<string | false> {
  try {
    const probe = await smallFilesystem(64 * 1024);
    try {
      const [code] = (await once(probe.spawn('true', [], { stdio: 'ignore' }), 'exit')) as [number | null];
      return code === 0 ? false : `needs util-linux nsenter into a user namespace (it exited with ${String(code)})`;
    } finally {
      await probe.close();
    }
  } catch (error) {
    return `needs a tmpfs in a user namespace (util-linux unshare, unprivileged user namespaces): ${error instanceof Error ? error.message : String(error)}`;
  }
}

async function mounted(holder: ChildProcess): Promise<void> {
  let stderr = '';
  holder.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject);
    holder.once('exit', (code) => reject(new Error(`unshare exited with ${String(code)}: ${stderr.trim()}`)));
    holder.stdout?.once('data', () => resolve());
  });
}
