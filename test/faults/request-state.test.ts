/**
 * A 2026-07-28 input-required round trip replayed by someone else (issue 10,
 * section 6): the `requestState` belongs to the user, OAuth client and grant
 * that started the call; another client or grant of the same user cannot
 * answer the call's questions or take its result.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomToken, startBroker } from '../support/brokers.js';

interface Answer {
  readonly result?: { resultType: string; requestState: string; inputRequests: Record<string, unknown>; content?: { text: string }[] };
  readonly error?: { code: number };
}

test('a requestState replayed through another grant or another client of the same user is refused; the caller completes it', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const alice = broker.addUser('alice');
  const otherGrant = randomToken();
  broker.grantBearer(alice, otherGrant, 'grant-of-alice-2');
  const otherClient = randomToken();
  broker.grantBearer(alice, otherClient, 'grant-of-alice-3', 'another-client');

  const ask = async (bearer: string, extra: Record<string, unknown>): Promise<Answer> => {
    const res = await fetch(broker.mcpUrl, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        Authorization: `Bearer ${bearer}`,
        'MCP-Protocol-Version': '2026-07-28',
        'Mcp-Method': 'tools/call',
        'Mcp-Name': 'ask',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 5,
        method: 'tools/call',
        params: {
          name: 'ask',
          arguments: {},
          ...extra,
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
            'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } },
          },
        },
      }),
    });
    return (await res.json()) as Answer;
  };

  const first = await ask(alice.bearer, {});
  assert.equal(first.result?.resultType, 'input_required');
  const key = Object.keys(first.result?.inputRequests ?? {})[0] as string;
  const retry = {
    requestState: first.result?.requestState,
    inputResponses: { [key]: { action: 'accept', content: { answer: 'stolen' } } },
  };

  assert.equal((await ask(otherGrant, retry)).error?.code, -32602);
  assert.equal((await ask(otherClient, retry)).error?.code, -32602);
  const done = await ask(alice.bearer, { ...retry, inputResponses: { [key]: { action: 'accept', content: { answer: 'mine' } } } });
  assert.equal(done.result?.resultType, 'complete');
  assert.match(done.result?.content?.[0]?.text ?? '', /mine/);
});
