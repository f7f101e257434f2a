/**
 * Races of token rotation found while testing rotation under traffic, pinned
 * down one by one with real stand-in children and a spawner that lets the
 * test act at the exact moment the race needs.
 *
 * - A session that ends (DELETE, idle reaper, revoked credential) while its
 *   replacement child is being told the session's state: the replay went on
 *   after a failed step, the ended channel adopted the new child, and nothing
 *   ever stopped it (fixed in 4284674).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { silentLogger } from '../../src/log/logger.js';
import type { Child, SpawnFunc } from '../../src/pool/child.js';
import { processSpawner } from '../../src/supervisor/child.js';
import { STANDIN_CHILD, startBroker } from '../support/brokers.js';
import { eventually, isAlive } from '../support/host.js';

/** The same child, with every message to it shown to `hook` first. */
function intercept(child: Child, hook: (message: JSONRPCMessage) => void): Child {
  return {
    get pid() {
      return child.pid;
    },
    send: (message) => {
      hook(message);
      return child.send(message);
    },
    get onmessage() {
      return child.onmessage;
    },
    set onmessage(handler) {
      child.onmessage = handler;
    },
    exited: child.exited,
    stop: () => child.stop(),
  };
}

test('a session that ends while its replacement child is told the log level leaves no child behind', { timeout: 60_000 }, async (t) => {
  // Set once the broker (and its forge) exist: the spawner needs the forge's URL.
  const wiring: { real?: SpawnFunc; hook?: (message: JSONRPCMessage) => void } = {};
  const spawned: Child[] = [];
  const broker = await startBroker({
    spawn: async (spec) => {
      if (wiring.real === undefined) throw new Error('not ready');
      const child = intercept(await wiring.real(spec), (message) => wiring.hook?.(message));
      spawned.push(child);
      return child;
    },
  });
  t.after(async () => {
    await broker.close();
    // Should the race come back, its orphan must not keep this test file's process alive.
    for (const child of spawned) if (child.pid !== undefined && isAlive(child.pid)) process.kill(child.pid, 'SIGKILL');
  });
  wiring.real = processSpawner({
    command: [process.execPath, STANDIN_CHILD, '--transport', 'stdio', '--test-tools'],
    forgejoUrl: broker.forge.url,
    envAllow: [],
    parentEnv: process.env,
    stopGraceMs: 2000,
    maxMessageBytes: 1024 * 1024,
    log: silentLogger(),
  });
  const user = broker.addUser('alice');
  const { client, transport } = await broker.connect(user);
  await client.setLoggingLevel('debug');
  const sessionId = transport.sessionId as string;
  assert.equal(spawned.length, 1);

  let ended: Promise<void> | undefined;
  wiring.hook = (message) => {
    // The replacement child is being told the session's log level: the session ends right now.
    if ('method' in message && message.method === 'logging/setLevel' && spawned.length === 2 && ended === undefined) {
      ended = broker.legacy.end(sessionId, 'deleted');
    }
  };
  broker.newForgejoToken(user);
  await broker.pool.rotateUser(user.userId);
  assert.ok(ended, 'the replay reached logging/setLevel');
  await ended;
  assert.equal(broker.legacy.active, 0);
  const pids = spawned.map((child) => child.pid as number);
  await eventually(() => pids.every((pid) => !isAlive(pid)), 'every child of the ended session stopped', 10_000).catch(() => {
    throw new Error(`still running: ${pids.filter((pid) => isAlive(pid)).join(', ')} of ${pids.join(', ')}`);
  });
  await client.close().catch(() => undefined);
});
