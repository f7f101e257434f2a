/**
 * Many sessions at once, each with its own real child process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../support/brokers.js';
import { eventually, isAlive } from '../support/host.js';
import { text } from '../support/mcp-clients.js';

const SESSIONS = 200;

/** Runs the tasks with at most `limit` at a time. */
async function inBatches<T>(count: number, limit: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let start = 0; start < count; start += limit) {
    results.push(...(await Promise.all(Array.from({ length: Math.min(limit, count - start) }, (_, i) => task(start + i)))));
  }
  return results;
}

test(`${SESSIONS} concurrent sessions with real children: requests through all, all ended, no process left`, async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const sessions = await inBatches(SESSIONS, 25, async (i) => {
    const user = broker.addUser(`user${i}`);
    const connected = await broker.connect(user);
    return { user, ...connected };
  });
  assert.equal(broker.legacy.active, SESSIONS);

  // Every session at once: each answers as its own user, from its own process.
  const answers = await Promise.all(
    sessions.map(async ({ client }) => {
      const [me, pid] = await Promise.all([
        client.callTool({ name: 'get_me', arguments: {} }),
        client.callTool({ name: 'pid', arguments: {} }),
      ]);
      return { login: (JSON.parse(text(me)) as { login: string }).login, pid: Number(text(pid)) };
    }),
  );
  answers.forEach((answer, i) => assert.equal(answer.login, `user${i}`));
  const pids = new Set(answers.map((answer) => answer.pid));
  assert.equal(pids.size, SESSIONS, 'one child per session');

  await Promise.all(sessions.map(({ transport }) => transport.terminateSession()));
  assert.equal(broker.legacy.active, 0);
  await eventually(() => [...pids].every((pid) => !isAlive(pid)), 'every child exited', 30_000);
  await Promise.all(sessions.map(({ client }) => client.close()));
});
