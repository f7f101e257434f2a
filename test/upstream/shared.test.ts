/**
 * Shared mode: one multi-tenant forgejo-mcp (the stand-in's HTTP mode, run by
 * the broker from BROKER_UPSTREAM_COMMAND) serves every user, each request
 * carrying its user's own Forgejo token.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { standinUpstreamCommand } from '../../src/demo.js';
import type { UpstreamProcesses } from '../../src/upstream/processes.js';
import {
  E2E_USERS,
  e2eUser,
  type SignedInTestBroker,
  standinUpstreamCommandLine,
  startBroker,
  type TestBroker,
  type TestUser,
} from '../support/brokers.js';
import { tokenFingerprint } from '../support/forgejo.js';
import { childProcesses, eventually } from '../support/host.js';
import {
  connect as connectSignedIn,
  E2EOAuthProvider,
  forgejoTokenFingerprint,
  getMe,
  signInWithSdk,
  text,
} from '../support/mcp-clients.js';
import { TestBrowser } from '../support/oauth.js';
import { standinChildCommand } from '../../src/demo.js';

const STANDIN_MARKER = 'forgejo-mcp.js';

/** What the stand-in counts at `/stats`. */
interface UpstreamStats {
  readonly getStreams: number;
  readonly refusedMissingAuthorization: number;
  readonly refusedMalformedAuthorization: number;
  readonly tokensSeen: readonly string[];
}

function processesOf(broker: TestBroker): UpstreamProcesses {
  const processes = broker.running.upstream?.processes;
  assert.ok(processes !== undefined, 'the broker runs the upstream');
  return processes;
}

async function upstreamStats(broker: TestBroker): Promise<UpstreamStats> {
  const [url] = processesOf(broker).urls;
  assert.ok(url !== undefined);
  const response = await fetch(new URL('/stats', url));
  assert.equal(response.status, 200);
  return (await response.json()) as UpstreamStats;
}

/** The production wiring (sign-in through the Forgejo stand-in, SQLite) in shared mode, closed with the test. */
async function startSignedInShared(t: TestContext, name: string): Promise<SignedInTestBroker> {
  const harness = await startBroker({
    wiring: 'signed-in',
    name,
    users: E2E_USERS,
    childCommand: standinChildCommand({ testTools: true }),
    env: {
      BROKER_UPSTREAM_COMMAND: standinUpstreamCommandLine({ testTools: true }),
      FORGEJO_SCOPES: 'read:user read:repository write:issue',
      BROKER_RATE_LIMIT: '1000',
    },
  });
  t.after(() => harness.close());
  return harness;
}

/** An SDK client through the broker: `legacy` holds an MCP session, `auto` speaks 2026-07-28 (a modern call per request). */
async function connect(broker: TestBroker, user: TestUser, mode: 'legacy' | 'auto'): Promise<Client> {
  const client = new Client({ name: `shared-${mode}`, version: '1.0.0' }, { capabilities: {}, versionNegotiation: { mode } });
  await client.connect(
    new StreamableHTTPClientTransport(broker.mcpUrl, { requestInit: { headers: { Authorization: `Bearer ${user.bearer}` } } }),
  );
  return client;
}

test('50 users, each with a legacy session and a modern call: one upstream process, each answered as themselves, no request without a token', async (t) => {
  const broker = await startBroker({ upstream: 'http' });
  t.after(() => broker.close());
  const users = Array.from({ length: 50 }, () => broker.addUser());
  const clients = await Promise.all(
    users.map(async (user) => ({ user, legacy: await connect(broker, user, 'legacy'), modern: await connect(broker, user, 'auto') })),
  );
  t.after(() => Promise.all(clients.flatMap(({ legacy, modern }) => [legacy.close(), modern.close()])));

  await Promise.all(
    clients.map(async ({ user, legacy, modern }) => {
      assert.equal(await forgejoTokenFingerprint(legacy), tokenFingerprint(user.forgejoToken));
      assert.equal(await forgejoTokenFingerprint(modern), tokenFingerprint(user.forgejoToken));
      const me = JSON.parse(text(await modern.callTool({ name: 'get_me', arguments: {} }))) as { login: string };
      assert.equal(me.login, user.login);
    }),
  );

  assert.equal(broker.legacy.active, 50);
  assert.deepEqual(childProcesses(process.pid, STANDIN_MARKER), processesOf(broker).pids, 'the upstream is the only process');
  const stats = await upstreamStats(broker);
  assert.equal(stats.refusedMissingAuthorization, 0);
  assert.equal(stats.refusedMalformedAuthorization, 0);
  assert.equal(stats.tokensSeen.length, 50);
});

/** A legacy session held with bare POSTs, as programmatic clients do: no GET stream. */
async function postOnlySession(broker: TestBroker, user: TestUser): Promise<(message: object) => Promise<Response>> {
  let sessionId: string | undefined;
  const send = async (message: object): Promise<Response> => {
    const response = await fetch(broker.mcpUrl, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${user.bearer}`,
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        ...(sessionId === undefined ? {} : { 'Mcp-Session-Id': sessionId, 'MCP-Protocol-Version': '2025-11-25' }),
      },
      body: JSON.stringify({ jsonrpc: '2.0', ...message }),
    });
    sessionId ??= response.headers.get('mcp-session-id') ?? undefined;
    return response;
  };
  const initialize = { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'posts only', version: '1' } };
  const initialized = await send({ id: 1, method: 'initialize', params: initialize });
  assert.equal(initialized.status, 200);
  // The session is the broker's once its answer is.
  assert.match(await initialized.text(), /protocolVersion/);
  assert.equal((await send({ method: 'notifications/initialized' })).status, 202);
  return send;
}

test("an upstream GET stream is held only for a session whose client holds one, opened before the broker accepts the client's", async (t) => {
  const broker = await startBroker({ upstream: 'http' });
  t.after(() => broker.close());
  const user = broker.addUser();
  const send = await postOnlySession(broker, user);
  const answer = await send({ id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'posted' } } });
  assert.match(await answer.text(), /posted/);
  assert.equal((await upstreamStats(broker)).getStreams, 0, 'a session nobody listens to holds no GET stream upstream');

  const { client, getStreamOpened } = await broker.connect(user);
  t.after(() => client.close());
  await getStreamOpened;
  assert.equal((await upstreamStats(broker)).getStreams, 1, "open upstream once the broker accepted the client's stream");
  const changed = new Promise<void>((resolve) => client.setNotificationHandler('notifications/tools/list_changed', () => resolve()));
  await client.callTool({ name: 'add_tool', arguments: { name: 'right_after' } });
  await changed;
});

test('rotation under traffic: every request after a rotation carries the new token; nothing fails, nothing restarts', async (t) => {
  const broker = await startBroker({ upstream: 'http' });
  t.after(() => broker.close());
  const users = Array.from({ length: 4 }, () => broker.addUser());
  const clients = await Promise.all(
    users.map(async (user) => ({ user, legacy: await connect(broker, user, 'legacy'), modern: await connect(broker, user, 'auto') })),
  );
  t.after(() => Promise.all(clients.flatMap(({ legacy, modern }) => [legacy.close(), modern.close()])));
  const [pid] = processesOf(broker).pids;

  let rotating = true;
  let calls = 0;
  const traffic = clients.flatMap(({ legacy, modern }) =>
    [legacy, modern].map(async (client) => {
      while (rotating) {
        await forgejoTokenFingerprint(client);
        calls++;
      }
    }),
  );
  for (let round = 0; round < 3; round++) {
    await Promise.all(
      clients.map(async ({ user, legacy, modern }) => {
        const token = broker.newForgejoToken(user);
        await broker.pool.rotateUser(user.userId);
        assert.equal(await forgejoTokenFingerprint(legacy), tokenFingerprint(token));
        assert.equal(await forgejoTokenFingerprint(modern), tokenFingerprint(token));
      }),
    );
  }
  rotating = false;
  await Promise.all(traffic);

  assert.ok(calls > 0);
  assert.equal(processesOf(broker).restarts, 0);
  assert.deepEqual(processesOf(broker).pids, [pid]);
  assert.equal(broker.legacy.active, 4, 'every session lives on');
});

test('the upstream killed under traffic: the call in flight fails, the upstream restarts, and the same sessions carry on', async (t) => {
  const broker = await startBroker({ upstream: 'http' });
  t.after(() => broker.close());
  const user = broker.addUser();
  const legacy = await connect(broker, user, 'legacy');
  const modern = await connect(broker, user, 'auto');
  t.after(() => Promise.all([legacy.close(), modern.close()]));
  await legacy.setLoggingLevel('error');
  const sessionId = (legacy.transport as StreamableHTTPClientTransport).sessionId;
  const [pid] = processesOf(broker).pids;
  assert.ok(pid !== undefined);

  const inFlight = legacy.callTool({ name: 'sleep', arguments: { ms: 60_000 } });
  await eventually(() => broker.pool.inflight === 1, 'the sleep call reached the upstream');
  process.kill(pid, 'SIGKILL');
  await assert.rejects(inFlight, /before it answered/);

  await eventually(() => processesOf(broker).pids.some((restarted) => restarted !== pid), 'the upstream restarted');
  assert.equal(processesOf(broker).restarts, 1);
  assert.equal(await forgejoTokenFingerprint(legacy), tokenFingerprint(user.forgejoToken));
  assert.equal(await forgejoTokenFingerprint(modern), tokenFingerprint(user.forgejoToken));
  assert.equal((legacy.transport as StreamableHTTPClientTransport).sessionId, sessionId, 'the client kept its session');
  const logged: string[] = [];
  legacy.setNotificationHandler('notifications/message', (notification) => void logged.push(String(notification.params.data)));
  await legacy.callTool({ name: 'log', arguments: { level: 'debug', message: 'below the level' } });
  await legacy.callTool({ name: 'log', arguments: { level: 'error', message: 'at the level' } });
  assert.deepEqual(logged, ['at the level'], 'the new upstream session was told the log level');
});

test('a response the upstream cuts (its 30 s write limit) fails that request only; the session goes on', async (t) => {
  const broker = await startBroker({
    upstream: 'http',
    upstreamCommand: [...standinUpstreamCommand({ testTools: true }), '--write-timeout-ms', '300'],
  });
  t.after(() => broker.close());
  const user = broker.addUser();
  const legacy = await connect(broker, user, 'legacy');
  t.after(() => legacy.close());

  await assert.rejects(legacy.callTool({ name: 'sleep', arguments: { ms: 5_000 } }), /before it answered/);
  assert.equal(await forgejoTokenFingerprint(legacy), tokenFingerprint(user.forgejoToken));
  assert.equal(processesOf(broker).restarts, 0);
});

test("the upstream answering 401 for one user (their grant revoked at Forgejo) ends that user's credential only", async (t) => {
  const harness = await startSignedInShared(t, 'shared-401');
  const mcpUrl = new URL(`${harness.url}/mcp`);
  const [carol, dave] = [e2eUser('carol'), e2eUser('dave')];
  const carolsProvider = new E2EOAuthProvider({ clientName: 'shared 401: carol' });
  const revoked = await signInWithSdk(mcpUrl, carolsProvider, new TestBrowser(), carol);
  const other = await signInWithSdk(mcpUrl, new E2EOAuthProvider({ clientName: 'shared 401: dave' }), new TestBrowser(), dave);
  t.after(() => Promise.all([revoked.client.close(), other.client.close()]));
  assert.deepEqual(await getMe(revoked.client), { login: carol.login, id: carol.id });

  assert.ok(harness.forgejo.deleteGrant(carol.login));
  await assert.rejects(getMe(revoked.client), /sign in again|Session not found|ended/);
  await eventually(() => harness.broker.legacy.sessionIdsOf(String(carol.id)).length === 0, "carol's session ended");
  const challenge = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${carolsProvider.tokens()?.access_token ?? ''}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    }),
  });
  assert.equal(challenge.status, 401, 'carol signs in again');

  assert.deepEqual(await getMe(other.client), { login: dave.login, id: dave.id }, 'dave goes on');
  assert.equal(harness.broker.upstream?.processes?.restarts, 0);
});

test('a legacy session is state: after a broker restart its client carries on with the same session; one the client ended stays ended', async (t) => {
  const harness = await startSignedInShared(t, 'shared-restart');
  const mcpUrl = new URL(`${harness.url}/mcp`);
  const erin = e2eUser('erin');
  const provider = new E2EOAuthProvider({ clientName: 'shared restart' });
  const kept = await signInWithSdk(mcpUrl, provider, new TestBrowser(), erin);
  const ended = await connectSignedIn(mcpUrl, provider);
  t.after(() => Promise.all([kept.client.close(), ended.client.close()]));
  const keptId = kept.transport.sessionId;
  const endedId = ended.transport.sessionId;
  assert.deepEqual(await getMe(kept.client), { login: erin.login, id: erin.id });
  await ended.transport.terminateSession();

  await harness.restart();
  assert.equal(harness.broker.legacy.active, 0, 'a new broker process');
  assert.deepEqual(await getMe(kept.client), { login: erin.login, id: erin.id });
  assert.equal(kept.transport.sessionId, keptId, 'the same session, no new initialize');
  assert.deepEqual(harness.broker.legacy.sessionIdsOf(String(erin.id)), [keptId]);

  const endedAgain = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${provider.tokens()?.access_token ?? ''}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'Mcp-Session-Id': endedId ?? '',
      'MCP-Protocol-Version': '2025-11-25',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(endedAgain.status, 404, 'a session its client ended is not carried on');
});

test("a session a new broker process takes over through its client's GET stream listens upstream once it is live there", async (t) => {
  const harness = await startSignedInShared(t, 'shared-adopted-listens');
  const mcpUrl = new URL(`${harness.url}/mcp`);
  const provider = new E2EOAuthProvider({ clientName: 'shared adopted' });
  const kept = await signInWithSdk(mcpUrl, provider, new TestBrowser(), e2eUser('erin'));
  const sessionId = kept.transport.sessionId ?? '';
  await kept.client.close();

  await harness.restart();
  assert.equal(harness.broker.legacy.active, 0, 'a new broker process');
  const stream = new AbortController();
  t.after(() => stream.abort());
  const get = await fetch(mcpUrl, {
    headers: {
      Authorization: `Bearer ${provider.tokens()?.access_token ?? ''}`,
      Accept: 'text/event-stream',
      'Mcp-Session-Id': sessionId,
      'MCP-Protocol-Version': '2025-11-25',
    },
    signal: stream.signal,
  });
  assert.equal(get.status, 200, 'the GET stream is the first request the new process serves: it takes the session over');
  const stats = async (): Promise<UpstreamStats> => {
    const [url] = harness.broker.upstream?.processes?.urls ?? [];
    assert.ok(url !== undefined);
    return (await (await fetch(new URL('/stats', url))).json()) as UpstreamStats;
  };
  await eventually(async () => (await stats()).getStreams === 1, 'the taken-over session holds a GET stream upstream');
});

test('BROKER_UPSTREAM_PROCESSES: users are spread over the processes, each user always on the same one', async (t) => {
  const broker = await startBroker({ upstream: 'http', upstreamProcesses: 3 });
  t.after(() => broker.close());
  const users = Array.from({ length: 12 }, () => broker.addUser());
  for (const user of users) {
    const client = await connect(broker, user, 'legacy');
    assert.equal(await forgejoTokenFingerprint(client), tokenFingerprint(user.forgejoToken));
    await client.close();
    const again = await connect(broker, user, 'auto');
    assert.equal(await forgejoTokenFingerprint(again), tokenFingerprint(user.forgejoToken));
    await again.close();
  }
  const processes = processesOf(broker);
  assert.equal(processes.pids.length, 3);
  const seen = await Promise.all(
    processes.urls.map(async (url) => ((await (await fetch(new URL('/stats', url))).json()) as UpstreamStats).tokensSeen),
  );
  assert.equal(seen.flat().length, 12, 'each token reached exactly one process');
  assert.ok(seen.filter((tokens) => tokens.length > 0).length >= 2, 'more than one process serves users');
  assert.deepEqual(childProcesses(process.pid, STANDIN_MARKER).sort(), [...processes.pids].sort());
});
