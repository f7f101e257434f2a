import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SseReader, type SseEvent } from '../../src/upstream/sse-reader.js';

function read(chunks: readonly string[]): { events: SseEvent[]; lastEventId: string | undefined } {
  const events: SseEvent[] = [];
  const reader = new SseReader((event) => events.push(event));
  for (const chunk of chunks) reader.push(chunk);
  return { events, lastEventId: reader.lastEventId };
}

const STREAM = ': a comment\nid: 7\nevent: message\ndata: {"a":1}\n\ndata: line one\r\ndata:line two\r\n\r\nretry: 100\n\n';

test('events are read whatever the chunking: every split point of the stream gives the same events', () => {
  const whole = read([STREAM]);
  assert.deepEqual(whole.events, [
    { event: 'message', data: '{"a":1}', id: '7' },
    { event: undefined, data: 'line one\nline two', id: '7' },
  ]);
  assert.equal(whole.lastEventId, '7');
  for (let split = 1; split < STREAM.length; split++) {
    assert.deepEqual(read([STREAM.slice(0, split), STREAM.slice(split)]).events, whole.events, `split at ${split}`);
  }
  assert.deepEqual(read([...STREAM]).events, whole.events, 'one character at a time');
});

test('an event is handed on only once its blank line arrived; a stream cut inside one hands nothing on', () => {
  const events: SseEvent[] = [];
  const reader = new SseReader((event) => events.push(event));
  reader.push('data: {"big":"');
  reader.push('x'.repeat(100_000));
  reader.push('"}\n');
  assert.equal(events.length, 0);
  reader.push('\n');
  assert.equal(events.length, 1);
  assert.equal(events[0]?.data.length, 100_000 + 10);
  reader.push('data: cut before its end\n');
  assert.equal(events.length, 1);
});
