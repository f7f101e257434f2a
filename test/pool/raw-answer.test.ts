import assert from 'node:assert/strict';
import { test } from 'node:test';
import { passThrough, RawAnswer, withId } from '../../src/pool/raw-answer.js';

/** A line cut into chunks of `size` bytes, as a pipe may deliver it. */
function chunked(line: string, size: number): Buffer[] {
  const bytes = Buffer.from(line);
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
  return chunks;
}

const LINE =
  '{"result":{"content":[{"type":"text","text":"a \\"quoted\\" \\\\ line\\nwith \\u00e9 and ✓"}],"isError":false},"jsonrpc":"2.0","id":7}';

test("the client's bytes are the child's with only the id replaced, however the pipe cut the line", () => {
  for (const size of [1, 2, 3, 5, 7, 64, 4096]) {
    const answer = RawAnswer.scan(chunked(LINE, size));
    assert.ok(answer !== undefined, `scanned in chunks of ${size}`);
    assert.equal(answer.id, 7);
    assert.equal(answer.isError, false);
    assert.equal(Buffer.concat(answer.bytes('client-1')).toString(), LINE.replace('"id":7', '"id":"client-1"'));
  }
});

test('fields put in front of the result come before its own members, and the result still parses', () => {
  const answer = RawAnswer.scan(chunked(LINE + '\r', 10)) as RawAnswer;
  const response = passThrough(answer, 3, '"resultType":"complete",');
  const child = JSON.parse(LINE) as { result: Record<string, unknown> };
  assert.deepEqual(JSON.parse(JSON.stringify(response)), { ...child, id: 3, result: { resultType: 'complete', ...child.result } });
  assert.ok(answer.resultHas('isError'));
  assert.ok(!answer.resultHas('_meta'));
  const renamed = withId(response, 'x');
  assert.equal(JSON.stringify(renamed), JSON.stringify({ ...JSON.parse(JSON.stringify(response)), id: 'x' }));
});

test('anything but a valid JSON-RPC result is left to the ordinary parse', () => {
  for (const line of [
    '{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"no"}}',
    '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    '{"jsonrpc":"2.0","id":1,"result":{"a":tru}}',
    '{"jsonrpc":"2.0","id":1,"result":{"a":"unterminated}}',
    '{"jsonrpc":"2.0","id":1,"result":{"a":1}} trailing',
    '{"jsonrpc":"1.0","id":1,"result":{}}',
    '{"jsonrpc":"2.0","id":1,"result":{"a":01}}',
    '{"jsonrpc":"2.0","id":1,"result":[]}',
    // Valid JSON, but a carriage return would end the line of an SSE event it is written into.
    '{"jsonrpc":"2.0",\r"id":1,"result":{}}',
  ]) {
    assert.equal(RawAnswer.scan(chunked(line, 4)), undefined, line);
  }
  assert.ok(RawAnswer.scan(chunked('{"jsonrpc":"2.0","id":"s","result":{"a":[1,-2.5e3,true,null,{}],"isError":true}}', 3))?.isError);
});
