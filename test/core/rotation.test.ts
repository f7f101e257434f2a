/**
 * The idle reaper and the token rotator: the seed's cases, and the seamless
 * swap PRODUCT.md asks for (the client never notices a new child).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../support/brokers.js';
import { eventually, isAlive } from '../support/host.js';
import { tokenFingerprint as fingerprint } from '../support/forgejo.js';
import { text } from '../support/mcp-clients.js';

test('the reaper ends sessions idle past the timeout and keeps recently active ones', async (t) => {
  let now = Date.now();
  const broker = await startBroker({ idleTimeoutMs: 60_000, now: () => now });
  t.after(() => broker.close());
  const idle = await broker.connect(broker.addUser());
  const idlePid = Number(text(await idle.client.callTool({ name: 'pid', arguments: {} })));
  now += 45_000;
  const busy = await broker.connect(broker.addUser());
  await busy.client.callTool({ name: 'echo', arguments: { text: 'x' } });
  now += 30_000;

  assert.equal(await broker.pool.reapIdle(), 1);
  assert.equal(broker.legacy.active, 1);
  assert.equal(broker.legacy.sessionOf(busy.transport.sessionId as string)?.closed, false);
  await eventually(() => !isAlive(idlePid), 'idle child stopped');
  assert.equal(text(await busy.client.callTool({ name: 'echo', arguments: { text: 'alive' } })), 'alive');
  await busy.client.close();
});

test('the reaper leaves a session alone while a request is running on it', async (t) => {
  let now = Date.now();
  const broker = await startBroker({ idleTimeoutMs: 1_000, now: () => now });
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  const call = client.callTool({ name: 'sleep', arguments: { ms: 300 } });
  await eventually(() => broker.pool.inflight === 1, 'request in flight');
  now += 10_000;
  assert.equal(await broker.pool.reapIdle(), 0);
  assert.equal(text(await call), 'slept');
  await client.close();
});

test('rotation moves a session to a child with the new token, keeping its id, without the client noticing', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser('alice');
  const { client, transport } = await broker.connect(user);
  const sid = transport.sessionId;
  const oldPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  assert.equal(text(await client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(user.forgejoToken));

  const newToken = broker.newForgejoToken(user);
  await broker.pool.rotateUser(user.userId);

  // Same session, same client connection, no re-initialize: the next call lands on the new child.
  assert.equal(transport.sessionId, sid);
  assert.equal(text(await client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(newToken));
  const newPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  assert.notEqual(newPid, oldPid);
  // The retired child is gone and its exit did not take the session with it (the seed's watcher race).
  await eventually(() => !isAlive(oldPid), 'old child stopped');
  assert.equal(broker.legacy.active, 1);
  assert.equal((JSON.parse(text(await client.callTool({ name: 'get_me', arguments: {} }))) as { login: string }).login, 'alice');
  await client.close();
});

test('a request in flight on the old child finishes there during a rotation', async (t) => {
  const broker = await startBroker({ drainGraceMs: 10_000 });
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client } = await broker.connect(user);
  // The in-flight request waits on the client's answer to the old child's elicitation, so it
  // stays open exactly as long as the test wants, however slowly the machine runs.
  let answer: (() => void) | undefined;
  client.setRequestHandler('elicitation/create', async () => {
    await new Promise<void>((resolve) => (answer = resolve));
    return { action: 'accept', content: { answer: 'from-old' } };
  });
  const oldPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  const slow = client.callTool({ name: 'ask', arguments: {} });
  await eventually(() => answer !== undefined, 'old child asking the client');
  broker.newForgejoToken(user);
  const rotation = broker.pool.rotateUser(user.userId);
  // While the old child drains, new requests already go to the new child (whose start a loaded machine can slow past 10 s).
  await eventually(
    () => broker.legacy.sessionOf(broker.legacy.sessionIdsOf(user.userId)[0] as string)?.channel.child.pid !== oldPid,
    'swapped',
    30_000,
  );
  const during = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  assert.notEqual(during, oldPid);
  assert.equal(isAlive(oldPid), true);
  // The client's answer still reaches the old child, and its result reaches the client.
  (answer as () => void)();
  assert.match(text(await slow), /from-old/);
  await rotation;
  await eventually(() => !isAlive(oldPid), 'old child stopped after draining');
  await client.close();
});

test('while the new child starts and is initialised, requests keep being served by the old one: no pause', async (t) => {
  let release: (() => void) | undefined;
  let spawns = 0;
  const broker = await startBroker({
    wrapSpawn: (spawn) => async (spec) => {
      const child = await spawn(spec);
      if (++spawns !== 2) return child;
      // The rotation's child gets its messages (initialize first) only once the test lets it.
      const gate = new Promise<void>((resolve) => (release = resolve));
      const send = child.send.bind(child);
      child.send = (message) => {
        void gate.then(() => send(message));
        return true;
      };
      return child;
    },
  });
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client } = await broker.connect(user);
  const oldPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  const token = broker.newForgejoToken(user);
  const rotation = broker.pool.rotateUser(user.userId);
  await eventually(() => release !== undefined, 'rotation spawning');
  assert.equal(Number(text(await client.callTool({ name: 'pid', arguments: {} }))), oldPid);
  await client.setLoggingLevel('warning');
  (release as () => void)();
  await rotation;
  assert.equal(text(await client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(token));
  assert.notEqual(Number(text(await client.callTool({ name: 'pid', arguments: {} }))), oldPid);
  // The level set on the old child during the swap reached the new one too.
  const logs: string[] = [];
  client.setNotificationHandler('notifications/message', (n) => void logs.push(String(n.params.level)));
  await client.callTool({ name: 'log', arguments: { level: 'info', message: 'quiet' } });
  await client.callTool({ name: 'log', arguments: { level: 'error', message: 'loud' } });
  assert.deepEqual(logs, ['error']);
  await client.close();
});

test('a request still running when the drain grace ends gets an error, and the old child stops', async (t) => {
  const broker = await startBroker({ drainGraceMs: 200 });
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client } = await broker.connect(user);
  const oldPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  const stuck = client.callTool({ name: 'hang', arguments: {} }).then(
    () => 'answered',
    (error: Error) => error.message,
  );
  await eventually(() => broker.pool.inflight === 1, 'stuck request running');
  broker.newForgejoToken(user);
  await broker.pool.rotateUser(user.userId);
  assert.match(await stuck, /new token/);
  await eventually(() => !isAlive(oldPid), 'old child stopped');
  assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'fine' } })), 'fine');
  await client.close();
});

test('the rotator refreshes a token within the lead time and moves every session of that user', async (t) => {
  const broker = await startBroker({ refreshLeadMs: 5 * 60_000 });
  t.after(() => broker.close());
  const user = broker.addUser();
  const other = broker.addUser();
  const a = await broker.connect(user);
  const b = await broker.connect(user);
  const c = await broker.connect(other);
  // Alice's token expires in two minutes, inside the five-minute lead; the other user's in an hour.
  broker.credentials.set(user.userId, { accessToken: user.forgejoToken, expiresAt: Date.now() + 120_000 });
  let fresh = '';
  broker.credentials.refresh = () => {
    fresh = broker.newForgejoToken(user);
    return { accessToken: fresh, expiresAt: Date.now() + 3_600_000 };
  };
  await broker.pool.rotateDue();
  assert.equal(broker.credentials.refreshes, 1, 'one refresh for the user, not one per session');
  for (const { client } of [a, b])
    assert.equal(text(await client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(fresh));
  assert.equal(text(await c.client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(other.forgejoToken));
  // A second sweep finds nothing to do.
  await broker.pool.rotateDue();
  assert.equal(broker.credentials.refreshes, 1);
  for (const { client } of [a, b, c]) await client.close();
});

test("a refresh Forgejo refuses ends the user's sessions; their next initialize is a 401", async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client, transport } = await broker.connect(user);
  const pid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  const sid = transport.sessionId as string;
  broker.credentials.revoke(user.userId);
  await broker.pool.rotateDue();
  assert.equal(broker.legacy.active, 0);
  await eventually(() => !isAlive(pid), 'child stopped');
  const headers = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    Authorization: `Bearer ${user.bearer}`,
  };
  const gone = await fetch(broker.mcpUrl, {
    method: 'POST',
    headers: { ...headers, 'Mcp-Session-Id': sid },
    body: '{"jsonrpc":"2.0","id":3,"method":"ping"}',
  });
  assert.equal(gone.status, 404);
  const init = await fetch(broker.mcpUrl, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    }),
  });
  assert.equal(init.status, 401);
  assert.match(init.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
});

test('a replacement child that cannot start leaves the session on its old child', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client } = await broker.connect(user);
  const oldPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  // Forgejo is down: a new child fails its start-up version check and exits.
  broker.forge.versionStatus = 503;
  broker.newForgejoToken(user);
  await broker.pool.rotateUser(user.userId);
  assert.equal(Number(text(await client.callTool({ name: 'pid', arguments: {} }))), oldPid);
  // Once Forgejo is back, the next sweep completes the move.
  broker.forge.versionStatus = 200;
  await broker.pool.rotateUser(user.userId);
  assert.notEqual(Number(text(await client.callTool({ name: 'pid', arguments: {} }))), oldPid);
  await client.close();
});

test('state the client set is replayed to the new child: log level and resource subscriptions', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client } = await broker.connect(user);
  await client.setLoggingLevel('debug');
  await client.subscribeResource({ uri: 'forgejo://version' });
  broker.newForgejoToken(user);
  await broker.pool.rotateUser(user.userId);
  const updated = new Promise<string>((resolve) =>
    client.setNotificationHandler('notifications/resources/updated', (n) => resolve(n.params.uri)),
  );
  await client.callTool({ name: 'touch', arguments: { uri: 'forgejo://version' } });
  assert.equal(await updated, 'forgejo://version');
  await client.close();
});

test('a session whose child was starting while a rotation ran is moved to the new token once it is up', async (t) => {
  let release: (() => void) | undefined;
  let spawns = 0;
  const broker = await startBroker({
    wrapSpawn: (spawn) => async (spec) => {
      // The session's own child starts only when the test lets it, after the rotation ran.
      if (++spawns === 1) await new Promise<void>((resolve) => (release = resolve));
      return spawn(spec);
    },
  });
  t.after(() => broker.close());
  const user = broker.addUser();
  const connecting = broker.connect(user);
  await eventually(() => release !== undefined, 'session child starting');
  const token = broker.newForgejoToken(user);
  // Nothing to move yet: the starting session is not registered.
  await broker.pool.rotateUser(user.userId);
  (release as () => void)();
  const { client } = await connecting;
  // The registry notices the rotation it missed and moves the new session too.
  await eventually(
    async () => text(await client.callTool({ name: 'token_fingerprint', arguments: {} })) === fingerprint(token),
    'session on the new token',
  );
  await client.close();
});
