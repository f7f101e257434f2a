/**
 * The session layer's behaviours, carried over from the seed's registry tests
 * (with PRODUCT.md's departures), against real stand-in children over a real
 * loopback HTTP server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomToken, TestBroker, type TestUser, startBroker } from '../support/brokers.js';
import { eventually, isAlive } from '../support/host.js';
import { text } from '../support/mcp-clients.js';

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

/** A raw POST to /mcp, for the cases an SDK client would never send. */
async function post(
  broker: TestBroker,
  bearer: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(broker.mcpUrl, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      ...(bearer === undefined ? {} : { Authorization: `Bearer ${bearer}` }),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Opens a session by hand; returns its id. */
async function rawSession(broker: TestBroker, user: TestUser): Promise<string> {
  const res = await post(broker, user.bearer, INIT);
  assert.equal(res.status, 200);
  await res.text();
  const sid = res.headers.get('mcp-session-id');
  assert.ok(sid);
  const initialized = await post(
    broker,
    user.bearer,
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25' },
  );
  assert.equal(initialized.status, 202);
  return sid;
}

test("initialize without a session id mints a 192-bit id after its replica's id, starts a child and answers through it", async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const alice = broker.addUser('alice');
  const { client, transport } = await broker.connect(alice);
  const sid = transport.sessionId;
  assert.ok(sid !== undefined && /^[\x21-\x7e]+$/.test(sid));
  // `<replica>.<random>`: the owner replica's id, then 192 random bits.
  const [owner, random] = sid.split('.');
  assert.equal(owner, broker.running.replicaId);
  assert.equal(Buffer.from(random ?? '', 'base64url').length, 24);
  assert.equal(broker.legacy.active, 1);
  const me = JSON.parse(text(await client.callTool({ name: 'get_me', arguments: {} }))) as { login: string };
  assert.equal(me.login, 'alice');
  await client.close();
});

test('requests with a known session id reuse the same child', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  const first = text(await client.callTool({ name: 'pid', arguments: {} }));
  const second = text(await client.callTool({ name: 'pid', arguments: {} }));
  assert.equal(first, second);
  assert.equal(broker.legacy.active, 1);
  await client.close();
});

test('an unknown session id is 404 Not Found, as the transport spec requires', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const res = await post(
    broker,
    user.bearer,
    { jsonrpc: '2.0', id: 2, method: 'tools/list' },
    { 'Mcp-Session-Id': 'definitely-not-a-real-sid' },
  );
  assert.equal(res.status, 404);
  const body = (await res.json()) as { error: { code: number } };
  assert.equal(body.error.code, -32001);
});

test('a request without a session id that is not initialize is 400', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const res = await post(broker, user.bearer, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
  assert.equal(res.status, 400);
  assert.equal(broker.legacy.active, 0);
});

test('a session used with a bearer of another grant is 403; a refreshed token of the same grant keeps it', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const alice = broker.addUser('alice');
  const eve = broker.addUser('eve');
  const sid = await rawSession(broker, alice);
  const headers = { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25' };
  const list = { jsonrpc: '2.0', id: 2, method: 'tools/list' };

  const hijack = await post(broker, eve.bearer, list, headers);
  assert.equal(hijack.status, 403);
  const sameUserOtherGrant = randomToken();
  broker.grantBearer(alice, sameUserOtherGrant, 'another-grant');
  assert.equal((await post(broker, sameUserOtherGrant, list, headers)).status, 403);

  const refreshed = randomToken();
  broker.grantBearer(alice, refreshed, 'grant-1');
  const ok = await post(broker, refreshed, list, headers);
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /"tools"/);
});

test('without a bearer token /mcp is 401 with the RFC 9728 challenge; a bad token is invalid_token', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const missing = await post(broker, undefined, INIT);
  assert.equal(missing.status, 401);
  assert.equal(
    missing.headers.get('www-authenticate'),
    'Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource/mcp"',
  );
  const bad = await post(broker, 'not-a-token', INIT);
  assert.equal(bad.status, 401);
  assert.match(bad.headers.get('www-authenticate') ?? '', /^Bearer resource_metadata="[^"]+", error="invalid_token"/);
  const basic = await fetch(broker.mcpUrl, { headers: { Authorization: 'Basic eDp5' } });
  assert.equal(basic.status, 401);
  assert.equal(broker.legacy.active, 0);
});

test('the session cap answers 503 with Retry-After and starts nothing', async (t) => {
  const broker = await startBroker({ maxSessions: 2 });
  t.after(() => broker.close());
  await rawSession(broker, broker.addUser());
  await rawSession(broker, broker.addUser());
  const third = await post(broker, broker.addUser().bearer, INIT);
  assert.equal(third.status, 503);
  assert.ok(Number(third.headers.get('retry-after')) > 0);
  assert.equal(broker.legacy.active, 2);
});

test('the per-user cap answers 503 for that user only', async (t) => {
  const broker = await startBroker({ maxSessionsPerUser: 1 });
  t.after(() => broker.close());
  const alice = broker.addUser();
  await rawSession(broker, alice);
  const again = await post(broker, alice.bearer, INIT);
  assert.equal(again.status, 503);
  assert.ok(again.headers.get('retry-after'));
  await rawSession(broker, broker.addUser());
  assert.equal(broker.legacy.active, 2);
});

test('a child that exits takes its session with it: the call errors, then the id is 404', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client, transport } = await broker.connect(user);
  const sid = transport.sessionId as string;
  const result = client.callTool({ name: 'crash', arguments: {} });
  await assert.rejects(result, /exited/);
  await eventually(() => broker.legacy.active === 0, 'session removed');
  const res = await post(broker, user.bearer, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, { 'Mcp-Session-Id': sid });
  assert.equal(res.status, 404);
});

test('DELETE ends the session and stops its child', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client, transport } = await broker.connect(user);
  const pid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  await transport.terminateSession();
  assert.equal(broker.legacy.active, 0);
  await eventually(() => !isAlive(pid), 'child gone');
});

test('stop tears down every session and every child', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const pids: number[] = [];
  for (let i = 0; i < 3; i++) {
    const { client } = await broker.connect(broker.addUser());
    pids.push(Number(text(await client.callTool({ name: 'pid', arguments: {} }))));
  }
  assert.equal(broker.legacy.active, 3);
  await broker.stopSessions();
  assert.equal(broker.legacy.active, 0);
  for (const pid of pids) assert.equal(isAlive(pid), false, `child ${pid} still running`);
  assert.equal((await post(broker, broker.addUser().bearer, INIT)).status, 503);
});
