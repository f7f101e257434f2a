/**
 * Faults of the files the broker keeps (issue 10, section 5): who may read
 * them, and what a full disk does to a first start and to readiness. The
 * full disk is real: a small tmpfs filled until the kernel answers ENOSPC,
 * with the broker (`forgejo-mcp-broker serve`) running in its namespace.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { standinChildCommand } from '../../src/demo.js';
import { silentLogger } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin } from '../../src/standin/forgejo.js';
import { ENCRYPTION_KEY_FILE, loadEncryptionKey } from '../../src/store/encryption-key.js';
import { DATABASE_FILE, openSqliteStore } from '../../src/store/sqlite.js';
import {
  eventually,
  freshDataDirs,
  portForProcess,
  skipIfMissing,
  smallFilesystem,
  type SmallFilesystem,
  smallFilesystemUnavailable,
} from '../support/host.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const dataDirs = freshDataDirs('faults-files-');
const noSmallFilesystem = skipIfMissing(await smallFilesystemUnavailable());
const log = silentLogger();

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function readyz(url: string): Promise<number> {
  const response = await fetch(`${url}/readyz`);
  await response.arrayBuffer();
  return response.status;
}

interface Served {
  readonly url: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<[number | null]>;
  output(): string;
}

type Spawner = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

/**
 * `forgejo-mcp-broker serve` inside the small filesystem's namespace, its data
 * directory `data` there, in front of a Forgejo stand-in; stopped after the test.
 */
function serve(t: TestContext, disk: SmallFilesystem): Promise<Served> {
  return serveWith(t, join(disk.mountPoint, 'data'), (command, args, options) => disk.spawn(command, args, options));
}

/** `forgejo-mcp-broker serve` with `dataDir` (as the process sees it), started by `spawner`, in front of a Forgejo stand-in; stopped after the test. */
async function serveWith(t: TestContext, dataDir: string, spawner: Spawner): Promise<Served> {
  const port = await portForProcess();
  const url = `http://127.0.0.1:${port}`;
  const application = { clientId: 'faults-files', clientSecret: randomBytes(24).toString('hex') };
  const forgejo = await startForgejoStandin({
    users: [],
    applications: [{ ...application, redirectUris: [`${url}${OAUTH_PATHS.callback}`] }],
  });
  const proc = spawner(process.execPath, [CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      FORGEJO_URL: forgejo.url,
      FORGEJO_CLIENT_ID: application.clientId,
      FORGEJO_CLIENT_SECRET: application.clientSecret,
      BROKER_LISTEN: `127.0.0.1:${port}`,
      BROKER_DATA_DIR: dataDir,
      BROKER_CHILD_COMMAND: standinChildCommand({ testTools: true }),
      BROKER_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(proc, 'exit') as Promise<[number | null]>;
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await exited;
    }
    await forgejo.close();
  });
  return { url, proc, exited, output: () => output };
}

/** Waits until the broker listens, or fails with what it said if it exited instead. */
async function listening(served: Served): Promise<void> {
  await eventually(
    () => {
      if (served.proc.exitCode !== null) throw new Error(`the broker exited with ${served.proc.exitCode}: ${served.output()}`);
      return served.output().includes('"event":"listening"');
    },
    'the broker listens',
    20_000,
  );
}

test('the database, its -wal and -shm and the key are 0600 under umask 0 in a 0777 directory, and files left wider are narrowed', async (t) => {
  const previousUmask = process.umask(0);
  t.after(() => process.umask(previousUmask));
  const dataDir = dataDirs();
  await mkdir(dataDir, { mode: 0o777 });
  assert.equal(await modeOf(dataDir), 0o777);

  const key = await loadEncryptionKey(dataDir, undefined, log);
  const store = await openSqliteStore({ dataDir, encryptionKey: key });
  assert.equal(await store.ready(), true);
  const files = [ENCRYPTION_KEY_FILE, DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`];
  for (const file of files) assert.equal(await modeOf(join(dataDir, file)), 0o600, file);
  await store.close();

  // A database and a key an earlier version (or an operator's copy) made 0644.
  await chmod(join(dataDir, DATABASE_FILE), 0o644);
  await chmod(join(dataDir, ENCRYPTION_KEY_FILE), 0o644);
  assert.deepEqual(await loadEncryptionKey(dataDir, undefined, log), key);
  const reopened = await openSqliteStore({ dataDir, encryptionKey: key });
  t.after(() => reopened.close());
  assert.equal(await reopened.ready(), true);
  for (const file of files) assert.equal(await modeOf(join(dataDir, file)), 0o600, `${file} after reopening`);
});

test(
  'a full disk on first start leaves no key behind: that start fails, the next one with room succeeds',
  { skip: noSmallFilesystem },
  async (t) => {
    const disk = await smallFilesystem(256 * 1024);
    t.after(() => disk.close());
    const dataDir = join(disk.dir, 'data');
    await mkdir(dataDir);
    t.diagnostic(`filler took ${await disk.fill()} bytes of 262144; the disk is full`);

    const first = await serve(t, disk);
    const [code] = await first.exited;
    assert.equal(code, 1, first.output());
    assert.match(first.output(), /ENOSPC/);
    assert.deepEqual(await readdir(dataDir), [], 'nothing left behind, no empty key in particular');

    await disk.free();
    const second = await serve(t, disk);
    await listening(second);
    assert.equal(await readyz(second.url), 200);
    assert.equal(await modeOf(join(dataDir, ENCRYPTION_KEY_FILE)), 0o600);
    assert.equal((await loadEncryptionKey(dataDir, undefined, log)).length, 32);
  },
);

test('/readyz answers 503 while the disk is full and 200 again once there is room', { skip: noSmallFilesystem }, async (t) => {
  const disk = await smallFilesystem(8 * 1024 * 1024);
  t.after(() => disk.close());
  const served = await serve(t, disk);
  await listening(served);
  assert.equal(await readyz(served.url), 200);

  t.diagnostic(`filler took ${await disk.fill()} bytes of ${8 * 1024 * 1024}; the disk is full`);
  assert.equal(await readyz(served.url), 503, 'not ready while no commit can reach the disk');
  assert.equal(await readyz(served.url), 503, 'and stays so');
  assert.deepEqual(await (await fetch(`${served.url}/healthz`)).json(), { status: 'ok' }, 'alive all the same');

  await disk.free();
  assert.equal(await readyz(served.url), 200, 'ready again once there is room');
});

test(
  'a key file mounted read-only and readable by others: the broker starts, and warns naming the file and its mode',
  { skip: noSmallFilesystem },
  async (t) => {
    const dataDir = dataDirs();
    await mkdir(dataDir, { mode: 0o700 });
    const secretDir = dataDirs();
    await mkdir(secretDir, { mode: 0o700 });
    const secret = join(secretDir, 'key');
    await writeFile(secret, randomBytes(32).toString('base64') + '\n', { mode: 0o644 });
    await chmod(secret, 0o644);
    const keyPath = join(dataDir, ENCRYPTION_KEY_FILE);
    await writeFile(keyPath, '', { mode: 0o600 });
    // As a container secret is: the key bind-mounted read-only over the data directory's encryption.key.
    const readOnlyMount: Spawner = (command, args, options) =>
      spawn(
        'unshare',
        [
          '--user',
          '--map-root-user',
          '--mount',
          'sh',
          '-c',
          'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@"',
          'sh',
          secret,
          keyPath,
          command,
          ...args,
        ],
        options,
      );

    const served = await serveWith(t, dataDir, readOnlyMount);
    await listening(served);
    assert.equal(await readyz(served.url), 200);
    const warning = served
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => entry.level === 'warn' && typeof entry.msg === 'string' && entry.msg.includes('encryption key'));
    assert.ok(warning, served.output());
    assert.equal(warning.path, keyPath);
    assert.equal(warning.mode, '0644');
    assert.equal(warning.code, 'EROFS');
    assert.equal(await modeOf(secret), 0o644, "the operator's file is left as it was");
  },
);
