/**
 * Children that misbehave (issue 10, section 6): one writing garbage to
 * stdout costs the broker's log a few lines per second, the rest counted; a
 * process a child spawned stops with the child's session, however the
 * session ends.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.js';
import { CHILD_LOG_LINES_PER_WINDOW } from '../../src/supervisor/log-limiter.js';
import { startBroker } from '../support/brokers.js';
import { eventually, isRunning } from '../support/host.js';
import { text } from '../support/mcp-clients.js';

/** The broker's log lines, as objects, kept for the test to read. */
function capturedLog(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

function counterValue(exposition: string, name: string): number {
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(exposition);
  return match === null ? 0 : Number(match[1]);
}

test('a child writing 5,000 garbage lines to stdout causes a few log lines; the rest are counted in a metric and summed up', async (t) => {
  const log = capturedLog();
  const logger = createLogger('info', log.stream);
  const broker = await startBroker({ log: logger });
  const { metrics } = broker;
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  const injected = 5_000;
  assert.equal(text(await client.callTool({ name: 'garbage', arguments: { lines: injected } })), 'wrote');

  const garbageLogged = (): number => log.lines.filter((line) => line.event === 'child_stdout_not_json').length;
  const summaries = (): Record<string, unknown>[] => log.lines.filter((line) => line.event === 'child_log_suppressed');
  const suppressed = (): number => summaries().reduce((sum, line) => sum + Number(line.lines), 0);
  // Every garbage line was read before the answer; the last summary follows when its window ends.
  await eventually(() => garbageLogged() + suppressed() === injected, 'every garbage line logged or counted');
  const windows = summaries().length;
  t.diagnostic(`garbage lines: ${injected}; logged: ${garbageLogged()}; suppressed: ${suppressed()} in ${windows} summary lines`);
  assert.ok(windows >= 1);
  // A window that suppressed anything logged its budget first; at most one window more logged without suppressing.
  assert.ok(garbageLogged() <= CHILD_LOG_LINES_PER_WINDOW * (windows + 1), `${garbageLogged()} garbage lines logged`);
  const exposition = (await metrics.render()).body;
  assert.equal(counterValue(exposition, 'forgejo_mcp_broker_child_log_lines_suppressed_total'), suppressed());
  // The child is fine and still serving.
  assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
  await client.close();
});

for (const ending of ['DELETE', 'child crash', 'broker stop'] as const) {
  test(`a grandchild the child spawned does not outlive its session (${ending})`, async (t) => {
    const broker = await startBroker();
    t.after(() => broker.close());
    const { client, transport } = await broker.connect(broker.addUser());
    const childPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
    const grandchildPid = Number(text(await client.callTool({ name: 'spawn_grandchild', arguments: {} })));
    assert.ok(isRunning(grandchildPid));
    switch (ending) {
      case 'DELETE':
        await transport.terminateSession();
        break;
      case 'child crash':
        await assert.rejects(client.callTool({ name: 'crash', arguments: {} }));
        break;
      case 'broker stop':
        await broker.stopSessions();
        break;
    }
    await eventually(() => broker.legacy.active === 0, 'session ended');
    await eventually(() => !isRunning(childPid), 'child stopped');
    await eventually(() => !isRunning(grandchildPid), 'grandchild stopped');
    await client.close();
  });
}
