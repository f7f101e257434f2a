/**
 * The audit log: every tools/call of both eras lands in the store (SQLite
 * and PostgreSQL) with who, what, how it went and how big it was, as
 * `admin audit --json` shows it; arguments only as a digest unless asked
 * for, and then with secrets redacted; writes never fail a call.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { argumentsDigest } from '../../src/audit/arguments.js';
import { openPostgresStore } from '../../src/store/postgres.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { adminAudit, auditJson } from '../support/audit.js';
import { startBroker, type TestBroker, type TestUser } from '../support/brokers.js';
import { eventually, freshDataDirs } from '../support/host.js';
import { text } from '../support/mcp-clients.js';
import { withPostgres } from '../support/postgres.js';

const dataDir = freshDataDirs('broker-audit-');

/** An SDK client in the era asked for: `modern` negotiates 2026-07-28, `legacy` initialises a session. */
async function connectIn(broker: TestBroker, user: TestUser, era: 'legacy' | 'modern'): Promise<Client> {
  const client = new Client(
    { name: `audit-${era}`, version: '1.0.0' },
    { versionNegotiation: { mode: era === 'modern' ? 'auto' : 'legacy' } },
  );
  await client.connect(
    new StreamableHTTPClientTransport(broker.mcpUrl, { requestInit: { headers: { Authorization: `Bearer ${user.bearer}` } } }),
  );
  return client;
}

function storeSuite(name: string, open: () => Promise<Store>): void {
  for (const era of ['legacy', 'modern'] as const) {
    test(`${name}, ${era} era: every tools/call is in admin audit --json with who, what, outcome and sizes; arguments only as a digest`, async (t) => {
      const store = await open();
      const broker = await startBroker({ auditStore: store });
      t.after(async () => {
        await broker.close();
        await store.close();
      });
      const user = broker.addUser('alice');
      const client = await connectIn(broker, user, era);
      const args = { text: 'hello', token: 'do-not-store' };
      assert.equal(text(await client.callTool({ name: 'echo', arguments: args })), 'hello');
      const failed = await client.callTool({ name: 'get_issue_by_index', arguments: { owner: 'nobody', repo: 'none', index: 1 } });
      assert.equal(failed.isError, true);
      await client.close();
      await eventually(async () => (await auditJson(store, ['--user', 'alice'])).length === 2, 'two records');

      const [error, ok] = await auditJson(store, ['--user', 'alice']);
      assert.ok(ok !== undefined && error !== undefined);
      assert.equal(ok.kind, 'tool_call');
      assert.equal(ok.tool, 'echo');
      assert.equal(ok.outcome, 'ok');
      assert.equal(ok.login, 'alice');
      assert.equal(ok.userId, user.userId);
      assert.equal(ok.clientId, 'test-client');
      assert.equal(ok.clientName, 'test-client name');
      assert.equal(ok.era, era);
      assert.equal(ok.session === null, era === 'modern', 'a legacy call names its session, a modern one has none');
      assert.ok(ok.durationMs !== null && ok.durationMs >= 0);
      assert.ok(ok.requestBytes !== null && ok.requestBytes > JSON.stringify(args).length);
      assert.ok(ok.responseBytes !== null && ok.responseBytes > 0);
      assert.equal(ok.argumentsSha256, argumentsDigest(args));
      assert.equal(ok.arguments, null);
      assert.ok(!JSON.stringify(await auditJson(store)).includes('do-not-store'), 'no argument value anywhere');
      assert.equal(error.tool, 'get_issue_by_index');
      assert.equal(error.outcome, 'error');
      assert.ok(error.detail !== null && error.detail.length > 0, 'the tool error is kept');

      assert.equal((await auditJson(store, ['--tool', 'get_*'])).length, 1);
      assert.equal((await auditJson(store, ['--user', 'bob'])).length, 0);
      const metrics = (await broker.metrics.render()).body;
      assert.match(metrics, new RegExp(`forgejo_mcp_broker_tool_calls_total\\{tool="echo",outcome="ok",era="${era}"\\} 1`));
    });
  }

  test(`${name}: with BROKER_AUDIT_ARGUMENTS=true the arguments are kept, secret-looking values redacted`, async (t) => {
    const store = await open();
    const broker = await startBroker({ auditStore: store, auditArguments: true });
    t.after(async () => {
      await broker.close();
      await store.close();
    });
    const user = broker.addUser('carol');
    const client = await connectIn(broker, user, 'legacy');
    await client.callTool({ name: 'echo', arguments: { text: 'visible', api_key: 'k-123', nested: { Password: 'p-456' } } });
    await client.close();
    await eventually(async () => (await auditJson(store)).length === 1, 'one record');
    const [entry] = await auditJson(store);
    assert.deepEqual(entry?.arguments, { text: 'visible', api_key: '[redacted]', nested: { Password: '[redacted]' } });
    assert.equal(entry?.argumentsSha256, argumentsDigest({ text: 'visible', api_key: 'k-123', nested: { Password: 'p-456' } }));
  });
}

storeSuite('SQLite', () => openSqliteStore({ dataDir: dataDir(), encryptionKey: randomBytes(32) }));

withPostgres('PostgreSQL audit log', (freshUrl) =>
  storeSuite('PostgreSQL', async () => openPostgresStore({ connectionString: await freshUrl(), encryptionKey: randomBytes(32) })),
);

test('a failing audit store fails no call: the records are dropped, counted and warned about', async (t) => {
  const failing: Pick<Store, 'audit'> = {
    audit: {
      append: () => Promise.reject(new Error('disk full')),
      list: () => Promise.resolve([]),
      deleteBefore: () => Promise.reject(new Error('disk full')),
    },
  };
  const broker = await startBroker({ auditStore: failing });
  t.after(() => broker.close());
  const user = broker.addUser('dave');
  const client = await connectIn(broker, user, 'legacy');
  for (let i = 0; i < 3; i++) assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: `call ${i}` } })), `call ${i}`);
  await client.close();
  await eventually(
    async () => /forgejo_mcp_broker_audit_records_dropped_total\{reason="store_failed"\} 3/.test((await broker.metrics.render()).body),
    'three records counted as dropped',
  );
});

test('admin audit prints a table for people and refuses arguments it does not know', async () => {
  const store = await openSqliteStore({ dataDir: dataDir(), encryptionKey: randomBytes(32) });
  try {
    await store.audit.append([
      {
        at: Date.parse('2026-01-02T03:04:05Z'),
        kind: 'tool_call',
        userId: '1',
        forgejoLogin: 'alice',
        clientId: 'c1',
        clientName: 'Claude',
        era: 'modern',
        sessionRef: null,
        tool: 'merge_pull_request',
        outcome: 'refused',
        errorCode: -32010,
        detail: 'BROKER_TOOLS_PRESET=read-only',
        durationMs: 0,
        requestBytes: 40,
        responseBytes: 120,
        argumentsSha256: 'ab',
        arguments: null,
      },
    ]);
    const at = (): number => Date.parse('2026-01-03T00:00:00Z');
    const { text: table } = await adminAudit(store, ['--since', '3650d'], at);
    assert.match(table, /^TIME +USER +CLIENT +ERA +TOOL \/ EVENT +OUTCOME +MS +DETAIL$/m);
    assert.match(
      table,
      /2026-01-02T03:04:05.000Z +alice +Claude +modern +merge_pull_request +refused -32010 +0 +BROKER_TOOLS_PRESET=read-only/,
    );
    assert.equal((await adminAudit(store, ['--since=1h'], at)).text, 'No audit records.\n');
    await assert.rejects(adminAudit(store, ['--everything']), /--everything/);
    await assert.rejects(adminAudit(store, ['--since', 'yesterday']), /not a duration/);
    await assert.rejects(adminAudit(store, ['--limit', '0']), /not a whole number/);
  } finally {
    await store.close();
  }
});
