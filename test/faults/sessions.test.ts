/**
 * Faults on the way into a legacy session (issue 10, section 2): initialize
 * requests the transport or the child refuses leave no session, no child and
 * no dent in a cap behind; a session that never comes back after its
 * initialize is ended.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STANDIN_CHILD, TestBroker, type TestUser, startBroker } from '../support/brokers.js';
import { childProcesses, eventually } from '../support/host.js';

const PROTOCOL_VERSION = '2025-11-25';
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const ACCEPT = 'application/json, text/event-stream';

interface RejectedInitialize {
  readonly fault: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Initialize requests a client gets wrong, each refused by the transport's own checks. */
const REJECTED: readonly RejectedInitialize[] = [
  { fault: 'no Accept', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(INIT) },
  { fault: 'Accept without SSE', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(INIT) },
  { fault: 'wrong content type', headers: { 'Content-Type': 'text/plain', Accept: ACCEPT }, body: JSON.stringify(INIT) },
  {
    fault: 'not JSON-RPC 2.0',
    headers: { 'Content-Type': 'application/json', Accept: ACCEPT },
    body: JSON.stringify({ ...INIT, jsonrpc: '1.0' }),
  },
  {
    fault: 'initialize in a batch',
    headers: { 'Content-Type': 'application/json', Accept: ACCEPT },
    body: JSON.stringify([INIT, { jsonrpc: '2.0', id: 2, method: 'tools/list' }]),
  },
  {
    fault: 'protocol version not a string',
    headers: { 'Content-Type': 'application/json', Accept: ACCEPT },
    body: JSON.stringify({ ...INIT, params: { ...INIT.params, protocolVersion: 20251125 } }),
  },
  {
    fault: 'no clientInfo',
    headers: { 'Content-Type': 'application/json', Accept: ACCEPT },
    body: JSON.stringify({ ...INIT, params: { protocolVersion: PROTOCOL_VERSION, capabilities: {} } }),
  },
];

async function post(broker: TestBroker, user: TestUser, headers: Record<string, string>, body: string): Promise<Response> {
  return fetch(broker.mcpUrl, { method: 'POST', headers: { Authorization: `Bearer ${user.bearer}`, ...headers }, body });
}

/** An initialize answered with success; returns the session's headers for the requests after it. */
async function initialize(broker: TestBroker, user: TestUser): Promise<Record<string, string>> {
  const res = await post(broker, user, { 'Content-Type': 'application/json', Accept: ACCEPT }, JSON.stringify(INIT));
  assert.equal(res.status, 200);
  assert.match(await res.text(), /"result"/);
  return { 'Mcp-Session-Id': res.headers.get('mcp-session-id') as string, 'MCP-Protocol-Version': PROTOCOL_VERSION };
}

async function confirm(broker: TestBroker, user: TestUser, session: Record<string, string>): Promise<void> {
  const res = await post(
    broker,
    user,
    { 'Content-Type': 'application/json', Accept: ACCEPT, ...session },
    JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  );
  assert.equal(res.status, 202);
}

function standinChildren(): number {
  return childProcesses(process.pid, STANDIN_CHILD).length;
}

test('50 rejected initializes leave live sessions and child processes unchanged, and the per-user cap untouched', async (t) => {
  const broker = await startBroker({ maxSessionsPerUser: 2 });
  t.after(() => broker.close());
  const user = broker.addUser();
  await confirm(broker, user, await initialize(broker, user));
  const sessionsBefore = broker.legacy.active;
  const childrenBefore = standinChildren();
  assert.equal(childrenBefore, 1);

  const statuses = new Map<string, Set<number>>();
  const injected = 50;
  for (let i = 0; i < injected; i++) {
    const { fault, headers, body } = REJECTED[i % REJECTED.length] as RejectedInitialize;
    const res = await post(broker, user, headers, body);
    const answer = await res.text();
    assert.ok(res.status >= 400 && res.status < 500, `${fault}: ${res.status} ${answer}`);
    statuses.set(fault, (statuses.get(fault) ?? new Set()).add(res.status));
  }
  assert.equal(broker.legacy.active, sessionsBefore);
  assert.equal(standinChildren(), childrenBefore);
  t.diagnostic(
    `faults injected: ${injected}; sessions left over: ${broker.legacy.active - sessionsBefore}; children left over: ${standinChildren() - childrenBefore}`,
  );
  t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries([...statuses].map(([fault, codes]) => [fault, [...codes]])))}`);

  // The cap of 2 still has room for exactly one more session.
  await confirm(broker, user, await initialize(broker, user));
  assert.equal((await post(broker, user, { 'Content-Type': 'application/json', Accept: ACCEPT }, JSON.stringify(INIT))).status, 503);
  assert.equal(broker.legacy.active, 2);
});

test('a session that never follows its initialize with another request is ended after the init timeout; one that did is kept', async (t) => {
  const broker = await startBroker({ initTimeoutMs: 3_000 });
  t.after(() => broker.close());
  const user = broker.addUser();
  const kept = await initialize(broker, user);
  await confirm(broker, user, kept);
  // Started after the kept one was confirmed: by the time its timer fires, the kept one's would have too.
  const silent = await initialize(broker, user);
  const silentId = silent['Mcp-Session-Id'] as string;
  assert.equal(broker.legacy.active, 2);
  assert.equal(standinChildren(), 2);

  await eventually(() => broker.legacy.sessionOf(silentId) === undefined, 'the silent session ended', 30_000);
  await eventually(() => standinChildren() === 1, "the silent session's child stopped");
  assert.equal(broker.legacy.active, 1);
  const res = await post(
    broker,
    user,
    { 'Content-Type': 'application/json', Accept: ACCEPT, ...silent },
    JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
  );
  assert.equal(res.status, 404);
  const list = await post(
    broker,
    user,
    { 'Content-Type': 'application/json', Accept: ACCEPT, ...kept },
    JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
  );
  assert.equal(list.status, 200);
  assert.match(await list.text(), /"tools"/);
});
