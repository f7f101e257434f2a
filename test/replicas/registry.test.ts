/**
 * The replica registry on a real store: SQLite files, and PostgreSQL
 * (test/support/postgres.ts), each replica on a store of its own.
 * Heartbeats are driven by `tick()` on a clock the test moves, except where
 * the timer itself is the subject; the registries' own timer then runs with
 * a short period and the test waits for what it does.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { rateLimitFor } from '../../src/config/defaults.js';
import { createLogger, type Logger } from '../../src/log/logger.js';
import { RateLimiter } from '../../src/oauth/rate-limit.js';
import type { ReplicaInfo } from '../../src/replicas/fleet.js';
import { ReplicaRegistry } from '../../src/replicas/registry.js';
import { replicaForwardingKey } from '../../src/replicas/secret.js';
import { openPostgresStore } from '../../src/store/postgres.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { ReplicaRepository, Store } from '../../src/store/store.js';
import { eventually, freshDataDirs } from '../support/host.js';
import { withPostgres } from '../support/postgres.js';

const T0 = 1_800_000_000_000;
const GONE_AFTER_MS = 6_000;
/** Long enough never to fire during a test: beats happen when the test ticks. */
const NEVER_MS = 3_600_000;

/** Where two replicas keep their stores: a new place per call, one store per replica on it. */
interface Backend {
  readonly name: string;
  /** Two stores on one new place, as two replicas hold them. */
  pair(): Promise<[Store, Store]>;
}

const freshDir = freshDataDirs('broker-replicas-test-');

const sqlite: Backend = {
  name: 'sqlite',
  pair: async () => {
    const dataDir = freshDir();
    const key = randomBytes(32);
    const first = await openSqliteStore({ dataDir, encryptionKey: key });
    return [first, await openSqliteStore({ dataDir, encryptionKey: key })];
  },
};

function postgres(freshUrl: () => Promise<string>): Backend {
  return {
    name: 'postgres',
    pair: async () => {
      const url = await freshUrl();
      const key = randomBytes(32);
      const first = await openPostgresStore({ connectionString: url, encryptionKey: key });
      return [first, await openPostgresStore({ connectionString: url, encryptionKey: key })];
    },
  };
}

/** A clock the test moves. */
function testClock(): { now: () => number; advance: (ms: number) => void } {
  let now = T0;
  return { now: () => now, advance: (ms) => (now += ms) };
}

/** Log lines as objects, to wait for or assert on. */
function recordingLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('debug', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

interface RegistryOptions {
  readonly url?: string;
  readonly now?: () => number;
  readonly heartbeatMs?: number;
  readonly forgetAfterMs?: number;
  readonly log?: Logger;
}

/** A registry for `id` on `replicas`, stopped after the test. */
function registry(t: TestContext, replicas: ReplicaRepository, id: string, options: RegistryOptions = {}): ReplicaRegistry {
  const made = new ReplicaRegistry({
    replicas,
    self: { id, url: options.url === undefined ? undefined : new URL(options.url) },
    heartbeatMs: options.heartbeatMs ?? NEVER_MS,
    goneAfterMs: GONE_AFTER_MS,
    log: options.log ?? recordingLog().log,
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.forgetAfterMs === undefined ? {} : { forgetAfterMs: options.forgetAfterMs }),
  });
  t.after(() => made.stop());
  return made;
}

/** Both stores of a pair, closed after the test. */
async function stores(t: TestContext, backend: Backend): Promise<[Store, Store]> {
  const [a, b] = await backend.pair();
  t.after(() => Promise.all([a.close(), b.close()]));
  return [a, b];
}

const ids = (live: readonly ReplicaInfo[]): string[] => live.map((replica) => replica.id);

function describeRegistry(backend: Backend): void {
  describe(`replica registry on ${backend.name}`, () => {
    it('counts only itself before it starts, and while it is the only replica', async (t) => {
      const [store] = await stores(t, backend);
      const alone = registry(t, store.replicas, 'a1a1a1a1a1a1', { url: 'http://10.0.0.5:8080' });
      assert.deepEqual(alone.live(), [alone.self]);
      await alone.start();
      assert.deepEqual(ids(alone.live()), ['a1a1a1a1a1a1']);
      assert.equal(alone.live()[0]?.url?.href, 'http://10.0.0.5:8080/');
      assert.equal(alone.notReadyBecause(), undefined);
      assert.equal(alone.find('a1a1a1a1a1a1'), alone.self);
      assert.equal(alone.find('bbbbbbbbbbbb'), undefined);
    });

    it('heartbeats on its own: two replicas with a short heartbeat find each other, sorted by id, with their URLs', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const b = registry(t, storeB.replicas, 'ffffffffffff', { url: 'http://10.0.0.6:8080', heartbeatMs: 20 });
      const a = registry(t, storeA.replicas, '000000000000', { url: 'https://10.0.0.5:8443', heartbeatMs: 20 });
      await b.start();
      await a.start();
      assert.deepEqual(ids(a.live()), ['000000000000', 'ffffffffffff'], 'the one starting second sees the first at once');
      await eventually(() => b.live().length === 2, 'the first sees the second at its next heartbeat');
      assert.deepEqual(ids(b.live()), ['000000000000', 'ffffffffffff']);
      assert.equal(b.find('000000000000')?.url?.href, 'https://10.0.0.5:8443/');
      assert.equal(a.find('ffffffffffff')?.url?.href, 'http://10.0.0.6:8080/');
      const rows = await storeA.replicas.list(0);
      assert.deepEqual(
        rows.map((row) => [row.id, row.url]),
        [
          ['000000000000', 'https://10.0.0.5:8443/'],
          ['ffffffffffff', 'http://10.0.0.6:8080/'],
        ],
      );
    });

    it('drops a replica that stopped heartbeating once goneAfterMs passed, and tells its listeners', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const clock = testClock();
      const a = registry(t, storeA.replicas, 'aaaaaaaaaaaa', { url: 'http://10.0.0.5:8080', now: clock.now });
      const b = registry(t, storeB.replicas, 'bbbbbbbbbbbb', { url: 'http://10.0.0.6:8080', now: clock.now });
      const changes: string[][] = [];
      a.onChange((live) => changes.push(ids(live)));
      await a.start();
      await b.start();
      await a.tick();
      assert.deepEqual(changes, [['aaaaaaaaaaaa', 'bbbbbbbbbbbb']]);

      // b hangs (or its host went away): no more heartbeats from it.
      clock.advance(GONE_AFTER_MS);
      await a.tick();
      assert.deepEqual(ids(a.live()), ['aaaaaaaaaaaa', 'bbbbbbbbbbbb'], 'a heartbeat exactly goneAfterMs old still counts');
      clock.advance(1);
      await a.tick();
      assert.deepEqual(ids(a.live()), ['aaaaaaaaaaaa']);
      assert.equal(a.find('bbbbbbbbbbbb'), undefined);
      assert.deepEqual(changes, [['aaaaaaaaaaaa', 'bbbbbbbbbbbb'], ['aaaaaaaaaaaa']]);

      // It comes back (the hang ended): live again at the next look.
      await b.tick();
      await a.tick();
      assert.deepEqual(ids(a.live()), ['aaaaaaaaaaaa', 'bbbbbbbbbbbb']);
      assert.equal(changes.length, 3);
    });

    it('stop() removes its row, so the others drop it at their next look without waiting; stopping twice is fine', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const a = registry(t, storeA.replicas, 'aaaaaaaaaaaa', { url: 'http://10.0.0.5:8080' });
      const b = registry(t, storeB.replicas, 'bbbbbbbbbbbb', { url: 'http://10.0.0.6:8080' });
      await a.start();
      await b.start();
      await a.tick();
      assert.equal(a.live().length, 2);
      await b.stop();
      await b.stop();
      assert.deepEqual(
        (await storeA.replicas.list(0)).map((row) => row.id),
        ['aaaaaaaaaaaa'],
      );
      await a.tick();
      assert.deepEqual(ids(a.live()), ['aaaaaaaaaaaa']);
      await b.tick();
      assert.deepEqual(
        (await storeA.replicas.list(0)).map((row) => row.id),
        ['aaaaaaaaaaaa'],
        'a stopped registry heartbeats no more',
      );
    });

    it('is not ready while the store cannot be reached, counts the others until their heartbeats are too old, and stops without throwing', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const clock = testClock();
      const { log, lines } = recordingLog();
      const a = registry(t, storeA.replicas, 'aaaaaaaaaaaa', { url: 'http://10.0.0.5:8080', now: clock.now });
      const b = registry(t, storeB.replicas, 'bbbbbbbbbbbb', { url: 'http://10.0.0.6:8080', now: clock.now, log });
      await a.start();
      await b.start();
      assert.equal(b.notReadyBecause(), undefined);

      // b's connection to the store is gone (its pool ended: every query fails).
      await storeB.close();
      await b.tick();
      assert.equal(b.notReadyBecause(), 'the store cannot be reached');
      assert.deepEqual(ids(b.live()), ['aaaaaaaaaaaa', 'bbbbbbbbbbbb'], 'a was heard of just now');
      clock.advance(GONE_AFTER_MS + 1);
      await b.tick();
      assert.deepEqual(ids(b.live()), ['bbbbbbbbbbbb'], 'nothing heard of a for too long');
      assert.equal(b.notReadyBecause(), 'the store cannot be reached');
      assert.equal(lines.filter((line) => line.event === 'replica_heartbeat_failed').length, 1, 'one warning, not one per heartbeat');

      await b.stop();
      assert.ok(lines.some((line) => line.event === 'replica_remove_failed'));
    });

    it('is ready again once the store answers again', async (t) => {
      const [store] = await stores(t, backend);
      const { log, lines } = recordingLog();
      let reachable = true;
      const unreachable = (): Promise<never> => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.9:5432'));
      const flaky: ReplicaRepository = {
        heartbeat: (replica, now) => (reachable ? store.replicas.heartbeat(replica, now) : unreachable()),
        list: (aliveSince) => (reachable ? store.replicas.list(aliveSince) : unreachable()),
        remove: (id) => store.replicas.remove(id),
        removeGoneBefore: (before) => store.replicas.removeGoneBefore(before),
      };
      const a = registry(t, flaky, 'aaaaaaaaaaaa', { url: 'http://10.0.0.5:8080', log });
      reachable = false;
      await a.start();
      assert.equal(a.notReadyBecause(), 'the store cannot be reached', 'from the first heartbeat on');
      const failed = lines.find((line) => line.event === 'replica_heartbeat_failed');
      assert.match(String(failed?.err), /ECONNREFUSED/);
      reachable = true;
      await a.tick();
      assert.equal(a.notReadyBecause(), undefined);
      assert.ok(lines.some((line) => line.event === 'replica_heartbeat_recovered'));
      assert.deepEqual(
        (await store.replicas.list(0)).map((row) => row.id),
        ['aaaaaaaaaaaa'],
      );
    });

    it('is not ready without BROKER_REPLICA_URL while another replica is live, which the others cannot forward to', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const a = registry(t, storeA.replicas, 'aaaaaaaaaaaa');
      const b = registry(t, storeB.replicas, 'bbbbbbbbbbbb', { url: 'http://10.0.0.6:8080' });
      await a.start();
      assert.equal(a.notReadyBecause(), undefined, 'alone, nobody needs to reach it');
      await b.start();
      await a.tick();
      assert.equal(a.notReadyBecause(), 'another replica is running and BROKER_REPLICA_URL is not set');
      assert.equal(b.notReadyBecause(), undefined, 'the one with a URL is ready');
      assert.equal(b.find('aaaaaaaaaaaa')?.url, undefined, 'b knows a, and that it cannot reach it');
      await b.stop();
      await a.tick();
      assert.equal(a.notReadyBecause(), undefined, 'alone again');
    });

    it('forgets the rows of replicas long gone (killed without stopping)', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const clock = testClock();
      const forgetAfterMs = 60_000;
      const a = registry(t, storeA.replicas, 'aaaaaaaaaaaa', { url: 'http://10.0.0.5:8080', now: clock.now, forgetAfterMs });
      const killed = registry(t, storeB.replicas, 'bbbbbbbbbbbb', { url: 'http://10.0.0.6:8080', now: clock.now });
      await killed.start();
      await a.start();
      clock.advance(forgetAfterMs);
      await a.tick();
      assert.equal((await storeA.replicas.list(0)).length, 2, 'gone exactly forgetAfterMs: not yet forgotten');
      // Looked for once every forgetAfterMs: the next look forgets it.
      clock.advance(forgetAfterMs);
      await a.tick();
      assert.deepEqual(
        (await storeA.replicas.list(0)).map((row) => row.id),
        ['aaaaaaaaaaaa'],
      );
    });

    it('feeds the rate limiter: with two live replicas each enforces half the limit, rounded up', async (t) => {
      const [storeA, storeB] = await stores(t, backend);
      const a = registry(t, storeA.replicas, 'aaaaaaaaaaaa', { url: 'http://10.0.0.5:8080' });
      const b = registry(t, storeB.replicas, 'bbbbbbbbbbbb', { url: 'http://10.0.0.6:8080' });
      // A fixed clock: no bucket refills while the test spends it.
      const limiter = new RateLimiter(
        rateLimitFor(60),
        () => T0,
        () => a.live().length,
      );
      await a.start();
      assert.deepEqual(limiter.share(), { burst: 30, perMinute: 60 });
      await b.start();
      await a.tick();
      assert.deepEqual(limiter.share(), { burst: 15, perMinute: 30 });
      for (let i = 0; i < 15; i++) assert.equal(limiter.take('authorize:203.0.113.5'), undefined, `request ${i + 1}`);
      assert.equal(limiter.take('authorize:203.0.113.5'), 2, 'the 16th waits for the next token, at 30 a minute');
      assert.deepEqual(
        new RateLimiter(
          rateLimitFor(25),
          () => T0,
          () => a.live().length,
        ).share(),
        { burst: 7, perMinute: 13 },
      );

      await b.stop();
      await a.tick();
      assert.deepEqual(limiter.share(), { burst: 30, perMinute: 60 }, 'the whole limit once alone again');
    });
  });
}

describeRegistry(sqlite);

withPostgres('postgres', (freshUrl) => describeRegistry(postgres(freshUrl)));

describe('the forwarding key', () => {
  it('is HKDF-SHA256 of BROKER_ENCRYPTION_KEY (empty salt, info "forgejo-mcp-broker replica forwarding"), 32 bytes', () => {
    const encryptionKey = randomBytes(32);
    // RFC 5869 by hand: extract with a salt of zeros, then the first block of expand.
    const prk = createHmac('sha256', Buffer.alloc(32)).update(encryptionKey).digest();
    const expected = createHmac('sha256', prk)
      .update(Buffer.concat([Buffer.from('forgejo-mcp-broker replica forwarding'), Buffer.from([1])]))
      .digest();
    const key = replicaForwardingKey(encryptionKey);
    assert.deepEqual(key, expected);
    assert.equal(key.length, 32);
    assert.deepEqual(replicaForwardingKey(Buffer.from(encryptionKey)), key, 'every replica with the key derives the same');
    assert.notDeepEqual(replicaForwardingKey(randomBytes(32)), key);
    assert.notDeepEqual(key, encryptionKey);
  });
});
