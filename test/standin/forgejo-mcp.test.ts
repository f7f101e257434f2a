import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';

const CHILD_SCRIPT = fileURLToPath(new URL('../../src/standin/forgejo-mcp.js', import.meta.url));

interface FakeUser {
  readonly id: number;
  readonly login: string;
}

/** A minimal real HTTP Forgejo: /api/v1/version and /api/v1/user for known tokens. */
async function startFakeForgejo(tokens: Record<string, FakeUser>, versionStatus = 200): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url === '/api/v1/version') {
      res.writeHead(versionStatus, { 'content-type': 'application/json' });
      res.end(versionStatus === 200 ? '{"version":"11.0.0+gitea-1.22.0"}' : '{"message":"broken"}');
      return;
    }
    if (req.url === '/api/v1/user') {
      const token = /^(?:token|bearer) (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const user = token === undefined ? undefined : tokens[token];
      if (user === undefined) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"message":"invalid token"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...user, full_name: user.login, email: `${user.login}@example.test` }));
      return;
    }
    res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function baseEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', ...extra };
}

/** Spawns the child directly (no SDK) to observe its raw stdio and exit. */
function spawnRaw(env: Record<string, string>, args: string[] = ['--transport', 'stdio']): ChildProcess {
  return spawn(process.execPath, [CHILD_SCRIPT, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

async function connectClient(env: Record<string, string>, args: string[] = ['--transport', 'stdio']): Promise<Client> {
  const client = new Client(
    { name: 'standin-test', version: '1.0.0' },
    { capabilities: { elicitation: { form: {} }, sampling: {}, roots: { listChanged: true } } },
  );
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CHILD_SCRIPT, ...args],
    env: { ...getDefaultEnvironment(), ...env },
    stderr: 'ignore',
  });
  await client.connect(transport);
  return client;
}

function firstText(result: Awaited<ReturnType<Client['callTool']>>): string {
  const block = result.content[0];
  assert.ok(block !== undefined && block.type === 'text', 'expected a text content');
  return block.text;
}

const alice: FakeUser = { id: 1, login: 'alice' };
const bob: FakeUser = { id: 2, login: 'bob' };

void test('exits 1 without FORGEJO_URL, with a non-http URL, or when the version check fails', async (t) => {
  const broken = await startFakeForgejo({}, 500);
  t.after(() => closeServer(broken.server));
  const down = await startFakeForgejo({});
  const downUrl = down.url;
  await closeServer(down.server);

  const badEnvironments: Record<string, string>[] = [
    {},
    { FORGEJO_URL: 'not a url' },
    { FORGEJO_URL: 'ftp://127.0.0.1/' },
    { FORGEJO_URL: broken.url },
    { FORGEJO_URL: downUrl },
  ];
  for (const env of badEnvironments) {
    const child = spawnRaw(baseEnv(env));
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    assert.equal(await exitCode(child), 1, `env ${JSON.stringify(env)}`);
    assert.equal(stdout, '', 'nothing on stdout');
  }
});

void test('exits 2 for a transport other than stdio', async (t) => {
  const forge = await startFakeForgejo({});
  t.after(() => closeServer(forge.server));
  const child = spawnRaw(baseEnv({ FORGEJO_URL: forge.url }), ['--transport', 'http']);
  assert.equal(await exitCode(child), 2);
});

void test('get_me returns the user the token belongs to; token_fingerprint identifies the token', async (t) => {
  const forge = await startFakeForgejo({ 'tok-alice': alice, 'tok-bob': bob });
  t.after(() => closeServer(forge.server));

  const client = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: 'tok-alice' });
  t.after(() => client.close());
  assert.deepEqual(JSON.parse(firstText(await client.callTool({ name: 'get_me' }))), { login: 'alice', id: 1 });
  const fingerprint = createHash('sha256').update('tok-alice').digest('hex').slice(0, 12);
  assert.equal(firstText(await client.callTool({ name: 'token_fingerprint' })), fingerprint);
});

void test('flags override the environment, and the GITEA_* names are read', async (t) => {
  const forge = await startFakeForgejo({ 'tok-alice': alice, 'tok-bob': bob });
  t.after(() => closeServer(forge.server));

  const flagged = await connectClient({ FORGEJO_URL: 'http://127.0.0.1:1', FORGEJO_ACCESS_TOKEN: 'tok-alice' }, [
    '--transport',
    'stdio',
    '--url',
    forge.url,
    '--token',
    'tok-bob',
  ]);
  t.after(() => flagged.close());
  assert.equal((JSON.parse(firstText(await flagged.callTool({ name: 'get_me' }))) as FakeUser).login, 'bob');

  const gitea = await connectClient({ GITEA_HOST: forge.url, GITEA_ACCESS_TOKEN: 'tok-alice' });
  t.after(() => gitea.close());
  assert.equal((JSON.parse(firstText(await gitea.callTool({ name: 'get_me' }))) as FakeUser).login, 'alice');
});

void test('get_me is an error result when Forgejo rejects the token', async (t) => {
  const forge = await startFakeForgejo({ 'tok-alice': alice });
  t.after(() => closeServer(forge.server));
  const client = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: 'expired' });
  t.after(() => client.close());
  const result = await client.callTool({ name: 'get_me' });
  assert.equal(result.isError, true);
  assert.match(firstText(result), /401/);
});

void test('stdout carries only JSON-RPC, and the child exits 0 when stdin closes', async (t) => {
  const forge = await startFakeForgejo({ 'tok-alice': alice });
  t.after(() => closeServer(forge.server));
  const child = spawnRaw(baseEnv({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: 'tok-alice' }), [
    '--transport',
    'stdio',
    '--debug',
  ]);
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  const messages = [
    { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 2, method: 'logging/setLevel', params: { level: 'debug' } },
    { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'get_me', arguments: {} } },
    { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'log', arguments: { level: 'info', message: 'hi' } } },
    { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 120 }, _meta: { progressToken: 'p' } } },
  ];
  for (const message of messages) child.stdin?.write(`${JSON.stringify(message)}\n`);

  // Wait for the last response, then close stdin: the child must exit on its own.
  while (!stdout.includes('"id":5')) await once(child.stdout!, 'data');
  child.stdin?.end();
  assert.equal(await exitCode(child), 0);

  const lines = stdout.split('\n').filter((line) => line !== '');
  for (const line of lines) {
    const parsed = JSON.parse(line) as { jsonrpc?: string };
    assert.equal(parsed.jsonrpc, '2.0', line);
  }
  const methods = lines.map((line) => (JSON.parse(line) as { method?: string }).method);
  assert.ok(methods.includes('notifications/message'), 'log notification on stdout');
  assert.ok(methods.includes('notifications/progress'), 'progress notification on stdout');
  assert.match(stderr, /ready/);
});

void test('SIGTERM ends the child cleanly', async (t) => {
  const forge = await startFakeForgejo({});
  t.after(() => closeServer(forge.server));
  const child = spawnRaw(baseEnv({ FORGEJO_URL: forge.url }));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  while (!stderr.includes('ready')) await once(child.stderr!, 'data');
  child.kill('SIGTERM');
  assert.equal(await exitCode(child), 0);
});

void test('crash exits with code 3 without answering', async (t) => {
  const forge = await startFakeForgejo({});
  t.after(() => closeServer(forge.server));
  const child = spawnRaw(baseEnv({ FORGEJO_URL: forge.url }));
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stdin?.write(
    `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })}\n`,
  );
  child.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
  child.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'crash', arguments: {} } })}\n`);
  assert.equal(await exitCode(child), 3);
  assert.ok(!stdout.includes('"id":2'), 'no response to the crash request');
});

void test('server-to-client requests, notifications, resources and prompts work', async (t) => {
  const forge = await startFakeForgejo({});
  t.after(() => closeServer(forge.server));
  const client = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: 'x' });
  t.after(() => client.close());

  client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { answer: '42' } }));
  client.setRequestHandler('sampling/createMessage', () => ({
    role: 'assistant',
    content: { type: 'text', text: 'model says hi' },
    model: 'test-model',
  }));
  client.setRequestHandler('roots/list', () => ({ roots: [{ uri: 'file:///work', name: 'work' }] }));

  assert.deepEqual(JSON.parse(firstText(await client.callTool({ name: 'ask' }))), { action: 'accept', content: { answer: '42' } });
  assert.equal(firstText(await client.callTool({ name: 'sample' })), 'model says hi');
  assert.deepEqual(JSON.parse(firstText(await client.callTool({ name: 'roots' }))), { roots: [{ uri: 'file:///work', name: 'work' }] });
  assert.equal(firstText(await client.callTool({ name: 'echo', arguments: { text: 'hello' } })), 'hello');
  assert.equal(firstText(await client.callTool({ name: 'big', arguments: { bytes: 100_000 } })).length, 100_000);

  const logged: string[] = [];
  client.setNotificationHandler('notifications/message', (notification) => {
    logged.push(String(notification.params.data));
  });
  await client.setLoggingLevel('debug');
  await client.callTool({ name: 'log', arguments: { level: 'warning', message: 'careful' } });
  assert.deepEqual(logged, ['careful']);

  const progress: number[] = [];
  await client.callTool({ name: 'sleep', arguments: { ms: 120 } }, { onprogress: (p) => progress.push(p.progress) });
  assert.ok(progress.length >= 1, 'progress notifications arrive');

  const listChanged = new Promise<void>((resolve) => client.setNotificationHandler('notifications/tools/list_changed', () => resolve()));
  assert.equal(firstText(await client.callTool({ name: 'add_tool', arguments: { name: 'fresh' } })), 'fresh');
  await listChanged;
  assert.ok((await client.listTools()).tools.some((tool) => tool.name === 'fresh'));

  const version = await client.readResource({ uri: 'forgejo://version' });
  assert.match(JSON.stringify(version.contents), /11\.0\.0/);
  const echoed = await client.readResource({ uri: 'forgejo://echo/abc' });
  assert.equal((echoed.contents[0] as { text: string }).text, 'abc');

  const updated = new Promise<string>((resolve) =>
    client.setNotificationHandler('notifications/resources/updated', (notification) => resolve(notification.params.uri)),
  );
  await client.subscribeResource({ uri: 'forgejo://version' });
  assert.equal(firstText(await client.callTool({ name: 'touch', arguments: { uri: 'forgejo://version' } })), 'notified');
  assert.equal(await updated, 'forgejo://version');

  const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
  assert.deepEqual(prompt.messages[0]?.content, { type: 'text', text: 'Hello, Ada!' });

  const pid = Number(firstText(await client.callTool({ name: 'pid' })));
  assert.ok(Number.isInteger(pid) && pid > 0);
});
