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
import { startForgejoStandin, type ForgejoStandin, type ForgejoStandinOptions } from '../../src/standin/forgejo.js';
import { DEMO_TOOL_NAMES } from '../support/forgejo.js';

const CHILD_SCRIPT = fileURLToPath(new URL('../../src/standin/forgejo-mcp.js', import.meta.url));
/** How the broker's tests start the child; the demo starts it with `AS_IN_THE_DEMO`. */
const WITH_TEST_TOOLS = ['--transport', 'stdio', '--test-tools'];
const AS_IN_THE_DEMO = ['--transport', 'stdio'];

const USERS: ForgejoStandinOptions['users'] = [
  { id: 1, login: 'alice', password: 'pw', fullName: 'Alice', email: 'alice@example.test' },
  { id: 2, login: 'bob', password: 'pw', fullName: 'Bob', email: 'bob@example.test' },
];

/** A private repository each, as the demo seeds them: one issue, then one pull request. */
const REPOSITORIES: ForgejoStandinOptions['repositories'] = USERS.map((user) => ({
  owner: user.login,
  name: 'website',
  issues: [{ title: `${user.login}'s first issue`, body: 'seeded' }],
  pullRequests: [{ title: `${user.login}'s first pull request`, head: 'feature' }],
}));

async function startForge(t: { after(fn: () => Promise<void>): void }): Promise<ForgejoStandin> {
  const forgejo = await startForgejoStandin({
    users: USERS,
    repositories: REPOSITORIES,
    applications: [{ clientId: 'broker', clientSecret: 'secret', redirectUris: ['http://127.0.0.1/cb'] }],
  });
  t.after(() => forgejo.close());
  return forgejo;
}

/** A real HTTP server whose /api/v1/version fails, as a broken Forgejo would. */
async function startBrokenForge(): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"message":"broken"}'));
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
function spawnRaw(env: Record<string, string>, args: string[] = WITH_TEST_TOOLS): ChildProcess {
  return spawn(process.execPath, [CHILD_SCRIPT, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

async function connectClient(env: Record<string, string>, args: string[] = WITH_TEST_TOOLS): Promise<Client> {
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

/** A forge tool's answer: the real forgejo-mcp's `{"Result": …}`, unwrapped; fails on an error result. */
async function forgeCall<T>(client: Client, name: string, args: Record<string, unknown>): Promise<T> {
  const result = await client.callTool({ name, arguments: args });
  assert.notEqual(result.isError, true, `${name}: ${firstText(result)}`);
  return (JSON.parse(firstText(result)) as { Result: T }).Result;
}

interface ListedIssue {
  readonly number: number;
  readonly title: string;
  readonly user: { readonly login: string };
  readonly pull_request: unknown;
}

void test('exits 1 without FORGEJO_URL, with a non-http URL, or when the version check fails', async (t) => {
  const broken = await startBrokenForge();
  t.after(() => closeServer(broken.server));
  const down = await startForgejoStandin({ users: [], applications: [] });
  const downUrl = down.url;
  await down.close();

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

void test('exits 2 for a transport other than stdio and http', async (t) => {
  const forge = await startForge(t);
  const child = spawnRaw(baseEnv({ FORGEJO_URL: forge.url }), ['--transport', 'sse']);
  assert.equal(await exitCode(child), 2);
});

void test('get_me returns the user the token belongs to; token_fingerprint identifies the token', async (t) => {
  const forge = await startForge(t);
  const aliceToken = forge.issueTokens('alice').access_token;
  const client = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: aliceToken });
  t.after(() => client.close());
  assert.deepEqual(JSON.parse(firstText(await client.callTool({ name: 'get_me' }))), { login: 'alice', id: 1 });
  const fingerprint = createHash('sha256').update(aliceToken).digest('hex').slice(0, 12);
  assert.equal(firstText(await client.callTool({ name: 'token_fingerprint' })), fingerprint);
});

void test('flags override the environment, and the GITEA_* names are read', async (t) => {
  const forge = await startForge(t);
  const aliceToken = forge.issueTokens('alice').access_token;
  const bobToken = forge.issueTokens('bob').access_token;
  const flagged = await connectClient({ FORGEJO_URL: 'http://127.0.0.1:1', FORGEJO_ACCESS_TOKEN: aliceToken }, [
    '--transport',
    'stdio',
    '--url',
    forge.url,
    '--token',
    bobToken,
  ]);
  t.after(() => flagged.close());
  assert.equal((JSON.parse(firstText(await flagged.callTool({ name: 'get_me' }))) as { login: string }).login, 'bob');

  const gitea = await connectClient({ GITEA_HOST: forge.url, GITEA_ACCESS_TOKEN: aliceToken });
  t.after(() => gitea.close());
  assert.equal((JSON.parse(firstText(await gitea.callTool({ name: 'get_me' }))) as { login: string }).login, 'alice');
});

void test('get_me is an error result when Forgejo rejects the token (the token is read once, at start)', async (t) => {
  const forge = await startForge(t);
  const client = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: forge.issueTokens('alice').access_token });
  t.after(() => client.close());
  assert.equal((JSON.parse(firstText(await client.callTool({ name: 'get_me' }))) as { login: string }).login, 'alice');
  forge.advanceClock(3601);
  const result = await client.callTool({ name: 'get_me' });
  assert.equal(result.isError, true);
  assert.match(firstText(result), /401/);
});

void test('stdout carries only JSON-RPC, and the child exits 0 when stdin closes', async (t) => {
  const forge = await startForge(t);
  const child = spawnRaw(baseEnv({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: forge.issueTokens('alice').access_token }), [
    ...WITH_TEST_TOOLS,
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
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    },
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
  const forge = await startForge(t);
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
  const forge = await startForge(t);
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
  const forge = await startForge(t);
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

void test('as in the demo (no --test-tools) the catalogue is the forge tools alone: no test tools, resources or prompts', async (t) => {
  const forge = await startForge(t);
  const client = await connectClient(
    { FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: forge.issueTokens('alice').access_token },
    AS_IN_THE_DEMO,
  );
  t.after(() => client.close());
  assert.deepEqual((await client.listTools()).tools.map((tool) => tool.name).sort(), DEMO_TOOL_NAMES);
  assert.equal(client.getServerCapabilities()?.resources, undefined);
  assert.equal(client.getServerCapabilities()?.prompts, undefined);
  await assert.rejects(client.callTool({ name: 'crash' }), /Tool crash not found/);

  const withTestTools = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: forge.issueTokens('bob').access_token });
  t.after(() => withTestTools.close());
  const names = (await withTestTools.listTools()).tools.map((tool) => tool.name);
  for (const name of [
    ...DEMO_TOOL_NAMES,
    'crash',
    'hang',
    'big',
    'add_tool',
    'garbage',
    'spawn_grandchild',
    'token_fingerprint',
    'pid',
    'roots',
    'ask',
    'sample',
    'sleep',
  ]) {
    assert.ok(names.includes(name), `--test-tools lacks ${name}`);
  }
  assert.ok(withTestTools.getServerCapabilities()?.resources);
});

void test("the forge tools act on the stand-in Forgejo as the token's user: an issue alice files is hers to see, not bob's", async (t) => {
  const forge = await startForge(t);
  const alice = await connectClient(
    { FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: forge.issueTokens('alice').access_token },
    AS_IN_THE_DEMO,
  );
  t.after(() => alice.close());
  const bob = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: forge.issueTokens('bob').access_token }, AS_IN_THE_DEMO);
  t.after(() => bob.close());

  assert.equal((await forgeCall<{ login: string; email: string }>(alice, 'get_my_user_info', {})).email, 'alice@example.test');
  const repos = await forgeCall<{ full_name: string; private: boolean }[]>(alice, 'list_my_repos', { page: 1, limit: 10 });
  assert.deepEqual(
    repos.map((repo) => [repo.full_name, repo.private]),
    [['alice/website', true]],
  );
  const noPaging = await alice.callTool({ name: 'list_my_repos', arguments: {} });
  assert.equal(noPaging.isError, true, 'page and limit are required, as in the real tool');

  const created = await forgeCall<ListedIssue>(alice, 'create_issue', {
    owner: 'alice',
    repo: 'website',
    title: 'Filed through MCP',
    body: 'hello',
  });
  assert.equal(created.number, 3, 'issues and pull requests share the index: issue 1, pull request 2, then this');
  assert.equal(created.user.login, 'alice');

  const listed = await forgeCall<ListedIssue[]>(alice, 'list_repo_issues', { owner: 'alice', repo: 'website' });
  assert.deepEqual(
    listed.map((issue) => [issue.number, issue.title, issue.pull_request !== null]),
    [
      [3, 'Filed through MCP', false],
      [2, "alice's first pull request", true],
      [1, "alice's first issue", false],
    ],
    'newest first, the pull request included as the real tool lists it',
  );
  assert.equal(
    (await forgeCall<ListedIssue>(alice, 'get_issue_by_index', { owner: 'alice', repo: 'website', index: 3 })).title,
    'Filed through MCP',
  );

  await forgeCall(alice, 'create_issue_comment', { owner: 'alice', repo: 'website', index: 3, body: 'a comment' });
  const comments = await forgeCall<{ body: string; user: { login: string } }[]>(alice, 'list_issue_comments', {
    owner: 'alice',
    repo: 'website',
    index: 3,
  });
  assert.deepEqual(
    comments.map((comment) => [comment.user.login, comment.body]),
    [['alice', 'a comment']],
  );

  const pulls = await forgeCall<{ number: number; head: { ref: string } }[]>(alice, 'list_repo_pull_requests', {
    owner: 'alice',
    repo: 'website',
  });
  assert.deepEqual(
    pulls.map((pull) => [pull.number, pull.head.ref]),
    [[2, 'feature']],
  );
  assert.equal(
    (await forgeCall<{ title: string }>(alice, 'get_pull_request_by_index', { owner: 'alice', repo: 'website', index: 2 })).title,
    "alice's first pull request",
  );

  // Bob sees his own repository without alice's issue, and hers not at all (private: 404).
  const bobsIssues = await forgeCall<ListedIssue[]>(bob, 'list_repo_issues', { owner: 'bob', repo: 'website' });
  assert.ok(!bobsIssues.some((issue) => issue.title === 'Filed through MCP'));
  assert.deepEqual(
    (await forgeCall<{ full_name: string }[]>(bob, 'list_my_repos', { page: 1, limit: 10 })).map((repo) => repo.full_name),
    ['bob/website'],
  );
  const refused = await bob.callTool({ name: 'list_repo_issues', arguments: { owner: 'alice', repo: 'website' } });
  assert.equal(refused.isError, true);
  assert.match(firstText(refused), /^get issues list err: 404 /);
  const filed = await bob.callTool({ name: 'create_issue', arguments: { owner: 'alice', repo: 'website', title: 'from bob' } });
  assert.equal(filed.isError, true);
  assert.equal((await forgeCall<ListedIssue[]>(alice, 'list_repo_issues', { owner: 'alice', repo: 'website' })).length, 3);
});

void test("the forge tools meet Forgejo's granular scopes: a read-only token lists issues and cannot file one", async (t) => {
  const forge = await startForge(t);
  const token = forge.issueTokens('alice', { scope: 'read:user read:issue' }).access_token;
  const client = await connectClient({ FORGEJO_URL: forge.url, FORGEJO_ACCESS_TOKEN: token }, AS_IN_THE_DEMO);
  t.after(() => client.close());
  assert.equal((await forgeCall<ListedIssue[]>(client, 'list_repo_issues', { owner: 'alice', repo: 'website' })).length, 2);
  const refused = await client.callTool({ name: 'create_issue', arguments: { owner: 'alice', repo: 'website', title: 'not allowed' } });
  assert.equal(refused.isError, true);
  assert.match(firstText(refused), /403 .*write:issue/);
  const pulls = await client.callTool({ name: 'list_repo_pull_requests', arguments: { owner: 'alice', repo: 'website' } });
  assert.match(firstText(pulls), /403 .*read:repository/);
});
