/**
 * A legacy request that was on its way into its session when the broker
 * began to stop: the session is ending, but the request is refused as
 * "stopping" (503), which a replica that forwarded it takes as a gone owner
 * and carries the session on elsewhere; "Session not found" would reach the
 * client as a lost session.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TEAM_CACHE_MS } from '../../src/config/defaults.js';
import { startBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { openSession, post, toolCall } from './sse.js';

test('a call that waited on Forgejo (team memberships) while its broker began to stop is answered 503 "shutting down", not 404', async (t) => {
  const file = join(tmpdir(), `policy-stopping-${randomBytes(4).toString('hex')}.json`);
  await writeFile(file, JSON.stringify({ default: {}, rules: [{ name: 'maintainers', teams: ['acme/maintainers'], deny: ['crash'] }] }));
  let now = Date.now();
  const broker = await startBroker({ policy: { file }, now: () => now });
  t.after(() => broker.close());
  const user = broker.addUser('mia', [{ org: 'acme', team: 'maintainers' }]);
  const session = await openSession(broker, user);
  // The memberships are asked again on the next request, and Forgejo is slow to answer.
  now += TEAM_CACHE_MS + 1;
  const release = broker.forge.holdTeams();
  const answer = post(broker, user, toolCall(1, 'echo', { text: 'hi' }), session);
  await eventually(() => broker.forge.teamRequestsHeld === 1, 'the call waits on Forgejo');
  const stopped = broker.running.stopSessions();
  release();
  const response = await answer;
  assert.equal(response.status, 503, await response.clone().text());
  assert.match(await response.text(), /shutting down/);
  await stopped;
});
