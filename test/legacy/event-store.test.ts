/**
 * The legacy session's SSE event store: what a client that lost a stream gets
 * back with Last-Event-ID, and the bounds that keep it from pinning memory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { requestIdsOfEventId, SessionEventStore } from '../../src/legacy/event-store.js';

function note(n: number): JSONRPCMessage {
  return { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: n } };
}

function result(id: number): JSONRPCMessage {
  return { jsonrpc: '2.0', id, result: { content: [] } };
}

async function replay(store: SessionEventStore, lastEventId: string): Promise<unknown[]> {
  const sent: unknown[] = [];
  await store.replayEventsAfter(lastEventId, {
    send: (_id, message) => {
      sent.push('method' in message ? (message.params as { data: number }).data : (message as { id: number }).id);
      return Promise.resolve();
    },
  });
  return sent;
}

test('replays the events of the lost stream after the given id, and nothing of other streams', async () => {
  const store = new SessionEventStore();
  const first = await store.storeEvent('a', note(1));
  await store.storeEvent('b', note(100));
  await store.storeEvent('a', note(2));
  await store.storeEvent('a', result(7));
  assert.deepEqual(await replay(store, first), [2, 7]);
  assert.equal(await store.getStreamIdForEventId(first), 'a');
});

test('keeps at most maxEvents, the newest', async () => {
  const store = new SessionEventStore({ maxEvents: 2, maxAgeMs: 60_000, maxBytes: 1 << 20 });
  const first = await store.storeEvent('a', note(1));
  await store.storeEvent('a', note(2));
  await store.storeEvent('a', note(3));
  assert.deepEqual(await replay(store, first), [2, 3]);
});

test('forgets events older than maxAgeMs', async () => {
  let now = 0;
  const store = new SessionEventStore({ maxEvents: 100, maxAgeMs: 1_000, maxBytes: 1 << 20 }, () => now);
  const first = await store.storeEvent('a', note(1));
  await store.storeEvent('a', note(2));
  now = 5_000;
  await store.storeEvent('a', note(3));
  assert.deepEqual(await replay(store, first), [3]);
});

test('large results count at their size: the oldest go first, one larger than the whole budget is sent but not kept', async () => {
  const store = new SessionEventStore({ maxEvents: 100, maxAgeMs: 60_000, maxBytes: 10_000 });
  const first = await store.storeEvent('a', note(0));
  for (const [id, size] of [
    [1, 4_000],
    [2, 4_000],
    [3, 4_000],
  ] as const) {
    const message = result(id);
    store.hintSize(message, size);
    await store.storeEvent('a', message);
  }
  // 1 KiB assumed for the notification, 12 KB of results: the notification and result 1 went.
  assert.deepEqual(await replay(store, first), [2, 3]);
  assert.equal(store.storedBytes, 8_000);

  const huge = result(4);
  store.hintSize(huge, 50_000);
  const hugeId = await store.storeEvent('a', huge);
  assert.match(hugeId, /^a#[0-9a-f]{8}\.\d+$/);
  assert.deepEqual(await replay(store, first), [2, 3]);
  assert.equal(store.storedBytes, 8_000);
});

test("another store's event id (the session carried on by another process) is unknown here, not an empty replay", async () => {
  const first = new SessionEventStore();
  const id = await first.storeEvent('stream-1', { jsonrpc: '2.0', method: 'notifications/progress' });
  const second = new SessionEventStore();
  await second.storeEvent('stream-1', { jsonrpc: '2.0', method: 'notifications/progress' });
  assert.equal(await first.getStreamIdForEventId(id), 'stream-1');
  assert.equal(await second.getStreamIdForEventId(id), undefined);
  await assert.rejects(second.replayEventsAfter(id, { send: () => Promise.resolve() }), /unknown event id/);
});

/** What the SDK's transport stores first on a POST's stream: an event without a message, for the client to resume from. */
const PRIMING = {} as JSONRPCMessage;

test("a POST's stream carries the ids of its requests in every event id, readable by any other process", async () => {
  const store = new SessionEventStore();
  const release = store.expectStream([7, 'call-8']);
  const priming = await store.storeEvent('post-1', PRIMING);
  release();
  const progress = await store.storeEvent('post-1', note(1));
  assert.deepEqual(requestIdsOfEventId(priming), [7, 'call-8']);
  assert.deepEqual(requestIdsOfEventId(progress), [7, 'call-8']);
  assert.equal(await store.getStreamIdForEventId(priming), 'post-1');
  assert.deepEqual(await replay(store, priming), [1], 'the tag does not change what is replayed');
  assert.equal(new SessionEventStore().holds(priming), false, "another process's store does not hold it");
  assert.equal(store.holds(priming), true);
});

test('the GET stream and a stream no POST announced carry no request ids', async () => {
  const store = new SessionEventStore();
  assert.equal(requestIdsOfEventId(await store.storeEvent('_GET_stream', note(1))), undefined);
  assert.equal(requestIdsOfEventId(await store.storeEvent('post-1', PRIMING)), undefined);
});

test('two POSTs announced at once: which stream is whose is unknown, so neither is tagged (never a wrong id)', async () => {
  const store = new SessionEventStore();
  const releases = [store.expectStream([1]), store.expectStream([2])];
  assert.equal(requestIdsOfEventId(await store.storeEvent('post-1', PRIMING)), undefined);
  for (const release of releases) release();
  const next = store.expectStream([3]);
  assert.deepEqual(requestIdsOfEventId(await store.storeEvent('post-2', PRIMING)), [3], 'released announcements are forgotten');
  next();
});

test('ids that are not a batch of JSON-RPC ids are not read from an event id', () => {
  const encode = (value: unknown): string => `s#e.1.${Buffer.from(JSON.stringify(value)).toString('base64url')}`;
  assert.deepEqual(requestIdsOfEventId(encode([1, 'a'])), [1, 'a']);
  for (const bad of [[], [null], [{ id: 1 }], [1.5], ['x'.repeat(257)], Array.from({ length: 65 }, (_, i) => i), 'a', 1]) {
    assert.equal(requestIdsOfEventId(encode(bad)), undefined, JSON.stringify(bad).slice(0, 40));
  }
  assert.equal(requestIdsOfEventId('s#e.1.%%%'), undefined);
  assert.equal(requestIdsOfEventId('no-hash'), undefined);
});
