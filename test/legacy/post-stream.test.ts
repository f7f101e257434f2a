/**
 * A legacy session answers its POSTs itself (not through the SDK transport),
 * with the same wire behaviour: an SSE stream per POST that opens with a
 * priming event naming its requests, ends with the last answer, can be
 * resumed while answers are still owed, and is refused as the transport
 * refuses; a large result leaves as the child's own bytes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonRpcCode } from '../../src/errors/jsonrpc-codes.js';
import { requestIdsOfEventId } from '../../src/legacy/event-store.js';
import { startBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { ACCEPT_BOTH, openSession, post, PROTOCOL_VERSION, resume, SseReader, toolCall } from './sse.js';

test("a POST's stream opens with a priming event naming its request, and ends with the answer, the child's own bytes", async (t) => {
  // A stdio child: its large answers are the ones passed through as bytes.
  const broker = await startBroker({ upstream: 'stdio' });
  t.after(() => broker.close());
  const user = broker.addUser();
  const session = await openSession(broker, user);
  const res = await post(broker, user, toolCall(7, 'big', { bytes: 200_000 }), session);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('mcp-session-id'), session['mcp-session-id']);
  const stream = new SseReader(res);
  const priming = await stream.next();
  assert.equal(priming?.data, '');
  assert.equal(priming.retry, 500);
  assert.deepEqual(requestIdsOfEventId(priming.id ?? ''), [7], 'the event id names the request the stream answers');
  const answer = await stream.next();
  assert.ok(answer !== undefined);
  // The child writes `result` first; an answer parsed and serialised again would start with `jsonrpc`.
  assert.ok(answer.data.startsWith('{"result":'), `passed through as written: ${answer.data.slice(0, 40)}`);
  const parsed = JSON.parse(answer.data) as { id: number; result: { content: { text: string }[] } };
  assert.equal(parsed.id, 7);
  assert.equal(parsed.result.content[0]?.text.length, 200_000);
  assert.deepEqual(requestIdsOfEventId(answer.id ?? ''), [7]);
  assert.equal(await stream.next(), undefined, 'the stream ends with its answer');
});

test('a stream resumed while its answer is still owed gets what it missed, then the answer', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const session = await openSession(broker, user);
  const cut = new AbortController();
  const first = new SseReader(await post(broker, user, toolCall(5, 'ask'), session, cut.signal));
  const priming = await first.next();
  const asked = await first.nextMessage();
  assert.equal(asked.message.method, 'elicitation/create');
  cut.abort();
  await first.cancel();

  // Until the broker has seen the connection close, the stream is still connected there and a resumption is refused.
  let resumed: Response | undefined;
  await eventually(async () => {
    resumed = await resume(broker, user, session, priming?.id ?? '');
    if (resumed.status !== 409) return true;
    await resumed.body?.cancel();
    return false;
  }, 'the broker let go of the cut stream');
  assert.equal(resumed?.status, 200);
  const again = new SseReader(resumed);
  const replayed = await again.nextMessage();
  assert.deepEqual(replayed, asked, 'the elicitation, replayed under its own event id');

  const answered = await post(
    broker,
    user,
    { jsonrpc: '2.0', id: asked.message.id, result: { action: 'accept', content: { answer: '42' } } },
    session,
  );
  assert.equal(answered.status, 202);
  const final = await again.nextMessage();
  assert.equal(final.message.id, 5);
  assert.match(final.message.result?.content?.[0]?.text ?? '', /42/);
  assert.equal(await again.next(), undefined, 'the resumed stream ends with the answer');
});

test('a resumption of a stream that is still connected is 409, as the SDK transport answers', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const session = await openSession(broker, user);
  const stream = new SseReader(await post(broker, user, toolCall(5, 'ask'), session));
  const priming = await stream.next();
  const res = await resume(broker, user, session, priming?.id ?? '');
  assert.equal(res.status, 409);
  const body = (await res.json()) as { error: { code: number; message: string } };
  assert.deepEqual(body.error, { code: JsonRpcCode.requestRefused, message: 'Conflict: Stream already has an active connection' });
  await stream.cancel();
});

test("the transport's checks apply to every POST: Accept, Content-Type, the protocol version, the batch size", async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  // 2025-03-26 still has batches, so only the size is refused.
  const session = await openSession(broker, user, '2025-03-26');
  const ping = { jsonrpc: '2.0', id: 1, method: 'ping' };
  const refusals = [
    [await post(broker, user, ping, { ...session, accept: 'application/json' }), 406, /Not Acceptable: Client must accept both/],
    [await post(broker, user, ping, { ...session, 'content-type': 'text/plain' }), 415, /Unsupported Media Type/],
    [await post(broker, user, ping, { ...session, 'mcp-protocol-version': '1999-01-01' }), 400, /Unsupported protocol version: 1999-01-01/],
    [
      await post(
        broker,
        user,
        Array.from({ length: 101 }, (_, id) => ({ ...ping, id })),
        session,
      ),
      400,
      /Batch must not exceed 100/,
    ],
  ] as const;
  for (const [res, status, message] of refusals) {
    assert.equal(res.status, status);
    const body = (await res.json()) as { id: unknown; error: { message: string } };
    assert.equal(body.id, null);
    assert.match(body.error.message, message);
  }
  const served = await post(
    broker,
    user,
    Array.from({ length: 100 }, (_, id) => ({ ...ping, id })),
    session,
  );
  assert.equal(served.status, 200);
  const stream = new SseReader(served);
  const ids = new Set<unknown>();
  for (let event = await stream.nextMessage(); ids.add(event.message.id).size < 100; event = await stream.nextMessage());
  assert.equal(await stream.next(), undefined, 'one stream answers the whole batch, then ends');
});

test('a client before 2025-11-25 gets no priming event; the first event is the first message', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const session = await openSession(broker, user, '2025-06-18');
  const stream = new SseReader(await post(broker, user, toolCall(3, 'echo', { text: 'hi' }), session));
  const first = await stream.next();
  assert.ok(first !== undefined && first.data !== '', 'a message, not a priming event');
  assert.equal(first.retry, undefined);
  assert.equal((JSON.parse(first.data) as { id: number }).id, 3);
  assert.equal(await stream.next(), undefined);
});

test('a cancelled request ends its stream without an answer', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const session = await openSession(broker, user);
  const stream = new SseReader(await post(broker, user, toolCall(11, 'hang'), session));
  await stream.next();
  await eventually(() => broker.pool.inflight === 1, 'the call reached the child');
  const cancelled = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 11, reason: 'no longer needed' } };
  assert.equal((await post(broker, user, cancelled, session)).status, 202);
  assert.equal(await stream.next(), undefined, 'the stream ended, and no answer came');
  await eventually(() => broker.pool.inflight === 0, 'the call was cancelled at the child');
});

test('a session that ends answers the calls its streams wait for with an error, and ends the streams', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const session = await openSession(broker, user);
  const stream = new SseReader(await post(broker, user, toolCall(9, 'hang'), session));
  await stream.next();
  await eventually(() => broker.pool.inflight === 1, 'the call reached the child');
  const deleted = await fetch(broker.mcpUrl, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${user.bearer}`, accept: ACCEPT_BOTH, ...session, 'mcp-protocol-version': PROTOCOL_VERSION },
  });
  assert.equal(deleted.status, 200);
  const answer = await stream.nextMessage();
  assert.equal(answer.message.id, 9);
  assert.equal(answer.message.error?.code, JsonRpcCode.internalError);
  assert.equal(await stream.next(), undefined);
});
