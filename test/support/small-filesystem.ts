/**
 * A real filesystem that can be filled to the last byte: a small tmpfs,
 * mounted without root in a mount namespace of its own (`unshare --user
 * --map-root-user --mount`), held open by the process that made it.
 * Processes started with `spawn` run in that namespace and see it at
 * `mountPoint`; this process reaches the same files through
 * `/proc/<holder>/root` (`dir`). Not through `dir` for SQLite: it resolves
 * that magic link to `/`, which is outside the namespace.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
