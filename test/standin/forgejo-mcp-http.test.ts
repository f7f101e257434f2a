import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startForgejoStandin, type ForgejoStandin } from '../../src/standin/forgejo.js';
import { tokenFingerprint } from '../support/forgejo.js';
import { text } from '../support/mcp-clients.js';

const CHILD_SCRIPT = fileURLToPath(new URL('../../src/standin/forgejo-mcp.js', import.meta.url));
const HTTP_MODE = ['--transport', 'http', '--http-port', '0', '--test-tools'];
const LISTENING = /forgejo-mcp: listening on (http:\/\/\S+\/mcp)\n/;
const PROTOCOL_VERSION = '2025-11-25';
const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

interface Stats {
  readonly refusedMissingAuthorization: number;
  readonly refusedMalformedAuthorization: number;
  readonly requests: number;
  readonly sessions: number;
  readonly tokensSeen: readonly string[];
}

async function startForge(t: { after(fn: () => Promise<void>): void }): Promise<ForgejoStandin> {
  const forgejo = await startForgejoStandin({
    users: [
      { id: 1, login: 'alice', password: 'pw', fullName: 'Alice', email: 'alice@example.test' },
      { id: 2, login: 'bob', password: 'pw', fullName: 'Bob', email: 'bob@example.test' },
    ],
    applications: [{ clientId: 'broker', clientSecret: 'secret', redirectUris: ['http://127.0.0.1/cb'] }],
  });
  t.after(() => forgejo.close());
  return forgejo;
}

/** The stand-in in HTTP mode as a process of its own, on a port it picks and reports on stderr. */
class HttpStandin {
  private constructor(
    readonly child: ChildProcess,
    readonly url: URL,
  ) {}

  static async start(
    t: { after(fn: () => Promise<void>): void },
    forge: ForgejoStandin,
    options: { args?: string[]; env?: Record<string, string> } = {},
  ): Promise<HttpStandin> {
    const child = spawn(process.execPath, [CHILD_SCRIPT, ...HTTP_MODE, ...(options.args ?? [])], {
      env: { PATH: process.env.PATH ?? '', FORGEJO_URL: forge.url, ...options.env },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    t.after(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    const exited = once(child, 'exit').then(() => true);
    while (!LISTENING.test(stderr)) {
      const exitedFirst = await Promise.race([once(child.stderr, 'data').then(() => false), exited]);
      if (exitedFirst) throw new Error(`the stand-in exited before listening:\n${stderr}`);
    }
    return new HttpStandin(child, new URL((LISTENING.exec(stderr) as RegExpExecArray)[1] as string));
  }

  async stats(): Promise<Stats> {
    return (await (await fetch(new URL('/stats', this.url))).json()) as Stats;
  }

  async exitCode(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const [code] = (await once(this.child, 'exit')) as [number | null];
    return code;
  }
}

/** An SDK client whose every request carries `authorization()` as its Authorization header (none when undefined). */
async function connect(
  url: URL,
  authorization: () => string | undefined,
  mode: 'legacy' | 'auto' = 'legacy',
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(url, {
    fetch: (input, init) => {
      const headers = new Headers(init?.headers);
      const value = authorization();
      if (value === undefined) headers.delete('authorization');
      else headers.set('authorization', value);
      return fetch(input, { ...init, headers });
    },
  });
  const client = new Client({ name: 'standin-http-test', version: '1.0.0' }, { versionNegotiation: { mode } });
  await client.connect(transport);
  return { client, transport };
}

async function getMe(client: Client): Promise<string> {
  const result = await client.callTool({ name: 'get_me', arguments: {} });
  assert.notEqual(result.isError, true, text(result));
  return (JSON.parse(text(result)) as { login: string }).login;
}

async function fingerprint(client: Client): Promise<string> {
  return text(await client.callTool({ name: 'token_fingerprint', arguments: {} }));
}

interface RawAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** One request through node:http, which sends the Host and Origin it is given. */
async function raw(
  url: URL,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: unknown },
): Promise<RawAnswer> {
  const req = httpRequest({
    host: url.hostname,
    port: url.port,
    method: options.method ?? 'GET',
    path: options.path ?? url.pathname,
    headers: options.headers,
  });
  req.end(options.body === undefined ? undefined : JSON.stringify(options.body));
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
  res.setEncoding('utf8');
  let body = '';
  for await (const chunk of res) body += chunk as string;
  return { status: res.statusCode ?? 0, headers: res.headers, body };
}

/** A JSON-RPC POST to /mcp as an SDK client would send it. */
function mcpPost(url: URL, message: unknown, headers: Record<string, string>): Promise<RawAnswer> {
  return raw(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: message,
  });
}

/** A session opened by hand: initialize and initialized with `authorization`; its id. */
async function openSession(url: URL, authorization: string): Promise<string> {
  const opened = await mcpPost(url, INITIALIZE, { authorization });
  assert.equal(opened.status, 200, opened.body);
  const sessionId = opened.headers['mcp-session-id'] as string;
  const initialized = await mcpPost(
    url,
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { authorization, 'mcp-session-id': sessionId },
  );
  assert.equal(initialized.status, 202);
  return sessionId;
}

const callTool = (id: number, name: string, args: Record<string, unknown> = {}, meta?: Record<string, unknown>): unknown => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, ...(meta === undefined ? {} : { _meta: meta }) },
});

void test('accepts "Bearer" and "token", scheme case-insensitive; the request acts as its token\'s user', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const token = forge.issueTokens('alice').access_token;
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'token', 'Token', 'TOKEN']) {
    const { client } = await connect(standin.url, () => `${scheme} ${token}`);
    t.after(() => client.close());
    assert.equal(await getMe(client), 'alice', scheme);
    assert.equal(await fingerprint(client), tokenFingerprint(token));
  }
  const stats = await standin.stats();
  assert.equal(stats.refusedMissingAuthorization, 0);
  assert.equal(stats.refusedMalformedAuthorization, 0);
  assert.deepEqual(stats.tokensSeen, [tokenFingerprint(token)]);
  assert.ok(stats.requests > 0);
});

void test('a bare token, another scheme, an empty token or no header is a 401 with WWW-Authenticate: Bearer, counted in /stats', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const token = forge.issueTokens('alice').access_token;

  for (const authorization of [token, `Basic ${token}`, 'Bearer', 'Bearer ', 'token  ', `Bearer ${token} extra`, '']) {
    const refused = await mcpPost(standin.url, INITIALIZE, { authorization });
    assert.equal(refused.status, 401, JSON.stringify(authorization));
    assert.equal(refused.headers['www-authenticate'], 'Bearer');
    assert.match(refused.headers['content-type'] ?? '', /^application\/json/);
    assert.equal((JSON.parse(refused.body) as { error: string }).error, 'unauthorized');
  }
  const missing = await mcpPost(standin.url, INITIALIZE, {});
  assert.equal(missing.status, 401);
  assert.equal(missing.headers['www-authenticate'], 'Bearer');

  // GET and DELETE of a real session need the header too.
  const sessionId = await openSession(standin.url, `Bearer ${token}`);
  const stream = await raw(standin.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId } });
  assert.equal(stream.status, 401);
  const deleted = await raw(standin.url, { method: 'DELETE', headers: { 'mcp-session-id': sessionId, authorization: token } });
  assert.equal(deleted.status, 401);

  await assert.rejects(connect(standin.url, () => undefined));

  const stats = await standin.stats();
  assert.equal(stats.refusedMalformedAuthorization, 8);
  assert.equal(stats.refusedMissingAuthorization, 3, 'the POST, the GET, and the SDK client without a header');
  assert.deepEqual(stats.tokensSeen, [tokenFingerprint(token)], 'refused tokens are not seen');
  assert.equal(stats.sessions, 1, 'the refused DELETE left the session');
});

void test('a request without the header acts as the operator only with --allow-operator-token-fallback and a token of its own', async (t) => {
  const forge = await startForge(t);
  const aliceToken = forge.issueTokens('alice').access_token;
  const bobToken = forge.issueTokens('bob').access_token;

  const tokenWithoutFlag = await HttpStandin.start(t, forge, { env: { FORGEJO_ACCESS_TOKEN: aliceToken } });
  assert.equal((await mcpPost(tokenWithoutFlag.url, INITIALIZE, {})).status, 401);
  const flagWithoutToken = await HttpStandin.start(t, forge, { args: ['--allow-operator-token-fallback'] });
  assert.equal((await mcpPost(flagWithoutToken.url, INITIALIZE, {})).status, 401);

  const withFallback = await HttpStandin.start(t, forge, { args: ['--allow-operator-token-fallback', '--token', bobToken] });
  const operator = await connect(withFallback.url, () => undefined);
  t.after(() => operator.client.close());
  assert.equal(await getMe(operator.client), 'bob');
  const alice = await connect(withFallback.url, () => `Bearer ${aliceToken}`);
  t.after(() => alice.client.close());
  assert.equal(await getMe(alice.client), 'alice', 'a header still wins');
  assert.equal((await withFallback.stats()).refusedMissingAuthorization, 0);

  const fromEnvironment = await HttpStandin.start(t, forge, {
    args: ['--allow-operator-token-fallback'],
    env: { GITEA_ACCESS_TOKEN: aliceToken },
  });
  const viaEnvironment = await connect(fromEnvironment.url, () => undefined);
  t.after(() => viaEnvironment.client.close());
  assert.equal(await getMe(viaEnvironment.client), 'alice');
});

void test('two clients with different tokens on one server each see their own user', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const aliceToken = forge.issueTokens('alice').access_token;
  const bobToken = forge.issueTokens('bob').access_token;
  const alice = await connect(standin.url, () => `Bearer ${aliceToken}`);
  t.after(() => alice.client.close());
  const bob = await connect(standin.url, () => `token ${bobToken}`);
  t.after(() => bob.client.close());

  const [aliceLogin, bobLogin, aliceFingerprint, bobFingerprint] = await Promise.all([
    getMe(alice.client),
    getMe(bob.client),
    fingerprint(alice.client),
    fingerprint(bob.client),
  ]);
  assert.deepEqual([aliceLogin, bobLogin], ['alice', 'bob']);
  assert.deepEqual([aliceFingerprint, bobFingerprint], [tokenFingerprint(aliceToken), tokenFingerprint(bobToken)]);
  assert.notEqual(alice.transport.sessionId, bob.transport.sessionId);
  const stats = await standin.stats();
  assert.equal(stats.sessions, 2);
  assert.deepEqual([...stats.tokensSeen].sort(), [tokenFingerprint(aliceToken), tokenFingerprint(bobToken)].sort());
});

void test('a token change mid-session is honoured from the next request on, in the same session', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const first = forge.issueTokens('alice').access_token;
  const second = forge.issueTokens('alice').access_token;
  const bobs = forge.issueTokens('bob').access_token;
  let current = first;
  const { client, transport } = await connect(standin.url, () => `Bearer ${current}`);
  t.after(() => client.close());
  const sessionId = transport.sessionId;
  assert.equal(await fingerprint(client), tokenFingerprint(first));

  current = second;
  assert.equal(await fingerprint(client), tokenFingerprint(second));
  assert.equal(await getMe(client), 'alice');
  current = bobs;
  assert.equal(await getMe(client), 'bob', 'nothing of the earlier token is cached');
  assert.equal(transport.sessionId, sessionId);
  assert.deepEqual((await standin.stats()).tokensSeen, [first, second, bobs].map(tokenFingerprint));
});

void test('Host must be a loopback name or an allowed host, and an Origin must be allowed: otherwise 403', async (t) => {
  const forge = await startForge(t);
  const token = forge.issueTokens('alice').access_token;
  const plain = await HttpStandin.start(t, forge);
  const port = plain.url.port;
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST']) {
    assert.equal((await raw(plain.url, { path: '/stats', headers: { host } })).status, 200, host);
  }
  for (const host of ['evil.example', `evil.example:${port}`, `localhost.evil.example:${port}`]) {
    assert.equal((await raw(plain.url, { path: '/stats', headers: { host } })).status, 403, host);
    assert.equal((await mcpPost(plain.url, INITIALIZE, { host, authorization: `Bearer ${token}` })).status, 403, host);
  }
  const fromBrowser = await mcpPost(plain.url, INITIALIZE, { origin: 'http://localhost:3000', authorization: `Bearer ${token}` });
  assert.equal(fromBrowser.status, 403);
  assert.equal((await raw(plain.url, { path: '/stats', headers: { origin: 'http://localhost:3000' } })).status, 403);

  const configured = await HttpStandin.start(t, forge, {
    args: ['--allowed-hosts', 'mcp.internal,upstream.example:8081', '--allowed-origins', 'http://localhost:3000'],
  });
  const allowed = async (headers: Record<string, string>): Promise<number> =>
    (await mcpPost(configured.url, INITIALIZE, { authorization: `Bearer ${token}`, ...headers })).status;
  assert.equal(await allowed({ host: 'mcp.internal' }), 200);
  assert.equal(await allowed({ host: 'mcp.internal:9999' }), 200, 'a name without a port allows any port');
  assert.equal(await allowed({ host: 'upstream.example:8081' }), 200);
  assert.equal(await allowed({ host: 'upstream.example:8082' }), 403, 'a name with a port allows that port only');
  assert.equal(await allowed({ host: `localhost:${configured.url.port}` }), 200, 'loopback names stay allowed');
  assert.equal(await allowed({ origin: 'http://localhost:3000' }), 200);
  assert.equal(await allowed({ origin: 'http://localhost:3001' }), 403);
});

void test('sessions: an unknown id is a 404, DELETE ends a session, and each session keeps its own runtime tools', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const authorization = `Bearer ${forge.issueTokens('alice').access_token}`;

  const unknown = await mcpPost(standin.url, callTool(2, 'echo', { text: 'x' }), { authorization, 'mcp-session-id': 'no-such-session' });
  assert.equal(unknown.status, 404);
  const withoutId = await mcpPost(standin.url, callTool(2, 'echo', { text: 'x' }), { authorization });
  assert.equal(withoutId.status, 400, 'a request other than initialize needs a session');
  assert.equal((await standin.stats()).sessions, 0, 'a refused request opens no session');

  const first = await connect(standin.url, () => authorization);
  t.after(() => first.client.close());
  const second = await connect(standin.url, () => authorization);
  t.after(() => second.client.close());
  assert.equal(text(await first.client.callTool({ name: 'add_tool', arguments: { name: 'only_in_first' } })), 'only_in_first');
  assert.ok((await first.client.listTools()).tools.some((tool) => tool.name === 'only_in_first'));
  assert.ok(!(await second.client.listTools()).tools.some((tool) => tool.name === 'only_in_first'));
  assert.equal((await standin.stats()).sessions, 2);

  const ended = first.transport.sessionId as string;
  await first.transport.terminateSession();
  assert.equal((await standin.stats()).sessions, 1);
  const afterDelete = await mcpPost(standin.url, callTool(3, 'echo', { text: 'x' }), {
    authorization,
    'mcp-session-id': ended,
    'mcp-protocol-version': PROTOCOL_VERSION,
  });
  assert.equal(afterDelete.status, 404);
  assert.equal(text(await second.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
});

void test('it speaks up to 2025-11-25, not 2026-07-28: a client negotiating automatically falls back to initialize', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const authorization = `Bearer ${forge.issueTokens('alice').access_token}`;
  const sessionId = await openSession(standin.url, authorization);
  const modern = await mcpPost(standin.url, callTool(2, 'echo', { text: 'x' }), {
    authorization,
    'mcp-session-id': sessionId,
    'mcp-protocol-version': '2026-07-28',
  });
  assert.equal(modern.status, 400);
  assert.match(modern.body, /Unsupported protocol version/);

  const { client } = await connect(standin.url, () => authorization, 'auto');
  t.after(() => client.close());
  assert.equal(client.getNegotiatedProtocolVersion(), PROTOCOL_VERSION);
  assert.equal(await getMe(client), 'alice');
});

void test('--stateless: no session id, each POST served on its own, GET and DELETE are 405', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge, { args: ['--stateless'] });
  const aliceToken = forge.issueTokens('alice').access_token;
  const bobToken = forge.issueTokens('bob').access_token;

  const initialized = await mcpPost(standin.url, INITIALIZE, { authorization: `Bearer ${aliceToken}` });
  assert.equal(initialized.status, 200);
  assert.equal(initialized.headers['mcp-session-id'], undefined);
  const stream = await raw(standin.url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${aliceToken}` } });
  assert.equal(stream.status, 405);
  assert.equal((await raw(standin.url, { method: 'DELETE', headers: { authorization: `Bearer ${aliceToken}` } })).status, 405);

  let current = aliceToken;
  const { client, transport } = await connect(standin.url, () => `Bearer ${current}`);
  t.after(() => client.close());
  assert.equal(transport.sessionId, undefined);
  assert.equal(await getMe(client), 'alice');
  current = bobToken;
  assert.equal(await getMe(client), 'bob');
  const stats = await standin.stats();
  assert.equal(stats.sessions, 0);
  assert.equal(stats.refusedMissingAuthorization + stats.refusedMalformedAuthorization, 0);
});

void test('every response is cut at the write deadline: a long call, a streaming call and the GET stream; the session carries on', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge, { args: ['--write-timeout-ms', '1000'] });
  const authorization = `Bearer ${forge.issueTokens('alice').access_token}`;
  const sessionId = await openSession(standin.url, authorization);
  const headers = { authorization, 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL_VERSION };

  // Nothing written before the deadline: the request ends without any response.
  await assert.rejects(mcpPost(standin.url, callTool(2, 'sleep', { ms: 600_000 }), headers), /socket hang up|ECONNRESET/);

  // Progress first: the SSE response has begun, and is cut mid-stream.
  const streaming = await fetch(standin.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(callTool(3, 'sleep', { ms: 600_000 }, { progressToken: 'p' })),
  });
  assert.equal(streaming.status, 200);
  await assert.rejects(streaming.text(), /terminated/);

  const getStream = await fetch(standin.url, { headers: { accept: 'text/event-stream', ...headers } });
  assert.equal(getStream.status, 200);
  await assert.rejects(getStream.text(), /terminated/);

  const after = await mcpPost(standin.url, callTool(4, 'echo', { text: 'after the cuts' }), headers);
  assert.equal(after.status, 200);
  assert.match(after.body, /after the cuts/);
  assert.equal(standin.child.exitCode, null);
});

void test('Forgejo refusing the token (401) answers that HTTP request 401 invalid_token; other calls and a new token carry on', async (t) => {
  const forge = await startForge(t);
  const standin = await HttpStandin.start(t, forge);
  const authorization = `Bearer ${forge.issueTokens('alice').access_token}`;
  const sessionId = await openSession(standin.url, authorization);
  const headers = { authorization, 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL_VERSION };
  assert.equal((await mcpPost(standin.url, callTool(2, 'get_me'), headers)).status, 200);

  forge.advanceClock(3601);
  for (const [id, tool] of [
    [3, 'get_me'],
    [4, 'get_my_user_info'],
  ] as const) {
    const refused = await mcpPost(standin.url, callTool(id, tool), headers);
    assert.equal(refused.status, 401, tool);
    assert.equal(refused.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.equal((JSON.parse(refused.body) as { error: string }).error, 'invalid_token');
  }
  const untouched = await mcpPost(standin.url, callTool(5, 'echo', { text: 'no Forgejo call' }), headers);
  assert.equal(untouched.status, 200, 'a call that does not reach Forgejo is answered');

  const renewed = `Bearer ${forge.issueTokens('alice').access_token}`;
  const again = await mcpPost(standin.url, callTool(6, 'get_me'), { ...headers, authorization: renewed });
  assert.equal(again.status, 200);
  assert.match(again.body, /alice/);
  const stats = await standin.stats();
  assert.equal(stats.refusedMissingAuthorization + stats.refusedMalformedAuthorization, 0, 'Forgejo refusals are not header refusals');
});

void test('exits 1 when the version check fails; never reads stdin; SIGTERM and SIGINT end it with 0, its streams with it', async (t) => {
  const down = await startForgejoStandin({ users: [], applications: [] });
  const downUrl = down.url;
  await down.close();
  const failing = spawn(process.execPath, [CHILD_SCRIPT, ...HTTP_MODE], {
    env: { PATH: process.env.PATH ?? '', FORGEJO_URL: downUrl },
    stdio: 'ignore',
  });
  const [failingCode] = (await once(failing, 'exit')) as [number | null];
  assert.equal(failingCode, 1);

  const forge = await startForge(t);
  const authorization = `Bearer ${forge.issueTokens('alice').access_token}`;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const standin = await HttpStandin.start(t, forge);
    standin.child.stdin?.end();
    const sessionId = await openSession(standin.url, authorization);
    const stream = await fetch(standin.url, {
      headers: { accept: 'text/event-stream', authorization, 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL_VERSION },
    });
    assert.equal(stream.status, 200, 'served with stdin closed');
    const streamEnded = stream.text().then(
      () => 'ended',
      () => 'cut',
    );
    standin.child.kill(signal);
    assert.equal(await standin.exitCode(), 0, signal);
    assert.ok(['ended', 'cut'].includes(await streamEnded));
  }
});

void test('bad flags exit 2', async (t) => {
  const forge = await startForge(t);
  for (const args of [
    ['--http-port', 'eighty'],
    ['--http-port', '70000'],
    ['--write-timeout-ms', '0'],
  ]) {
    const child = spawn(process.execPath, [CHILD_SCRIPT, ...HTTP_MODE, ...args], {
      env: { PATH: process.env.PATH ?? '', FORGEJO_URL: forge.url },
      stdio: 'ignore',
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 2, args.join(' '));
  }
});
