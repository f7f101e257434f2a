/**
 * The Streamable HTTP transport (2025-11-25) works end to end through the
 * broker: every message kind, both directions, and the transport's checks.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { TestBroker, type TestUser, startBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { text } from '../support/mcp-clients.js';
import { RecordingConnection } from '../support/recording-connection.js';

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

async function post(broker: TestBroker, user: TestUser, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(broker.mcpUrl, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      Authorization: `Bearer ${user.bearer}`,
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function session(broker: TestBroker, user: TestUser, protocolVersion = '2025-11-25'): Promise<Record<string, string>> {
  const res = await post(broker, user, { ...INIT, params: { ...INIT.params, protocolVersion } });
  assert.equal(res.status, 200);
  await res.text();
  const headers = { 'Mcp-Session-Id': res.headers.get('mcp-session-id') as string, 'MCP-Protocol-Version': protocolVersion };
  assert.equal((await post(broker, user, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)).status, 202);
  return headers;
}

/** The JSON-RPC messages of an SSE body. */
function sseMessages(body: string): { id?: unknown; result?: unknown; error?: { code: number; message: string } }[] {
  return body
    .split('\n')
    .filter((line) => line.startsWith('data: ') && line.length > 6)
    .map((line) => JSON.parse(line.slice(6)) as { id?: unknown; result?: unknown; error?: { code: number; message: string } });
}

test('a server-to-client elicitation and sampling round trip during a tool call', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { answer: '42' } }));
  client.setRequestHandler('sampling/createMessage', () => ({
    model: 'm',
    role: 'assistant',
    content: { type: 'text', text: 'sampled!' },
  }));
  client.setRequestHandler('roots/list', () => ({ roots: [{ uri: 'file:///work', name: 'work' }] }));
  assert.match(text(await client.callTool({ name: 'ask', arguments: {} })), /42/);
  assert.match(text(await client.callTool({ name: 'sample', arguments: {} })), /sampled!/);
  assert.match(text(await client.callTool({ name: 'roots', arguments: {} })), /file:\/\/\/work/);
  await client.close();
});

test('progress and log notifications reach the client on the request stream', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  const progress: number[] = [];
  const result = await client.callTool({ name: 'sleep', arguments: { ms: 300 } }, { onprogress: (p) => progress.push(p.progress) });
  assert.equal(text(result), 'slept');
  assert.ok(progress.length >= 2, `got ${progress.length} progress notifications`);
  const logs: string[] = [];
  client.setNotificationHandler('notifications/message', (n) => void logs.push(String(n.params.data)));
  await client.callTool({ name: 'log', arguments: { level: 'info', message: 'hello from the child' } });
  assert.deepEqual(logs, ['hello from the child']);
  await client.close();
});

test('the GET stream carries list_changed notifications that belong to no request', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client, getStreamOpened } = await broker.connect(broker.addUser());
  const changed = new Promise<void>((resolve) => client.setNotificationHandler('notifications/tools/list_changed', () => resolve()));
  // The SDK client opens the GET stream after initialization; a second session request triggers the change.
  await getStreamOpened;
  await client.callTool({ name: 'add_tool', arguments: { name: 'extra' } });
  await changed;
  const tools = await client.listTools();
  assert.ok(tools.tools.some((tool) => tool.name === 'extra'));
  await client.close();
});

test('resources and prompts pass through', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  const resources = await client.listResources();
  assert.ok(resources.resources.some((resource) => resource.uri === 'forgejo://version'));
  const read = await client.readResource({ uri: 'forgejo://version' });
  assert.match(JSON.stringify(read.contents), /version/);
  const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
  assert.match(JSON.stringify(prompt.messages), /Hello, Ada!/);
  await client.close();
});

test('an unsupported MCP-Protocol-Version header is 400', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const headers = await session(broker, user);
  const res = await post(
    broker,
    user,
    { jsonrpc: '2.0', id: 2, method: 'tools/list' },
    { ...headers, 'MCP-Protocol-Version': '1999-01-01' },
  );
  assert.equal(res.status, 400);
  assert.match(await res.text(), /Unsupported protocol version/);
});

test('a foreign Origin is 403 before anything else happens', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const res = await post(broker, user, INIT, { Origin: 'http://evil.example' });
  assert.equal(res.status, 403);
  assert.equal(broker.legacy.active, 0);
  const own = await post(broker, user, INIT, { Origin: 'http://127.0.0.1' });
  assert.equal(own.status, 200);
  await own.text();
});

test('CORS: an allowed browser origin gets a preflight answer and may read the session id; others get 403', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const preflight = await fetch(broker.mcpUrl, {
    method: 'OPTIONS',
    headers: {
      Origin: 'http://127.0.0.1',
      'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'authorization, mcp-session-id',
    },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://127.0.0.1');
  assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /Mcp-Session-Id/);
  const user = broker.addUser();
  const res = await post(broker, user, INIT, { Origin: 'http://127.0.0.1' });
  assert.equal(res.headers.get('access-control-allow-origin'), 'http://127.0.0.1');
  assert.match(res.headers.get('access-control-expose-headers') ?? '', /Mcp-Session-Id/);
  await res.text();
  const foreign = await fetch(broker.mcpUrl, { method: 'OPTIONS', headers: { Origin: 'http://evil.example' } });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.headers.get('access-control-allow-origin'), null);
});

test('a body over the limit is 413 and a body that is not JSON is a 400 parse error', async (t) => {
  const broker = await startBroker({ maxBodyBytes: 1024 });
  t.after(() => broker.close());
  const user = broker.addUser();
  const big = await post(broker, user, { ...INIT, params: { ...INIT.params, padding: 'x'.repeat(2048) } });
  assert.equal(big.status, 413);
  const garbage = await post(broker, user, '{not json');
  assert.equal(garbage.status, 400);
  assert.equal(((await garbage.json()) as { error: { code: number } }).error.code, -32700);
  assert.equal(broker.legacy.active, 0);
});

test('batches are refused from 2025-06-18 on and served under 2025-03-26', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const batch = [
    { jsonrpc: '2.0', id: 10, method: 'tools/list' },
    { jsonrpc: '2.0', id: 11, method: 'ping' },
  ];
  const modern = await session(broker, user);
  const refused = await post(broker, user, batch, modern);
  assert.equal(refused.status, 400);
  assert.match(await refused.text(), /batches are not allowed/);

  const old = await session(broker, user, '2025-03-26');
  const served = await post(broker, user, batch, old);
  assert.equal(served.status, 200);
  const ids = sseMessages(await served.text()).map((message) => message.id);
  assert.deepEqual(ids.sort(), [10, 11]);
});

test('a child that does not answer in time gets the client a JSON-RPC error, not a hang', async (t) => {
  // Long enough that the echo after it is answered in time on a loaded machine.
  const broker = await startBroker({ requestTimeoutMs: 1500 });
  t.after(() => broker.close());
  const user = broker.addUser();
  const headers = await session(broker, user);
  const res = await post(broker, user, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'hang', arguments: {} } }, headers);
  const [answer] = sseMessages(await res.text());
  assert.equal(answer?.id, 5);
  assert.equal(answer?.error?.code, -32003);
  // The session survives a timeout.
  const after = await post(
    broker,
    user,
    { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'echo', arguments: { text: 'still here' } } },
    headers,
  );
  assert.match(await after.text(), /still here/);
});

test("client ids are the client's own on the way back, whatever their type", async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const headers = await session(broker, user);
  for (const id of ['abc', 0, 'n1', 1]) {
    const res = await post(broker, user, { jsonrpc: '2.0', id, method: 'ping' }, headers);
    const [answer] = sseMessages(await res.text());
    assert.deepEqual(answer?.id, id);
  }
});

test('a cancelled request is cancelled at the child and its stream ends', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client } = await broker.connect(broker.addUser());
  const controller = new AbortController();
  const call = client.callTool({ name: 'hang', arguments: {} }, { signal: controller.signal });
  await eventually(() => broker.pool.inflight === 1, 'request running');
  controller.abort('changed my mind');
  await assert.rejects(call);
  await eventually(() => broker.pool.inflight === 0, 'request cancelled at the broker');
  assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'ok' } })), 'ok');
  await client.close();
});

test('a lost SSE stream resumes with Last-Event-ID and misses nothing', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const headers = await session(broker, user);
  const controller = new AbortController();
  const res = await fetch(broker.mcpUrl, {
    method: 'POST',
    signal: controller.signal,
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      Authorization: `Bearer ${user.bearer}`,
      ...headers,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 21,
      method: 'tools/call',
      params: { name: 'sleep', arguments: { ms: 400 }, _meta: { progressToken: 'p' } },
    }),
  });
  // Read until the first progress event, note its id, then drop the connection.
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let seen = '';
  let lastEventId: string | undefined;
  while (lastEventId === undefined) {
    const { value } = await reader.read();
    seen += new TextDecoder().decode(value);
    const progress = /id: (\S+)\ndata: \{[^\n]*notifications\/progress/.exec(seen);
    if (progress !== null) lastEventId = progress[1];
  }
  assert.match(seen, /retry: \d+/);
  controller.abort();
  await reader.cancel().catch(() => undefined);
  // The broker lets go of the dropped stream when it sees the connection close; until then it refuses a resumption with 409.
  let resumed: Response | undefined;
  await eventually(async () => {
    resumed = await fetch(broker.mcpUrl, {
      headers: { Accept: 'text/event-stream', Authorization: `Bearer ${user.bearer}`, ...headers, 'Last-Event-ID': lastEventId },
    });
    if (resumed.status !== 409) return true;
    await resumed.body?.cancel();
    return false;
  }, 'the broker let go of the dropped stream');
  assert.ok(resumed !== undefined);
  assert.equal(resumed.status, 200);
  const rest = sseMessages(await resumed.text());
  const final = rest.find((message) => message.id === 21);
  assert.ok(final !== undefined, 'the final response is replayed on the resumed stream');
  assert.match(JSON.stringify(final.result), /slept/);
});

test('idle keep-alive connections stay open 65 s, past the usual 60 s of proxies, so the client closes first', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const headers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
    http
      .get(new URL('/healthz', broker.mcpUrl), { agent }, (res) => {
        res.resume();
        resolve(res.headers);
      })
      .on('error', reject);
  });
  assert.equal(headers.connection, 'keep-alive');
  assert.equal(headers['keep-alive'], 'timeout=65');
});

test("a large result is kept for resumption at its real size, so the store's byte budget applies to it", async (t) => {
  const broker = await startBroker();
  t.after(() => broker.close());
  const { client, transport } = await broker.connect(broker.addUser());
  const bytes = 3 * 1024 * 1024;
  assert.equal(text(await client.callTool({ name: 'big', arguments: { bytes } })).length, bytes);
  const stored = broker.legacy.sessionOf(transport.sessionId as string)?.events.storedBytes ?? 0;
  assert.ok(stored > bytes && stored < bytes + 64 * 1024, `stored ${stored} bytes`);
  await client.close();
});

/** Sends one tools/call on the session over a connection that records every write of the HTTP layer. */
async function recordedCall(t: TestContext, tool: string, args: Record<string, unknown>): Promise<RecordingConnection> {
  const broker = await startBroker();
  t.after(() => broker.close());
  const user = broker.addUser();
  const headers = await session(broker, user);
  const connection = new RecordingConnection();
  t.after(() => connection.destroy());
  broker.running.server.server.emit('connection', connection);
  const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: tool, arguments: args } });
  const head = Object.entries({ ...headers, Authorization: `Bearer ${user.bearer}`, Accept: 'application/json, text/event-stream' })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  connection.send(
    `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${head}\r\n${body}`,
  );
  return connection;
}

const PRIMING = 'id: [^\\n]+\\nretry: \\d+\\ndata: \\n\\n';

test("a POST stream's head leaves with its priming event: a reset cannot hand the client the head and lose the event id it resumes with", async (t) => {
  const connection = await recordedCall(t, 'hang', {});
  await eventually(() => connection.writes.length > 0, 'the stream opened while the call still runs');
  // A stream of unknown length: chunked, the priming event its first chunk.
  const headAndPriming = new RegExp(
    `^HTTP/1\\.1 200 [^]*text/event-stream[^]*transfer-encoding: chunked[^]*\\r\\n\\r\\n[0-9a-f]+\\r\\n${PRIMING}\\r\\n$`,
    'i',
  );
  assert.match(
    connection.writes[0] ?? '',
    headAndPriming,
    `the head and the priming event in one write: ${JSON.stringify(connection.writes)}`,
  );
});

test("a quick answer leaves in one write with its stream's head and priming event, the whole stream with its length", async (t) => {
  const connection = await recordedCall(t, 'echo', { text: 'hi' });
  await eventually(() => connection.writes.join('').includes('"id":7'), 'the answer arrived');
  assert.equal(connection.writes.length, 1, `one write: ${JSON.stringify(connection.writes)}`);
  const [head = '', body = ''] = (connection.writes[0] ?? '').split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200 [^]*text\/event-stream/i);
  assert.doesNotMatch(head, /transfer-encoding/i);
  assert.equal(Number(/content-length: (\d+)/i.exec(head)?.[1]), Buffer.byteLength(body));
  assert.match(body, new RegExp(`^${PRIMING}event: message\\nid: [^\\n]+\\ndata: \\{[^\\n]*"id":7[^\\n]*\\n\\n$`));
});
