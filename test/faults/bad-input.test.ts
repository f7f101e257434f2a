/**
 * Bad input on /mcp in both eras (issue 10, section 4): bodies nested
 * thousands of levels deep, huge bodies and malformed ones from a seeded
 * generator (the same cases on every run). None may get a 5xx, leave a
 * request in flight, end a session that was in use or lose the well-formed
 * requests sent between them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestBroker, type TestUser, startBroker } from '../support/brokers.js';

const MODERN_VERSION = '2026-07-28';
const LEGACY_VERSION = '2025-11-25';
const ACCEPT = 'application/json, text/event-stream';
const MAX_BODY_BYTES = 256 * 1024;
const SEED = 0x5eed10;
/** Fuzzed bodies per era, and how often a well-formed request goes between them. */
const CASES = 300;
const CONTROL_EVERY = 10;

const META = {
  'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
  'io.modelcontextprotocol/clientInfo': { name: 'fuzz', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

/** mulberry32: a small seeded generator, so a failing case can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Fuzzer {
  int(below: number): number;
  pick<T>(items: readonly T[]): T;
}

function fuzzer(seed: number): Fuzzer {
  const next = seededRandom(seed);
  return {
    int: (below) => Math.floor(next() * below),
    pick: (items) => items[Math.floor(next() * items.length)] as never,
  };
}

function nested(depth: number, open: string, close: string, inner = '0'): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

const JSON_BYTES = '{}[]",:\\0123456789.-+eEtrufalsn \n\t';

/** One bad body derived from a valid one: deep, huge or malformed. */
function badBody(f: Fuzzer, valid: string): { kind: string; body: string | Uint8Array<ArrayBuffer> } {
  const depth = f.pick([300, 1_000, 6_000, 20_000, 100_000]);
  switch (f.int(10)) {
    case 0:
      return { kind: 'nested arrays', body: valid.replace('"fuzz-slot"', nested(depth, '[', ']')) };
    case 1:
      return { kind: 'nested objects', body: valid.replace('"fuzz-slot"', nested(depth, '{"a":', '}')) };
    case 2:
      return { kind: 'nested top level', body: nested(depth, '[', ']', valid) };
    case 3:
      return { kind: 'huge', body: valid.replace('fuzz-slot', 'x'.repeat(MAX_BODY_BYTES + f.int(MAX_BODY_BYTES))) };
    case 4:
      return { kind: 'truncated', body: valid.slice(0, f.int(valid.length)) };
    case 5:
      return { kind: 'random bytes', body: Uint8Array.from({ length: 1 + f.int(512) }, () => f.int(256)) };
    case 6: {
      const replacement = f.pick([
        'null',
        '[]',
        '{}',
        '42',
        '"text"',
        'true',
        '{"jsonrpc":"2.0"}',
        '[{}]',
        '{"jsonrpc":"2.0","id":{},"method":7}',
      ]);
      return { kind: 'wrong shape', body: replacement };
    }
    case 7: {
      const field = f.pick(['"id":', '"method":', '"params":', '"jsonrpc":', '"_meta":', '"arguments":']);
      const value = f.pick(['null', '[]', '{}', '-1e999', '"\\ud800"', '[[[[[]]]]]', '{"__proto__":{"x":1}}']);
      return { kind: 'wrong field type', body: valid.replace(field, `${field}${value},"was":`) };
    }
    default: {
      // A few random edits: bytes deleted, inserted or duplicated.
      let body = valid;
      for (let edits = 1 + f.int(4); edits > 0; edits--) {
        const at = f.int(body.length);
        switch (f.int(3)) {
          case 0:
            body = body.slice(0, at) + body.slice(at + 1 + f.int(8));
            break;
          case 1:
            body = body.slice(0, at) + JSON_BYTES.charAt(f.int(JSON_BYTES.length)) + body.slice(at);
            break;
          default:
            body = body.slice(0, at) + body.slice(at, at + f.int(16)) + body.slice(at);
        }
      }
      return { kind: 'edited', body };
    }
  }
}

async function post(
  broker: TestBroker,
  user: TestUser,
  headers: Record<string, string>,
  body: string | Uint8Array<ArrayBuffer>,
): Promise<{ status: number; text: string }> {
  const res = await fetch(broker.mcpUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: ACCEPT, Authorization: `Bearer ${user.bearer}`, ...headers },
    body,
  });
  return { status: res.status, text: await res.text() };
}

interface Figures {
  injected: number;
  fiveHundreds: string[];
  lost: number;
  byStatus: Record<string, number>;
}

async function fuzz(
  broker: TestBroker,
  send: (body: string | Uint8Array<ArrayBuffer>) => Promise<{ status: number; text: string }>,
  valid: string,
  control: () => Promise<boolean>,
): Promise<Figures> {
  const f = fuzzer(SEED);
  const figures: Figures = { injected: 0, fiveHundreds: [], lost: 0, byStatus: {} };
  const inflightBefore = broker.pool.inflight;
  for (let i = 0; i < CASES; i++) {
    const { kind, body } = badBody(f, valid);
    const { status, text } = await send(body);
    figures.injected++;
    figures.byStatus[status] = (figures.byStatus[status] ?? 0) + 1;
    if (status >= 500) figures.fiveHundreds.push(`case ${i} (${kind}): ${status} ${text.slice(0, 200)}`);
    assert.equal(broker.pool.inflight, inflightBefore, `case ${i} (${kind}) left a request in flight`);
    if (i % CONTROL_EVERY === CONTROL_EVERY - 1 && !(await control())) figures.lost++;
  }
  return figures;
}

test('modern era: nested, huge and malformed bodies get 4xx, never 5xx, and leave nothing in flight', async (t) => {
  const broker = await startBroker({ maxBodyBytes: MAX_BODY_BYTES });
  t.after(() => broker.close());
  const user = broker.addUser();
  const headers = { 'MCP-Protocol-Version': MODERN_VERSION, 'Mcp-Method': 'tools/call', 'Mcp-Name': 'echo' };
  const call = (text: string): string =>
    JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text }, _meta: META } });
  const control = async (): Promise<boolean> => {
    const { status, text } = await post(broker, user, headers, call('control'));
    return status === 200 && text.includes('"text":"control"');
  };
  assert.ok(await control());

  // The case the red team found: 6,000 levels inside the arguments.
  const deep = await post(broker, user, headers, call('fuzz-slot').replace('"fuzz-slot"', nested(6_000, '[', ']')));
  assert.equal(deep.status, 400);
  assert.equal((JSON.parse(deep.text) as { error: { code: number } }).error.code, -32600);
  assert.equal(broker.pool.inflight, 0);

  const figures = await fuzz(broker, (body) => post(broker, user, headers, body), call('fuzz-slot'), control);
  t.diagnostic(
    `modern: faults injected ${figures.injected}, 5xx ${figures.fiveHundreds.length}, requests lost ${figures.lost}, statuses ${JSON.stringify(figures.byStatus)}`,
  );
  assert.deepEqual(figures.fiveHundreds, []);
  assert.equal(figures.lost, 0);
  assert.equal(broker.pool.inflight, 0);
  assert.equal(broker.modern.activeUserChannels, 1);
});

test('legacy era: nested, huge and malformed bodies on a session and as initialize get 4xx, never 5xx; the session lives on', async (t) => {
  const broker = await startBroker({ maxBodyBytes: MAX_BODY_BYTES });
  t.after(() => broker.close());
  const user = broker.addUser();
  const { client, transport } = await broker.connect(user);
  t.after(() => client.close());
  const session = { 'Mcp-Session-Id': transport.sessionId as string, 'MCP-Protocol-Version': LEGACY_VERSION };
  const call = (text: string): string =>
    JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { text } } });
  const control = async (): Promise<boolean> => {
    const { status, text } = await post(broker, user, session, call('control'));
    return status === 200 && text.includes('"text":"control"');
  };
  assert.ok(await control());

  const onSession = await fuzz(broker, (body) => post(broker, user, session, body), call('fuzz-slot'), control);
  t.diagnostic(
    `legacy session: faults injected ${onSession.injected}, 5xx ${onSession.fiveHundreds.length}, requests lost ${onSession.lost}, statuses ${JSON.stringify(onSession.byStatus)}`,
  );
  assert.deepEqual(onSession.fiveHundreds, []);
  assert.equal(onSession.lost, 0);

  const initialize = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: LEGACY_VERSION, capabilities: {}, clientInfo: { name: 'fuzz', version: 'fuzz-slot' } },
  });
  const onInitialize = await fuzz(broker, (body) => post(broker, user, {}, body), initialize, control);
  t.diagnostic(
    `legacy initialize: faults injected ${onInitialize.injected}, 5xx ${onInitialize.fiveHundreds.length}, requests lost ${onInitialize.lost}, statuses ${JSON.stringify(onInitialize.byStatus)}`,
  );
  assert.deepEqual(onInitialize.fiveHundreds, []);
  assert.equal(onInitialize.lost, 0);
  // The session in use was never ended, and is still served by its first child.
  assert.equal(broker.legacy.sessionOf(session['Mcp-Session-Id'])?.closed, false);
  assert.equal(broker.pool.inflight, 0);
});
