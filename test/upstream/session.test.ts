/**
 * UpstreamSession against a recording upstream (node:http, no SDK): what each
 * HTTP request carries, and how answers, refusals and cut streams come back.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/server';
import { silentLogger } from '../../src/log/logger.js';
import type { RawAnswer } from '../../src/pool/raw-answer.js';
import { ExternalUpstream } from '../../src/upstream/endpoint.js';
import { UpstreamSession } from '../../src/upstream/session.js';
import { eventually } from '../support/host.js';

const VERSION = '2025-11-25';

interface Seen {
  readonly method: string;
  readonly rpc: string | undefined;
  readonly authorization: string | undefined;
  readonly sessionId: string | undefined;
  readonly protocolVersion: string | undefined;
}

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

/** What the upstream answers `tools/call` `big` with: 200 KB of text, over SSE and as JSON (`big-json`). */
const BIG_TEXT = 'x'.repeat(200 * 1024);

/**
 * An upstream that records every request; `tools/call` answers over SSE (a
 * notification, then the result, in pieces). A GET stream gets a
 * tools/list_changed at once and stays open.
 */
async function recordingUpstream(
  t: TestContext,
  refuse: (token: string, rpc: string | undefined) => boolean = () => false,
): Promise<{ url: URL; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void bodyOf(req).then((text) => {
      const message = text === '' ? undefined : (JSON.parse(text) as { id?: RequestId; method?: string; params?: { name?: string } });
      const authorization = req.headers.authorization;
      seen.push({
        method: req.method ?? '',
        rpc: message?.method,
        authorization,
        sessionId: req.headers['mcp-session-id'] as string | undefined,
        protocolVersion: req.headers['mcp-protocol-version'] as string | undefined,
      });
      if (refuse(authorization?.replace(/^Bearer /, '') ?? '', message?.method)) return void res.writeHead(401).end();
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        return void res.write('data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
      }
      if (req.method !== 'POST') return void res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
      if (message?.method === 'initialize') {
        const result = { protocolVersion: VERSION, capabilities: {}, serverInfo: { name: 'recording', version: '1' } };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'session-1' });
        return void res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      }
      if (message?.id === undefined) return void res.writeHead(202).end();
      if (message.params?.name === 'big-json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(bigAnswer(message.id));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (message.params?.name === 'big') return void res.end(`data: ${bigAnswer(message.id)}\n\n`);
      res.write(`event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\n\n`);
      if (message.params?.name === 'cut') return void res.destroy();
      const answer = JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: 'ok' }] } });
      res.write(`data: ${answer.slice(0, 10)}`);
      setImmediate(() => res.end(`${answer.slice(10)}\n\n`));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`), seen };
}

function bigAnswer(id: RequestId): string {
  return JSON.stringify({ result: { content: [{ type: 'text', text: BIG_TEXT }] }, jsonrpc: '2.0', id });
}

/** A session whose messages are collected; `answer(id)` resolves with the response to a request. */
function openSession(url: URL, token: string, refused: (token: string) => Promise<string> = () => Promise.reject(new Error('refused'))) {
  const session = new UpstreamSession({
    endpoint: new ExternalUpstream(url, 1_000),
    token,
    refused,
    log: silentLogger(),
    stopTimeoutMs: 1_000,
  });
  const received: JSONRPCMessage[] = [];
  const waiting = new Map<RequestId, (message: JSONRPCMessage) => void>();
  session.onmessage = (message) => {
    received.push(message);
    if ('id' in message && !('method' in message) && message.id !== undefined) waiting.get(message.id)?.(message);
  };
  const call = (id: number, name = 'echo'): Promise<JSONRPCMessage> => {
    const answered = new Promise<JSONRPCMessage>((resolve) => waiting.set(id, resolve));
    session.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
    return answered;
  };
  const initialize = async (capabilities: Record<string, object> = {}): Promise<void> => {
    const answered = new Promise<JSONRPCMessage>((resolve) => waiting.set(0, resolve));
    session.send({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: VERSION, capabilities, clientInfo: { name: 'test', version: '1' } },
    });
    await answered;
    session.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  };
  return { session, received, call, initialize };
}

test('every request carries the token the session holds at that moment, the session id and the protocol version', async (t) => {
  const { url, seen } = await recordingUpstream(t);
  const { session, call, initialize, received } = openSession(url, 'first');
  await initialize();
  assert.equal(((await call(1)) as { result?: unknown }).result !== undefined, true);
  session.useToken('second');
  await call(2);
  await session.stop();

  const posts = seen.filter((one) => one.rpc === 'tools/call');
  assert.deepEqual(
    posts.map((one) => [one.authorization, one.sessionId, one.protocolVersion]),
    [
      ['Bearer first', 'session-1', VERSION],
      ['Bearer second', 'session-1', VERSION],
    ],
  );
  assert.deepEqual(
    seen.filter((one) => one.authorization === undefined),
    [],
    'no request without a token',
  );
  assert.equal(seen.find((one) => one.method === 'DELETE')?.authorization, 'Bearer second');
  assert.equal(received.filter((message) => 'method' in message && message.method === 'notifications/progress').length, 2);
});

test('a 401 asks for a new token once and sends the request again with it', async (t) => {
  const { url, seen } = await recordingUpstream(t, (token, rpc) => token === 'stale' && rpc === 'tools/call');
  const asked: string[] = [];
  const { session, call, initialize } = openSession(url, 'first', (token) => {
    asked.push(token);
    return Promise.resolve('fresh');
  });
  t.after(() => session.stop());
  await initialize();
  await call(1);
  session.useToken('stale');
  const answer = await call(2);
  assert.ok('result' in answer);
  assert.deepEqual(asked, ['stale']);
  assert.deepEqual(
    seen.filter((one) => one.rpc === 'tools/call').map((one) => one.authorization),
    ['Bearer first', 'Bearer stale', 'Bearer fresh'],
  );
});

test('a response stream cut before its answer fails that request only', async (t) => {
  const { url } = await recordingUpstream(t);
  const { session, call, initialize } = openSession(url, 'first');
  t.after(() => session.stop());
  await initialize();
  const cut = await call(1, 'cut');
  assert.match((cut as { error?: { message: string } }).error?.message ?? '', /before it answered/);
  assert.ok('result' in (await call(2)));
});

test('a session holds no GET stream until someone listens; listen() resolves once it is open, and what it carries arrives', async (t) => {
  const { url, seen } = await recordingUpstream(t);
  const { session, call, initialize, received } = openSession(url, 'first');
  t.after(() => session.stop());
  await initialize();
  await call(1);
  assert.deepEqual(
    seen.filter((one) => one.method === 'GET'),
    [],
    'no GET stream for a session nobody listens to',
  );

  const changed = new Promise<void>((resolve) => {
    const onmessage = session.onmessage;
    session.onmessage = (message, length) => {
      onmessage?.(message, length);
      if ('method' in message && message.method === 'notifications/tools/list_changed') resolve();
    };
  });
  await session.listen();
  assert.deepEqual(
    seen.filter((one) => one.method === 'GET').map((one) => [one.authorization, one.sessionId, one.protocolVersion]),
    [['Bearer first', 'session-1', VERSION]],
    "the GET stream is open when listen() resolves, with the session's token and headers",
  );
  await changed;
  await session.listen();
  assert.equal(seen.filter((one) => one.method === 'GET').length, 1, 'one GET stream per upstream session');
  assert.equal(received.filter((message) => 'method' in message && message.method === 'notifications/tools/list_changed').length, 1);
});

test('a session whose client can be asked something (elicitation) holds the GET stream from its handshake: a request the upstream sends there before the client listens is not lost', async (t) => {
  const { url, seen } = await recordingUpstream(t);
  const { session, initialize } = openSession(url, 'first');
  t.after(() => session.stop());
  await initialize({ elicitation: {} });
  await eventually(() => seen.some((one) => one.method === 'GET'), 'the GET stream opened with no listen()');
  assert.deepEqual(
    seen.filter((one) => one.method === 'GET').map((one) => [one.sessionId, one.protocolVersion]),
    [['session-1', VERSION]],
  );
});

test("a large answer passes on as the upstream's bytes, over SSE or as JSON: only the id is rewritten, nothing is parsed", async (t) => {
  const { url } = await recordingUpstream(t);
  const { session, call, initialize } = openSession(url, 'first');
  t.after(() => session.stop());
  await initialize();
  const answers: RawAnswer[] = [];
  let answered: (() => void) | undefined;
  session.onanswer = (answer) => {
    answers.push(answer);
    answered?.();
  };
  for (const [id, name] of [
    [7, 'big'],
    [8, 'big-json'],
  ] as const) {
    const arrived = new Promise<void>((resolve) => (answered = resolve));
    session.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
    await arrived;
    const answer = answers.at(-1) as RawAnswer;
    assert.equal(answer.id, id);
    assert.equal(
      Buffer.concat(answer.bytes('client-1')).toString(),
      bigAnswer('client-1'),
      `${name}: the upstream's bytes, the id renamed`,
    );
  }
  assert.ok('result' in (await call(9)), 'a small answer still arrives parsed');
});
