/**
 * The 2026-07-28 era through the broker, in front of a legacy child: the
 * official SDK client in modern mode and in legacy mode, side by side, and
 * the server validation the transport spec lists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { TestBroker, type TestUser, watchGetStream, startBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { tokenFingerprint as fingerprint } from '../support/forgejo.js';
import { text } from '../support/mcp-clients.js';

const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

type Mode = 'auto' | 'legacy';

async function connect(broker: TestBroker, user: TestUser, mode: Mode): Promise<Client & { getStreamOpened: Promise<void> }> {
  const client = new Client(
    { name: `sdk-${mode}`, version: '1.0.0' },
    { capabilities: { elicitation: { form: {} }, sampling: {}, roots: { listChanged: true } }, versionNegotiation: { mode } },
  );
  const watch = watchGetStream();
  await client.connect(
    new StreamableHTTPClientTransport(broker.mcpUrl, {
      requestInit: { headers: { Authorization: `Bearer ${user.bearer}` } },
      fetch: watch.fetch,
    }),
  );
  return Object.assign(client, { getStreamOpened: watch.opened });
}

/** A raw modern POST. */
async function modernPost(
  broker: TestBroker,
  user: TestUser,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<Response> {
  const params = (body.params ?? {}) as Record<string, unknown>;
  return fetch(broker.mcpUrl, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      Authorization: `Bearer ${user.bearer}`,
      'MCP-Protocol-Version': '2026-07-28',
      'Mcp-Method': String(body.method),
      ...headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', ...body, params: { ...params, _meta: { ...META, ...(params._meta as object | undefined) } } }),
  });
}

for (const mode of ['auto', 'legacy'] as const) {
  test(`${mode} client: tools, resources and prompts through the broker`, async (t) => {
    const broker = await startBroker();
    t.after(() => broker.close());
    const user = broker.addUser('alice');
    const client = await connect(broker, user, mode);
    // The era each client lands on: modern is stateless (a shared user channel), legacy has a session.
    assert.equal(broker.modern.activeUserChannels, mode === 'auto' ? 1 : 0);
    assert.equal(broker.legacy.active, mode === 'auto' ? 0 : 1);
    const tools = await client.listTools();
    assert.ok(tools.tools.some((tool) => tool.name === 'get_me'));
    assert.equal((JSON.parse(text(await client.callTool({ name: 'get_me', arguments: {} }))) as { login: string }).login, 'alice');
    const read = await client.readResource({ uri: 'forgejo://version' });
    assert.match(JSON.stringify(read.contents), /version/);
    const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
    assert.match(JSON.stringify(prompt.messages), /Hello, Ada!/);
    await client.close();
  });

  test(`${mode} client: progress notifications`, async (t) => {
    const broker = await startBroker();
    t.after(() => broker.close());
    const client = await connect(broker, broker.addUser(), mode);
    const progress: number[] = [];
    const result = await client.callTool({ name: 'sleep', arguments: { ms: 250 } }, { onprogress: (p) => progress.push(p.progress) });
    assert.equal(text(result), 'slept');
    assert.ok(progress.length >= 2);
    await client.close();
  });

  test(`${mode} client: an elicitation round trip and a sampling round trip`, async (t) => {
    const broker = await startBroker();
    t.after(() => broker.close());
    const client = await connect(broker, broker.addUser(), mode);
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { answer: 'forty-two' } }));
    client.setRequestHandler('sampling/createMessage', () => ({
      model: 'm',
      role: 'assistant',
      content: { type: 'text', text: 'sampled' },
    }));
    assert.match(text(await client.callTool({ name: 'ask', arguments: {} })), /forty-two/);
    assert.match(text(await client.callTool({ name: 'sample', arguments: {} })), /sampled/);
    await client.close();
  });

  test(`${mode} client: list-changed notifications`, async (t) => {
    const broker = await startBroker();
    t.after(() => broker.close());
    const client = await connect(broker, broker.addUser(), mode);
    const changed = new Promise<void>((resolve) => client.setNotificationHandler('notifications/tools/list_changed', () => resolve()));
    let subscription: { close(): Promise<void> } | undefined;
    if (mode === 'auto') {
      subscription = await client.listen({ toolsListChanged: true });
    } else {
      await client.getStreamOpened; // the legacy GET stream opens after connect
    }
    await client.callTool({ name: 'add_tool', arguments: { name: `via_${mode}` } });
    await changed;
    await subscription?.close();
    await client.close();
  });

  test(`${mode} client: cancellation reaches the child`, async (t) => {
    const broker = await startBroker();
    t.after(() => broker.close());
    const client = await connect(broker, broker.addUser(), mode);
    const controller = new AbortController();
    const call = client.callTool({ name: 'hang', arguments: {} }, { signal: controller.signal }).catch(() => 'aborted');
    await eventually(() => broker.pool.inflight === 1, 'call in flight');
    controller.abort();
    assert.equal(await call, 'aborted');
    await eventually(() => broker.pool.inflight === 0, 'cancelled at the broker');
    assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'next' } })), 'next');
    await client.close();
  });
}

test('a dual-era client and a legacy-only client of the same user work at once', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser('alice');
  const modern = await connect(broker, user, 'auto');
  const legacy = await connect(broker, user, 'legacy');
  assert.equal(broker.modern.activeUserChannels, 1);
  assert.equal(broker.legacy.active, 1);
  const [a, b] = await Promise.all([
    modern.callTool({ name: 'echo', arguments: { text: 'modern' } }),
    legacy.callTool({ name: 'echo', arguments: { text: 'legacy' } }),
  ]);
  assert.equal(text(a), 'modern');
  assert.equal(text(b), 'legacy');
  await modern.close();
  await legacy.close();
});

test('equal JSON-RPC ids from two clients never collide on the shared child', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const call = (word: string, ms: number) =>
    modernPost(
      broker,
      user,
      { id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: word } } },
      { 'Mcp-Name': 'echo' },
    ).then(async (res) => {
      void ms;
      return (await res.json()) as { id: number; result: { content: { text: string }[] } };
    });
  const answers = await Promise.all(['one', 'two', 'three', 'four'].map((word, i) => call(word, i)));
  assert.deepEqual(
    answers.map((answer) => [answer.id, answer.result.content[0]?.text]),
    [
      [1, 'one'],
      [1, 'two'],
      [1, 'three'],
      [1, 'four'],
    ],
  );
});

test('modern results carry resultType and the server identity; server/discover reports the child', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const discover = (await (await modernPost(broker, user, { id: 'd', method: 'server/discover' })).json()) as {
    result: {
      resultType: string;
      supportedVersions: string[];
      capabilities: Record<string, unknown>;
      _meta: Record<string, { name: string }>;
    };
  };
  assert.equal(discover.result.resultType, 'complete');
  assert.ok(discover.result.supportedVersions.includes('2026-07-28'));
  assert.ok(discover.result.supportedVersions.includes('2025-11-25'));
  assert.ok('tools' in discover.result.capabilities);
  assert.equal(discover.result._meta['io.modelcontextprotocol/serverInfo']?.name, 'forgejo-mcp-broker');
  const list = (await (await modernPost(broker, user, { id: 2, method: 'tools/list' })).json()) as {
    result: { resultType: string; _meta: Record<string, unknown> };
  };
  assert.equal(list.result.resultType, 'complete');
  assert.ok(list.result._meta['io.modelcontextprotocol/serverInfo']);
});

test('server validation: mismatch, unsupported version, unknown method, Mcp-Name and its base64 form', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const expectError = async (
    res: Response,
    status: number,
    code: number,
  ): Promise<{ error: { code: number; data?: unknown }; id: unknown }> => {
    assert.equal(res.status, status);
    const body = (await res.json()) as { error: { code: number; data?: unknown }; id: unknown };
    assert.equal(body.error.code, code);
    return body;
  };
  await expectError(await modernPost(broker, user, { id: 1, method: 'tools/list' }, { 'MCP-Protocol-Version': '2025-11-25' }), 400, -32020);
  await expectError(await modernPost(broker, user, { id: 1, method: 'tools/list' }, { 'Mcp-Method': 'prompts/list' }), 400, -32020);
  const unsupported = await expectError(
    await modernPost(
      broker,
      user,
      { id: 7, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } },
      { 'MCP-Protocol-Version': '2099-01-01' },
    ),
    400,
    -32022,
  );
  assert.equal(unsupported.id, 7);
  assert.deepEqual((unsupported.error.data as { requested: string }).requested, '2099-01-01');
  assert.ok((unsupported.error.data as { supported: string[] }).supported.includes('2026-07-28'));
  await expectError(await modernPost(broker, user, { id: 1, method: 'no/such' }), 404, -32601);
  const call = { id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } };
  await expectError(await modernPost(broker, user, call), 400, -32020);
  await expectError(await modernPost(broker, user, call, { 'Mcp-Name': 'other' }), 400, -32020);
  const encoded = await modernPost(broker, user, call, { 'Mcp-Name': `=?base64?${Buffer.from('echo').toString('base64')}?=` });
  assert.equal(encoded.status, 200);
  assert.match(await encoded.text(), /"x"/);
});

test('per-request log level: logs only for a request that asks, at its level or above', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const log = (level: string, meta: Record<string, unknown>) =>
    modernPost(
      broker,
      user,
      { id: 3, method: 'tools/call', params: { name: 'log', arguments: { level, message: `at ${level}` }, _meta: meta } },
      { 'Mcp-Name': 'log' },
    ).then((res) => res.text());
  assert.doesNotMatch(await log('warning', {}), /notifications\/message/);
  assert.match(await log('warning', { 'io.modelcontextprotocol/logLevel': 'info' }), /notifications\/message/);
  assert.doesNotMatch(await log('debug', { 'io.modelcontextprotocol/logLevel': 'info' }), /notifications\/message/);
});

test('a child request the modern client did not declare the capability for fails the request with -32021', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  // No elicitation capability in this request's _meta: the request fails as a whole, and nothing is left waiting.
  const res = await modernPost(
    broker,
    user,
    { id: 4, method: 'tools/call', params: { name: 'ask', arguments: {} } },
    { 'Mcp-Name': 'ask' },
  );
  assert.equal(res.status, 400);
  const body = (await res.json()) as { id: number; error: { code: number; data: { requiredCapabilities: Record<string, unknown> } } };
  assert.equal(body.id, 4);
  assert.equal(body.error.code, -32021);
  assert.deepEqual(body.error.data.requiredCapabilities, { elicitation: {} });
  await eventually(() => broker.pool.inflight === 0, 'nothing in flight');
});

test('inputs the child asks for together come back in one input-required result', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const caps = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} }, sampling: {} } };
  const call = (extra: Record<string, unknown>, id: number) =>
    modernPost(
      broker,
      user,
      { id, method: 'tools/call', params: { name: 'ask_both', arguments: {}, ...extra, _meta: caps } },
      { 'Mcp-Name': 'ask_both' },
    ).then(
      (res) =>
        res.json() as Promise<{
          id: number;
          result: {
            resultType: string;
            requestState: string;
            inputRequests: Record<string, { method: string }>;
            content?: { text: string }[];
          };
        }>,
    );
  const first = await call({}, 1);
  assert.equal(first.result.resultType, 'input_required');
  const requests = Object.entries(first.result.inputRequests);
  assert.deepEqual(requests.map(([, request]) => request.method).sort(), ['elicitation/create', 'sampling/createMessage']);
  const inputResponses = Object.fromEntries(
    requests.map(([key, request]) => [
      key,
      request.method === 'elicitation/create'
        ? { action: 'accept', content: { answer: 'both' } }
        : { model: 'm', role: 'assistant', content: { type: 'text', text: 'hi' } },
    ]),
  );
  const done = await call({ inputResponses, requestState: first.result.requestState }, 2);
  assert.equal(done.id, 2);
  assert.equal(done.result.resultType, 'complete');
  assert.match(done.result.content?.[0]?.text ?? '', /both/);
});

test('Mcp-Param headers are checked against the arguments a tool mirrors (x-mcp-header)', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const call = (headers: Record<string, string>) =>
    modernPost(
      broker,
      user,
      { id: 9, method: 'tools/call', params: { name: 'in_region', arguments: { region: 'eu-north', query: 'q' } } },
      { 'Mcp-Name': 'in_region', ...headers },
    );
  const ok = await call({ 'Mcp-Param-Region': 'eu-north' });
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /q in eu-north/);
  const encoded = await call({ 'Mcp-Param-Region': `=?base64?${Buffer.from('eu-north').toString('base64')}?=` });
  assert.equal(encoded.status, 200);
  await encoded.text();
  const wrong: Record<string, string>[] = [{}, { 'Mcp-Param-Region': 'us-west' }, { 'Mcp-Param-Region': '=?base64?%%%?=' }];
  for (const headers of wrong) {
    const res = await call(headers);
    assert.equal(res.status, 400, JSON.stringify(headers));
    assert.equal(((await res.json()) as { error: { code: number } }).error.code, -32020);
  }
  // The official client mirrors the header itself.
  const client = await connect(broker, user, 'auto');
  assert.equal(text(await client.callTool({ name: 'in_region', arguments: { region: 'ap-south', query: 'sdk' } })), 'sdk in ap-south');
  await client.close();
});

test('a forged or foreign requestState is refused', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const alice = broker.addUser('alice');
  const mallory = broker.addUser('mallory');
  const ask = (user: TestUser, extra: Record<string, unknown>) =>
    modernPost(
      broker,
      user,
      {
        id: 5,
        method: 'tools/call',
        params: {
          name: 'ask',
          arguments: {},
          ...extra,
          _meta: { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } },
        },
      },
      { 'Mcp-Name': 'ask' },
    ).then(
      (res) =>
        res.json() as Promise<{
          result?: { resultType: string; requestState: string; inputRequests: Record<string, unknown> };
          error?: { code: number };
        }>,
    );
  const first = await ask(alice, {});
  assert.equal(first.result?.resultType, 'input_required');
  const key = Object.keys(first.result?.inputRequests ?? {})[0] as string;
  const answer = { inputResponses: { [key]: { action: 'accept', content: { answer: 'stolen' } } } };
  assert.equal((await ask(mallory, { ...answer, requestState: first.result?.requestState })).error?.code, -32602);
  assert.equal((await ask(alice, { ...answer, requestState: `${first.result?.requestState}x` })).error?.code, -32602);
  const done = await ask(alice, { ...answer, requestState: first.result?.requestState });
  assert.match(JSON.stringify(done), /stolen/);
});

test('rotation moves the user channel too; modern calls see the new token', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const client = await connect(broker, user, 'auto');
  assert.equal(text(await client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(user.forgejoToken));
  const token = broker.newForgejoToken(user);
  await broker.pool.rotateUser(user.userId);
  assert.equal(text(await client.callTool({ name: 'token_fingerprint', arguments: {} })), fingerprint(token));
  await client.close();
});

// A stdio child's lines pass through, and so do a shared upstream's answers (src/upstream): the same bytes either way.
test("a large result reaches a modern client as the child's own bytes: the id renamed, the stamp in front of the result's members", async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser('alice');
  const bytes = 256 * 1024;
  const res = await modernPost(
    broker,
    user,
    { id: 'big-1', method: 'tools/call', params: { name: 'big', arguments: { bytes } } },
    { 'Mcp-Name': 'big' },
  );
  assert.equal(res.status, 200);
  const body = await res.text();
  // Serialised again, the stamp's fields would follow the result's own; passed through, they come first and the child's order stays.
  assert.ok(body.startsWith('{"result":{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":'), body.slice(0, 200));
  assert.ok(body.endsWith(`"content":[{"type":"text","text":"${'x'.repeat(bytes)}"}]},"jsonrpc":"2.0","id":"big-1"}`), body.slice(-200));
  assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(body));
});
