import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventText, SseReader, type SseEvent } from '../../src/upstream/sse-reader.js';

interface Read {
  readonly event: string | undefined;
  readonly data: string;
  readonly id: string | undefined;
}

function read(chunks: readonly Buffer[]): { events: Read[]; lastEventId: string | undefined } {
  const events: Read[] = [];
  const reader = new SseReader((event) => {
    assert.equal(event.length, Buffer.concat(event.data).length, 'the length is the bytes of data');
    events.push({ event: event.event, data: eventText(event), id: event.id });
  });
  for (const chunk of chunks) reader.push(chunk);
  return { events, lastEventId: reader.lastEventId };
}

const STREAM = Buffer.from(
  ': a comment\nid: 7\nevent: message\ndata: {"a":"é€"}\n\ndata: line one\r\ndata:line two\r\ndata\r\n\r\nretry: 100\n\n',
);

test('events are read whatever the chunking: every split point of the stream (inside a character too) gives the same events', () => {
  const whole = read([STREAM]);
  assert.deepEqual(whole.events, [
    { event: 'message', data: '{"a":"é€"}', id: '7' },
    { event: undefined, data: 'line one\nline two\n', id: '7' },
  ]);
  assert.equal(whole.lastEventId, '7');
  for (let split = 1; split < STREAM.length; split++) {
    assert.deepEqual(read([STREAM.subarray(0, split), STREAM.subarray(split)]).events, whole.events, `split at ${split}`);
  }
  assert.deepEqual(read([...STREAM].map((byte) => Buffer.from([byte]))).events, whole.events, 'one byte at a time');
});

test('an event is handed on only once its blank line arrived, its data the chunks it came in (no copy); a stream cut inside one hands nothing on', () => {
  const events: SseEvent[] = [];
  const reader = new SseReader((event) => events.push(event));
  const middle = Buffer.from('x'.repeat(100_000));
  reader.push(Buffer.from('data: {"big":"'));
  reader.push(middle);
  reader.push(Buffer.from('"}\r\n'));
  assert.equal(events.length, 0);
  reader.push(Buffer.from('\n'));
  assert.equal(events.length, 1);
  const [event] = events as [SseEvent];
  assert.equal(event.length, 100_000 + 10);
  assert.ok(
    event.data.some((piece) => piece.buffer === middle.buffer && piece.length === middle.length),
    'the large chunk is handed on as it arrived',
  );
  assert.equal(eventText(event), `{"big":"${'x'.repeat(100_000)}"}`);
  reader.push(Buffer.from('data: cut before its end\n'));
  assert.equal(events.length, 1);
});
