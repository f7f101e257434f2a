/**
 * A POST stream whose client left before the stream opened (the connection
 * closed while the broker was still authenticating, say): it must not count
 * as connected, or every resumption would be refused with 409 until the
 * answer came; its events are stored and a resumption gets them.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { EventId, JSONRPCMessage, StreamId } from '@modelcontextprotocol/server';
import { SessionEventStore } from '../../src/legacy/event-store.js';
import { PostStream } from '../../src/legacy/post-stream.js';

/** An event store that notes the ids it hands out. */
class RecordingStore extends SessionEventStore {
  readonly ids: EventId[] = [];

  override append(streamId: StreamId, tag: string, message: JSONRPCMessage | Record<string, never>, size?: number): EventId {
    const id = super.append(streamId, tag, message, size);
    this.ids.push(id);
    return id;
  }
}

test('a stream opened after its client left is not connected; a resumption gets its events and its answer', async (t) => {
  const events = new RecordingStore();
  let finished = false;
  const stream = new PostStream({ events, sessionId: 's', requestIds: [1], onDone: () => (finished = true) });
  let arrived: (() => void) | undefined;
  const posted = new Promise<void>((resolve) => (arrived = resolve));
  let opened: (() => void) | undefined;
  const streamOpened = new Promise<void>((resolve) => (opened = resolve));
  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      arrived?.();
      void once(res, 'close').then(() => {
        stream.open(res, true);
        opened?.();
      });
      return;
    }
    stream.resume(res, events.ids[0] as EventId);
    stream.send({ jsonrpc: '2.0', id: 1, result: { content: [] } });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;

  const post = http.request({ host: '127.0.0.1', port, method: 'POST' });
  post.on('error', () => undefined);
  post.write('{}');
  await posted;
  post.destroy();
  await streamOpened;
  assert.equal(stream.connected, false, 'a connection that is gone is not attached');
  stream.send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } });

  const resumed = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(resumed.status, 200);
  const body = await resumed.text();
  const messages = body
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice(6)) as { id?: number; method?: string });
  assert.deepEqual(
    messages.map((message) => message.method ?? message.id),
    ['notifications/progress', 1],
  );
  assert.equal(finished, true);
});
