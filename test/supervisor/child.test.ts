/**
 * The supervisor: what a child gets in its environment, where its output
 * goes, and how it is stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.js';
import type { ChildSpec } from '../../src/pool/child.js';
import { processSpawner } from '../../src/supervisor/child.js';
import { eventually, isAlive } from '../support/host.js';

const SPEC: ChildSpec = { sessionId: 'sess-1', userId: '7', forgejoLogin: 'alice', forgejoToken: 'fj-secret-token-value' };

/** A logger whose JSON lines the test can read. */
function capturedLog(): { log: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const log = createLogger('debug', sink);
  return {
    log,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** A child written inline: node -e SCRIPT. */
function spawner(script: string, log = capturedLog().log, stopGraceMs = 300) {
  return processSpawner({
    command: [process.execPath, '-e', script],
    forgejoUrl: 'http://forge.test',
    envAllow: ['BROKER_TEST_EXTRA'],
    parentEnv: {
      PATH: '/usr/bin',
      HOME: '/home/x',
      LC_ALL: 'C',
      BROKER_ENCRYPTION_KEY: 'secret',
      FORGEJO_CLIENT_SECRET: 's',
      BROKER_TEST_EXTRA: 'yes',
      TZ: 'UTC',
    },
    stopGraceMs,
    maxMessageBytes: 1024 * 1024,
    log,
  });
}

test('a child gets an explicit environment: Forgejo URL and token plus the allowlist, nothing else', async () => {
  const script = `process.stdout.write(JSON.stringify({jsonrpc:'2.0',method:'env',params:process.env})+'\\n'); process.stdin.resume(); process.stdin.on('end',()=>process.exit(0));`;
  const child = await spawner(script)(SPEC);
  const message = await new Promise<{ params?: Record<string, string> }>(
    (resolve) => (child.onmessage = (m) => resolve(m as { params?: Record<string, string> })),
  );
  await child.stop();
  const env = message.params ?? {};
  assert.equal(env.FORGEJO_URL, 'http://forge.test');
  assert.equal(env.FORGEJO_ACCESS_TOKEN, 'fj-secret-token-value');
  assert.equal(env.BROKER_TEST_EXTRA, 'yes');
  assert.equal(env.LC_ALL, 'C');
  assert.equal(env.BROKER_ENCRYPTION_KEY, undefined);
  assert.equal(env.FORGEJO_CLIENT_SECRET, undefined);
  const unexpected = Object.keys(env).filter(
    (name) => !['FORGEJO_URL', 'FORGEJO_ACCESS_TOKEN', 'BROKER_TEST_EXTRA', 'LC_ALL', 'PATH', 'HOME', 'TZ'].includes(name),
  );
  // node itself may add nothing; anything else leaked from the broker.
  assert.deepEqual(unexpected, []);
});

test('stderr goes to the log line by line, tagged with session and user, token redacted; stdout junk is dropped', async () => {
  const { log, lines } = capturedLog();
  const script = `console.error('starting with fj-secret-token-value'); console.error('second line'); console.log('not json'); console.log(JSON.stringify({jsonrpc:'2.0',method:'ok'})); process.stdin.resume(); process.stdin.on('end',()=>process.exit(0));`;
  const child = await spawner(script, log)(SPEC);
  const received: string[] = [];
  child.onmessage = (m) => received.push((m as { method: string }).method);
  await eventually(() => lines().filter((l) => l.event === 'child_stderr').length === 2 && received.length === 1, 'output seen');
  await child.stop();
  const stderr = lines().filter((line) => line.event === 'child_stderr');
  assert.deepEqual(
    stderr.map((line) => line.line),
    ['starting with [REDACTED]', 'second line'],
  );
  for (const line of stderr) {
    assert.equal(line.sessionId, 'sess-1');
    assert.equal(line.user, 'alice');
  }
  assert.deepEqual(received, ['ok']);
  assert.ok(lines().some((line) => line.event === 'child_stdout_not_json'));
  assert.ok(!JSON.stringify(lines()).includes('fj-secret-token-value'));
});

test('stop closes stdin first: a well-behaved child exits on its own', async () => {
  // A grace long enough that a loaded machine does not escalate before the child sees EOF.
  const child = await spawner(`process.stdin.resume(); process.stdin.on('end',()=>process.exit(7));`, capturedLog().log, 10_000)(SPEC);
  const exit = await child.stop();
  assert.deepEqual(exit, { code: 7, signal: null });
});

test('stop escalates to SIGTERM, then SIGKILL, and is idempotent', async () => {
  const stubborn = `process.on('SIGTERM',()=>{}); setInterval(()=>{},1000); console.log(JSON.stringify({jsonrpc:'2.0',method:'ready'}));`;
  const child = await spawner(stubborn, capturedLog().log, 200)(SPEC);
  await new Promise<void>((resolve) => (child.onmessage = () => resolve()));
  const pid = child.pid as number;
  const first = child.stop();
  const second = child.stop();
  assert.equal(first, second);
  const exit = await first;
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(isAlive(pid), false);
  assert.deepEqual(await child.exited, exit);
  assert.equal(child.send({ jsonrpc: '2.0', method: 'late' }), false);
});

test('a command that does not exist fails the spawn', async () => {
  const spawn = processSpawner({
    command: ['/nonexistent/forgejo-mcp'],
    forgejoUrl: 'http://forge.test',
    envAllow: [],
    parentEnv: {},
    stopGraceMs: 100,
    maxMessageBytes: 1024,
    log: capturedLog().log,
  });
  await assert.rejects(spawn(SPEC), /ENOENT/);
});

test('the messages of one event-loop turn reach the child in one write, in order', async () => {
  // Echoes each line back: every message arrived, and in the order sent.
  const echo = `require('readline').createInterface({input:process.stdin}).on('line',(l)=>console.log(JSON.stringify({jsonrpc:'2.0',method:'seen',params:JSON.parse(l).params}))); process.stdin.on('end',()=>process.exit(0));`;
  const child = await spawner(echo)(SPEC);
  const seen: number[] = [];
  child.onmessage = (m) => seen.push((m as { params?: { n?: unknown } }).params?.n as number);
  const writes = (): number => Number(/syscw:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1]);
  const before = writes();
  for (let n = 0; n < 50; n++) child.send({ jsonrpc: '2.0', method: 'note', params: { n } });
  await new Promise((resolve) => setImmediate(resolve));
  const written = writes() - before;
  await eventually(() => seen.length === 50, 'every message echoed');
  await child.stop();
  assert.deepEqual(seen, [...Array(50).keys()]);
  // One write for the fifty (a few more of whatever else this process wrote meanwhile), not fifty.
  assert.ok(written < 10, `${written} write calls for 50 messages`);
});
