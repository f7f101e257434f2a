/**
 * The tool policy: a denied tool is absent from tools/list and refused on
 * call in both eras (and recorded as refused); the read-only preset hides
 * every write tool of the stand-in's catalogue; a per-team rule of the
 * policy file applies to a team member and not to another user; a bad file
 * stops the start; SIGHUP reloads it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client, ProtocolError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ConfigError } from '../../src/config/config.js';
import { JsonRpcCode } from '../../src/errors/jsonrpc-codes.js';
import { globMatcher } from '../../src/policy/glob.js';
import { loadPolicyFile } from '../../src/policy/policy-file.js';
import { READ_ONLY_TOOLS } from '../../src/policy/read-only.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { auditJson } from '../support/audit.js';
import { startBroker, type TestBroker, type TestUser } from '../support/brokers.js';
import { DEMO_TOOL_NAMES } from '../support/forgejo.js';
import { eventually, freshDataDirs } from '../support/host.js';

const dataDir = freshDataDirs('broker-policy-');

async function connectIn(url: URL, bearer: string, era: 'legacy' | 'modern'): Promise<Client> {
  const client = new Client(
    { name: `policy-${era}`, version: '1.0.0' },
    { versionNegotiation: { mode: era === 'modern' ? 'auto' : 'legacy' } },
  );
  await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${bearer}` } } }));
  return client;
}

function connect(broker: TestBroker, user: TestUser, era: 'legacy' | 'modern'): Promise<Client> {
  return connectIn(broker.mcpUrl, user.bearer, era);
}

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((tool) => tool.name).sort();
}

/** The JSON-RPC error a call ends with. */
async function refusal(call: Promise<unknown>): Promise<{ code: number; message: string; data: unknown }> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ProtocolError) return { code: error.code, message: error.message, data: error.data };
    throw error;
  }
  assert.fail('the call was not refused');
}

test('globs: * is any run, ? one character, the rest literal; a name must match whole', () => {
  const match = globMatcher(['create_*', 'get_?e', 'a.b']);
  assert.ok(match('create_issue'));
  assert.ok(match('get_me'));
  assert.ok(match('a.b'));
  assert.ok(!match('xcreate_issue'));
  assert.ok(!match('get_mee'));
  assert.ok(!match('aXb'));
});

test('the read-only preset names reads only: every name reads by its verb', () => {
  for (const name of READ_ONLY_TOOLS) assert.match(name, /^(get|list|search|check|download)_/, name);
});

for (const era of ['legacy', 'modern'] as const) {
  test(`${era} era: a denied tool is absent from tools/list, refused on call with the policy named, and recorded as refused`, async (t) => {
    const store = await openSqliteStore({ dataDir: dataDir(), encryptionKey: randomBytes(32) });
    const broker = await startBroker({ auditStore: store, policy: { deny: ['create_*', 'echo'] } });
    t.after(async () => {
      await broker.close();
      await store.close();
    });
    const user = broker.addUser('alice');
    const client = await connect(broker, user, era);
    const names = await toolNames(client);
    assert.ok(names.includes('get_me'));
    for (const hidden of ['create_issue', 'create_issue_comment', 'echo']) assert.ok(!names.includes(hidden), hidden);
    const error = await refusal(client.callTool({ name: 'echo', arguments: { text: 'no' } }));
    assert.equal(error.code, JsonRpcCode.refusedByPolicy);
    assert.match(error.message, /BROKER_TOOLS_DENY/);
    assert.deepEqual(error.data, { policy: 'BROKER_TOOLS_DENY', name: 'echo' });
    await client.close();
    await eventually(async () => (await auditJson(store)).length === 1, 'the refusal recorded');
    const [entry] = await auditJson(store);
    assert.equal(entry?.outcome, 'refused');
    assert.equal(entry?.tool, 'echo');
    assert.equal(entry?.detail, 'BROKER_TOOLS_DENY');
    const metrics = (await broker.metrics.render()).body;
    assert.match(metrics, /forgejo_mcp_broker_tool_calls_refused_total\{policy="BROKER_TOOLS_DENY"\} 1/);
    assert.match(metrics, new RegExp(`forgejo_mcp_broker_tool_calls_total\\{tool="echo",outcome="refused",era="${era}"\\} 1`));
  });

  test(`${era} era: the read-only preset hides every write tool of the stand-in's catalogue and keeps its reads`, async (t) => {
    const broker = await startBroker({ policy: { preset: 'read-only' } });
    t.after(() => broker.close());
    const client = await connect(broker, broker.addUser(), era);
    const names = await toolNames(client);
    const writes = ['create_issue', 'create_issue_comment'];
    assert.deepEqual(
      names,
      DEMO_TOOL_NAMES.filter((name) => READ_ONLY_TOOLS.has(name)),
    );
    for (const write of writes) assert.ok(DEMO_TOOL_NAMES.includes(write) && !names.includes(write), write);
    const error = await refusal(client.callTool({ name: 'create_issue', arguments: { owner: 'a', repo: 'b', title: 'c' } }));
    assert.match(error.message, /BROKER_TOOLS_PRESET=read-only/);
    await client.close();
  });
}

test('prompts are filtered only when BROKER_POLICY_APPLIES_TO lists them', async (t) => {
  const broker = await startBroker({ policy: { deny: ['greet'], appliesTo: ['tools', 'prompts'] } });
  t.after(() => broker.close());
  const client = await connect(broker, broker.addUser(), 'legacy');
  assert.deepEqual((await client.listPrompts()).prompts, []);
  const error = await refusal(client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } }));
  assert.match(error.message, /Prompt "greet"/);
  await client.close();
});

test('a per-team rule applies to a member of the team and not to another user', async (t) => {
  const file = join(dataDir(), '..', `policy-${randomBytes(4).toString('hex')}.json`);
  await writeFile(
    file,
    JSON.stringify({
      default: { preset: 'read-only' },
      rules: [{ name: 'maintainers', teams: ['acme/maintainers'], deny: ['crash'] }],
    }),
  );
  const broker = await startBroker({ policy: { file } });
  t.after(() => broker.close());
  const member = broker.addUser('mia', [{ org: 'acme', team: 'maintainers' }]);
  const other = broker.addUser('otto', [{ org: 'acme', team: 'readers' }]);
  const memberClient = await connect(broker, member, 'legacy');
  const otherClient = await connect(broker, other, 'modern');
  const memberTools = await toolNames(memberClient);
  assert.ok(memberTools.includes('create_issue'), 'the team rule lets its members write');
  assert.ok(!memberTools.includes('crash'), "and applies the team rule's own deny");
  assert.ok(!(await toolNames(otherClient)).includes('create_issue'), 'everyone else is read-only');
  const error = await refusal(otherClient.callTool({ name: 'create_issue', arguments: { owner: 'a', repo: 'b', title: 'c' } }));
  assert.match(error.message, /policy file default/);
  await memberClient.close();
  await otherClient.close();
  assert.ok(broker.forge.teamRequests >= 2, 'memberships come from Forgejo');
});

test('a policy file that does not pass the checks stops the start with a clear ConfigError', async () => {
  const dir = dataDir();
  const cases: [unknown, RegExp][] = [
    [{ rules: [{ name: 'x', teams: ['no-slash'] }] }, /rules\[0\]\.teams "no-slash" is not org\/team/],
    [{ rules: [{ name: 'x', allow: ['*'] }] }, /rules\[0\] names no users and no teams/],
    [{ default: { preset: 'read-mostly' } }, /"default"\.preset must be one of read-only/],
    [{ defaults: {} }, /"defaults" is not a known key/],
  ];
  await writeFile(`${dir}-bad.json`, '{ not json');
  await assert.rejects(loadPolicyFile(`${dir}-bad.json`), (error) => error instanceof ConfigError && /is not JSON/.test(error.message));
  for (const [json, message] of cases) {
    await writeFile(`${dir}-case.json`, JSON.stringify(json));
    await assert.rejects(loadPolicyFile(`${dir}-case.json`), (error) => error instanceof ConfigError && message.test(error.message));
  }
  await assert.rejects(startBroker({ policy: { file: `${dir}-case.json` } }), ConfigError);
});

test('SIGHUP rereads the policy file: a tool denied since is gone from tools/list; a broken file does not stop the broker', async (t) => {
  const file = join(dataDir(), '..', `policy-${randomBytes(4).toString('hex')}.json`);
  await writeFile(file, JSON.stringify({ default: { deny: ['crash'] } }));
  const broker = await startBroker({ wiring: 'process', env: { BROKER_POLICY_FILE: file } });
  t.after(async () => {
    broker.proc.kill('SIGTERM');
    await once(broker.proc, 'exit');
  });
  const client = await connectIn(new URL('/mcp', broker.url), broker.bearer, 'legacy');
  assert.ok((await toolNames(client)).includes('echo'));
  await writeFile(file, JSON.stringify({ default: { deny: ['crash', 'echo'] } }));
  broker.proc.kill('SIGHUP');
  await eventually(async () => !(await toolNames(client)).includes('echo'), 'echo hidden after the reload');
  await writeFile(file, '{ broken');
  broker.proc.kill('SIGHUP');
  // Refused and logged; the broker lives on and takes the next good file.
  await writeFile(file, JSON.stringify({ default: { deny: ['crash', 'get_me'] } }));
  broker.proc.kill('SIGHUP');
  await eventually(async () => {
    const names = await toolNames(client);
    return names.includes('echo') && !names.includes('get_me');
  }, 'the next good file in force');
  await client.close();
});
