/**
 * Signed-in brokers as an operator runs them, each registering itself in
 * the store it shares with the others: SQLite (one replica) and PostgreSQL
 * (several). What a client or the load balancer sees: `/readyz`, and the
 * rate limit each replica enforces.
 */
import assert from 'node:assert/strict';
import { Agent, get, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { standinChildCommand } from '../../src/demo.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import { startBroker, type SignedInTestBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { withPostgres } from '../support/postgres.js';

async function readyz(url: string): Promise<{ status: number; reason?: string }> {
  const response = await fetch(`${url}/readyz`);
  const body = (await response.json()) as { reason?: string };
  return { status: response.status, ...(body.reason === undefined ? {} : { reason: body.reason }) };
}

/** The authorization endpoint as a client behind the (trusted) load balancer at `forwardedFor`; its status. */
async function authorize(url: string, forwardedFor: string): Promise<number> {
  const response = await fetch(`${url}${OAUTH_PATHS.authorize}`, { headers: { 'x-forwarded-for': forwardedFor } });
  await response.arrayBuffer();
  return response.status;
}

/** How many requests of `forwardedFor` the replica lets through before the first 429 (at most `limit`). */
async function allowedBefore429(url: string, forwardedFor: string, limit = 40): Promise<number> {
  for (let i = 0; i < limit; i++) if ((await authorize(url, forwardedFor)) === 429) return i;
  return limit;
}

/** A GET on `agent`'s connections; the answer and whether it went on a kept-alive connection. */
function getOn(agent: Agent, url: string): Promise<{ response: IncomingMessage; reusedSocket: boolean }> {
  return new Promise((resolve, reject) => {
    const request = get(url, { agent }, (response) => {
      response.resume();
      response.once('end', () => resolve({ response, reusedSocket: request.reusedSocket }));
    });
    request.once('error', reject);
  });
}

function replicaRows(dataDir: string): string[] {
  const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true });
  try {
    return (db.prepare('SELECT replica_id FROM replicas ORDER BY replica_id').all() as { replica_id: string }[]).map(
      (row) => row.replica_id,
    );
  } finally {
    db.close();
  }
}

const closed = new WeakSet<SignedInTestBroker>();

/** Stops a replica (gracefully) before the test ends; the test's end then leaves it be. */
async function close(harness: SignedInTestBroker): Promise<void> {
  if (closed.has(harness)) return;
  closed.add(harness);
  await harness.close();
}

async function signedIn(t: TestContext, name: string, env: Readonly<Record<string, string>> = {}): Promise<SignedInTestBroker> {
  const harness = await startBroker({ wiring: 'signed-in', name, users: [], childCommand: standinChildCommand({ testTools: true }), env });
  t.after(() => close(harness));
  return harness;
}

it('a signed-in broker on SQLite is a replica of its own: ready, in the store while it runs, out of it once stopped', async (t) => {
  const harness = await signedIn(t, 'replica-sqlite');
  const first = harness.broker;
  const registry = first.replicas;
  assert.ok(registry, 'the signed-in parts run the registry');
  assert.match(first.replicaId, /^[0-9a-f]{12}$/);
  assert.equal(registry.self.id, first.replicaId, 'the id in front of its session ids is the one in the store');
  assert.equal(registry.self.url?.href, `${harness.url}/`);
  assert.deepEqual(
    registry.live().map((replica) => replica.id),
    [first.replicaId],
  );
  assert.deepEqual(await readyz(harness.url), { status: 200 });
  assert.deepEqual(replicaRows(harness.dataDir), [first.replicaId]);

  await harness.restart();
  const second = harness.broker;
  assert.notEqual(second.replicaId, first.replicaId, 'a restarted process is a new replica');
  assert.deepEqual(replicaRows(harness.dataDir), [second.replicaId], 'the stopped one removed itself');
  assert.deepEqual(await readyz(harness.url), { status: 200 });
});

withPostgres('signed-in replicas on one PostgreSQL', (freshUrl) => {
  /** The settings every replica of one fleet shares. */
  const fleetEnv = async (): Promise<Record<string, string>> => ({
    BROKER_DATABASE_URL: await freshUrl(),
    BROKER_ENCRYPTION_KEY: randomBytes(32).toString('hex'),
    // A burst of 10 a minute for the fleet; nothing refills during the test. The test's fetches come through a trusted "balancer".
    BROKER_RATE_LIMIT: '20',
    BROKER_TRUSTED_PROXIES: '127.0.0.1',
  });

  it('see each other, are ready, and each enforces half of the rate limit; alone again, the whole of it', async (t) => {
    const env = await fleetEnv();
    const a = await signedIn(t, 'replica-a', env);
    const b = await signedIn(t, 'replica-b', env);
    const both = [a.broker.replicaId, b.broker.replicaId].sort();
    const liveIds = (harness: SignedInTestBroker): string[] => harness.broker.replicas?.live().map((replica) => replica.id) ?? [];
    await eventually(() => liveIds(a).length === 2 && liveIds(b).length === 2, 'each replica sees the other');
    assert.deepEqual(liveIds(a), both);
    assert.deepEqual(liveIds(b), both);
    assert.equal(a.broker.replicas?.find(b.broker.replicaId)?.url?.href, `${b.url}/`, 'with the URL to forward to');
    assert.deepEqual(await readyz(a.url), { status: 200 });
    assert.deepEqual(await readyz(b.url), { status: 200 });

    assert.equal(await allowedBefore429(a.url, '203.0.113.5'), 5, "replica a's half of the burst");
    assert.equal(await allowedBefore429(b.url, '203.0.113.5'), 5, "replica b's half: the fleet lets the client through 10 times");

    await close(b);
    await eventually(() => liveIds(a).length === 1, 'a sees b gone');
    assert.equal(await allowedBefore429(a.url, '203.0.113.6'), 10, 'the whole burst on the one replica left');
  });

  it('a replica stopping among others keeps its connections while requests come: one sent on a kept-alive connection is answered, with "close"', async (t) => {
    const env = await fleetEnv();
    const stopping = await signedIn(t, 'replica-drain-a', env);
    const other = await signedIn(t, 'replica-drain-b', env);
    await eventually(() => stopping.broker.replicas?.live().length === 2, 'the stopping replica sees the other');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const metadata = `${stopping.url}/.well-known/oauth-protected-resource/mcp`;
    assert.equal((await getOn(agent, metadata)).response.headers.connection, 'keep-alive');
    const { server } = stopping.broker;
    const stopped = close(stopping);
    await eventually(() => server.draining, 'the replica is stopping');
    // A balancer that has not noticed yet sends the next request on the connection it holds.
    const { response, reusedSocket } = await getOn(agent, metadata);
    assert.ok(reusedSocket, 'the kept-alive connection was still open');
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers.connection, 'close', 'and the client is told to open its next one elsewhere');
    await stopped;
    assert.deepEqual(await readyz(other.url), { status: 200 });
  });

  it('a replica without BROKER_REPLICA_URL is not ready while another is live, and ready once alone', async (t) => {
    const env = await fleetEnv();
    const unreachable = await signedIn(t, 'replica-no-url', { ...env, BROKER_REPLICA_URL: '' });
    assert.equal(unreachable.broker.replicas?.self.url, undefined);
    assert.deepEqual(await readyz(unreachable.url), { status: 200 }, 'alone, nobody needs to reach it');
    const other = await signedIn(t, 'replica-with-url', env);
    await eventually(async () => (await readyz(unreachable.url)).status === 503, 'not ready once it sees the other');
    assert.deepEqual(await readyz(unreachable.url), {
      status: 503,
      reason: 'another replica is running and BROKER_REPLICA_URL is not set',
    });
    assert.deepEqual(await readyz(other.url), { status: 200 });
    await close(other);
    await eventually(async () => (await readyz(unreachable.url)).status === 200, 'ready once the other is gone');
  });
});
