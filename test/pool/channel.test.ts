/**
 * The channel between clients and a child, with the in-memory child: id
 * renaming, a swap while a request runs, the drain grace, the replay after a
 * rotation, timeouts and a child exiting mid-request. No processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JSONRPCNotification, JSONRPCRequest } from '@modelcontextprotocol/server';
import { silentLogger } from '../../src/log/logger.js';
import { ChildChannel, type ChannelOptions } from '../../src/pool/channel.js';
import type { ClientResponse, RequestSink } from '../../src/pool/request-sink.js';
import { InMemoryChild } from './in-memory-child.js';

const SPEC = { sessionId: 's', userId: 'u', forgejoLogin: 'alice', forgejoToken: 't1' };

function channelOver(child: InMemoryChild, options: Partial<ChannelOptions> = {}): { channel: ChildChannel; ended: Promise<string> } {
  let onEnded: (reason: string) => void = () => undefined;
  const ended = new Promise<string>((resolve) => (onEnded = resolve));
  const channel = new ChildChannel(child, {
    log: silentLogger(),
    requestTimeoutMs: 60_000,
    drainGraceMs: 60_000,
    onEnded,
    onUnrelated: () => undefined,
    ...options,
  });
  return { channel, ended };
}

/** A client request's sink: the answer as a promise, and what came before it. */
function client(): {
  sink: RequestSink;
  answer: Promise<ClientResponse>;
  notifications: JSONRPCNotification[];
  serverRequests: JSONRPCRequest[];
} {
  const notifications: JSONRPCNotification[] = [];
  const serverRequests: JSONRPCRequest[] = [];
  let respond: (response: ClientResponse) => void = () => undefined;
  const answer = new Promise<ClientResponse>((resolve) => (respond = resolve));
  return {
    sink: { notify: (n) => notifications.push(n), serverRequest: (r) => serverRequests.push(r), respond },
    answer,
    notifications,
    serverRequests,
  };
}

function request(id: string | number, method: string, params?: JSONRPCRequest['params']): JSONRPCRequest {
  return { jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) };
}

/** Runs the legacy handshake through the channel, as a client would. */
async function initialize(channel: ChildChannel): Promise<void> {
  const init = client();
  channel.request(
    request(0, 'initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } }),
    init.sink,
  );
  await init.answer;
  channel.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
}

test('equal ids from different clients reach the child as distinct ids and come back as each client sent them', async () => {
  const child = new InMemoryChild(SPEC);
  child.holding.add('tools/call');
  const { channel } = channelOver(child);
  const asString = client();
  const asNumber = client();
  channel.request(request('1', 'tools/call', { name: 'a', _meta: { progressToken: 'p' } }), asString.sink);
  channel.request(request(1, 'tools/call', { name: 'b', _meta: { progressToken: 'p' } }), asNumber.sink);
  const [first, second] = child.requests('tools/call');
  assert.ok(first !== undefined && second !== undefined);
  assert.notEqual(first.id, second.id);
  // The progress token is renamed too, so the child's progress reaches the right client under its own token.
  assert.equal(first.params?._meta?.progressToken, first.id);
  child.say({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: second.id, progress: 1 } });
  assert.deepEqual(
    asNumber.notifications.map((n) => n.params?.progressToken),
    ['p'],
  );
  assert.equal(asString.notifications.length, 0);
  child.say({ jsonrpc: '2.0', id: second.id, result: { content: [], which: 'b' } });
  child.say({ jsonrpc: '2.0', id: first.id, result: { content: [], which: 'a' } });
  assert.deepEqual(await asString.answer, { jsonrpc: '2.0', id: '1', result: { content: [], which: 'a' } });
  assert.deepEqual(await asNumber.answer, { jsonrpc: '2.0', id: 1, result: { content: [], which: 'b' } });
  assert.equal(channel.inflight, 0);
});

test("a child's own request reaches the client under the broker's id, and the answer goes back under the child's", () => {
  const child = new InMemoryChild(SPEC);
  child.holding.add('tools/call');
  const { channel } = channelOver(child);
  const caller = client();
  channel.request(request(7, 'tools/call', { name: 'ask' }), caller.sink);
  child.say({ jsonrpc: '2.0', id: 'child-1', method: 'elicitation/create', params: { message: 'ok?' } });
  const [asked] = caller.serverRequests;
  assert.ok(asked !== undefined);
  assert.equal(typeof asked.id, 'number');
  assert.equal(channel.answer({ jsonrpc: '2.0', id: asked.id, result: { action: 'accept' } }), true);
  assert.deepEqual(child.received.at(-1), { jsonrpc: '2.0', id: 'child-1', result: { action: 'accept' } });
});

test('a swap during a request: new requests go to the new child only after the replay, the running one finishes on the old child', async () => {
  const old = new InMemoryChild(SPEC);
  old.holding.add('tools/call');
  const { channel } = channelOver(old);
  await initialize(channel);
  const running = client();
  channel.request(request(1, 'tools/call', { name: 'slow' }), running.sink);
  const [slow] = old.requests('tools/call');

  const next = new InMemoryChild({ ...SPEC, forgejoToken: 't2' });
  next.holding.add('initialize');
  const swapped = channel.swapChild(next);
  const replayed = await next.nextMessage('initialize');
  // While the new child is being initialised, requests keep going to the old one.
  const meanwhile = client();
  channel.request(request(2, 'ping'), meanwhile.sink);
  assert.equal((await meanwhile.answer).id, 2);
  assert.equal(old.requests('ping').length, 1);
  next.say({
    jsonrpc: '2.0',
    id: (replayed as JSONRPCRequest).id,
    result: { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'n', version: '1' } },
  });

  await next.nextMessage('notifications/initialized');
  const after = client();
  // The switch happens once the replay is done; the swap itself still waits for the old child to drain.
  while (channel.child !== next) await new Promise((resolve) => setImmediate(resolve));
  channel.request(request(3, 'ping'), after.sink);
  assert.equal((await after.answer).id, 3);
  assert.equal(next.requests('ping').length, 1);
  assert.equal(old.requests('ping').length, 1);

  old.say({ jsonrpc: '2.0', id: (slow as JSONRPCRequest).id, result: { content: [{ type: 'text', text: 'done' }] } });
  assert.deepEqual(await running.answer, { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'done' }] } });
  await swapped;
  assert.equal(old.stopped, true);
  assert.equal(next.stopped, false);
  assert.equal(channel.ended, false);
});

test('a request the old child does not finish within the drain grace gets an error, and the old child stops', async () => {
  const old = new InMemoryChild(SPEC);
  old.holding.add('tools/call');
  const { channel } = channelOver(old, { drainGraceMs: 1 });
  await initialize(channel);
  const stuck = client();
  channel.request(request(1, 'tools/call', { name: 'hang' }), stuck.sink);
  await channel.swapChild(new InMemoryChild(SPEC));
  const answer = await stuck.answer;
  assert.ok('error' in answer);
  assert.equal(answer.id, 1);
  assert.equal(answer.error.code, -32603);
  assert.match(answer.error.message, /restarted with a new token/);
  assert.equal(old.stopped, true);
  assert.equal(channel.inflight, 0);
});

test('after a rotation the new child is told the initialize, initialized, the log level and the subscriptions, in that order', async () => {
  const old = new InMemoryChild(SPEC);
  const { channel } = channelOver(old);
  await initialize(channel);
  for (const [id, method, params] of [
    [1, 'logging/setLevel', { level: 'debug' }],
    [2, 'resources/subscribe', { uri: 'repo://a' }],
    [3, 'resources/subscribe', { uri: 'repo://b' }],
    [4, 'resources/unsubscribe', { uri: 'repo://a' }],
  ] as const) {
    const sent = client();
    channel.request(request(id, method, params), sent.sink);
    await sent.answer;
  }
  const next = new InMemoryChild(SPEC);
  await channel.swapChild(next);
  assert.deepEqual(next.methods(), ['initialize', 'notifications/initialized', 'logging/setLevel', 'resources/subscribe']);
  assert.deepEqual(next.requests('initialize')[0]?.params, old.requests('initialize')[0]?.params);
  assert.deepEqual(next.requests('logging/setLevel')[0]?.params, { level: 'debug' });
  assert.deepEqual(next.requests('resources/subscribe')[0]?.params, { uri: 'repo://b' });
  assert.equal(channel.protocolVersion, '2025-11-25');
});

test('a replacement child that refuses the initialize is stopped and the old one stays', async () => {
  const old = new InMemoryChild(SPEC);
  const { channel } = channelOver(old);
  await initialize(channel);
  const next = new InMemoryChild(SPEC);
  next.holding.add('initialize');
  const swap = channel.swapChild(next);
  const init = (await next.nextMessage('initialize')) as JSONRPCRequest;
  next.say({ jsonrpc: '2.0', id: init.id, error: { code: -32603, message: 'no' } });
  await assert.rejects(swap, /could not be initialised/);
  assert.equal(next.stopped, true);
  assert.equal(channel.child, old);
});

test('a child that does not answer in time: the client gets -32003 and the child is told to stop working on it', async () => {
  const child = new InMemoryChild(SPEC);
  child.holding.add('tools/call');
  const { channel } = channelOver(child, { requestTimeoutMs: 1 });
  const caller = client();
  channel.request(request('t', 'tools/call', { name: 'hang' }), caller.sink);
  // The channel's timers do not hold the process open; this waits for the answer, not for a time.
  const keepAlive = setInterval(() => undefined, 60_000);
  const answer = await caller.answer.finally(() => clearInterval(keepAlive));
  assert.ok('error' in answer);
  assert.equal(answer.id, 't');
  assert.equal(answer.error.code, -32003);
  const cancelled = (await child.nextMessage('notifications/cancelled')) as JSONRPCNotification;
  assert.equal(cancelled.params?.requestId, child.requests('tools/call')[0]?.id);
  // A timeout is not the end of the channel.
  assert.equal(channel.ended, false);
});

test('a child exiting mid-request: the client gets an error at once and the channel ends with child_exit', async () => {
  const child = new InMemoryChild(SPEC);
  child.holding.add('tools/call');
  const { channel, ended } = channelOver(child);
  const caller = client();
  channel.request(request(9, 'tools/call', { name: 'crash' }), caller.sink);
  child.crash(3);
  const answer = await caller.answer;
  assert.ok('error' in answer);
  assert.equal(answer.error.code, -32603);
  assert.match(answer.error.message, /exited \(code 3\)/);
  assert.equal(await ended, 'child_exit');
  assert.equal(channel.ended, true);
});

test('a retired child exiting does not end the channel', async () => {
  const old = new InMemoryChild(SPEC);
  let endedWith: string | undefined;
  const { channel } = channelOver(old, { onEnded: (reason) => (endedWith = reason) });
  await initialize(channel);
  await channel.swapChild(new InMemoryChild(SPEC));
  await old.exited;
  assert.equal(channel.ended, false);
  assert.equal(endedWith, undefined);
});
