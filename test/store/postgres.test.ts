/**
 * The PostgreSQL store against a real server: the shared Store contract, and
 * what only several replicas on one database can show. Each test gets its
 * own schema (search_path in the URL) in the database named by
 * BROKER_TEST_DATABASE_URL; `eval "$(.ci/postgres.sh start)"` provides one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { silentLogger } from '../../src/log/logger.js';
import { openBrokerAuth } from '../../src/oauth/setup.js';
import { startForgejoStandin } from '../../src/standin/forgejo.js';
import { openPostgresStore, type PostgresStoreOptions } from '../../src/store/postgres.js';
import { MIGRATIONS_TABLE, POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres-schema.js';
import type { Store } from '../../src/store/store.js';
import { eventually } from '../support/host.js';
import {
  client,
  code,
  describeStore,
  gate,
  grant,
  legacySession,
  pair,
  seedGrant,
  type StoreBackend,
  T0,
  tokens,
  user,
} from './store-contract.js';

const DATABASE_URL = process.env.BROKER_TEST_DATABASE_URL?.trim() ?? '';
const SKIP = process.env.BROKER_TEST_POSTGRES === 'skip';

if (DATABASE_URL === '') {
  describe('postgres store', () => {
    if (SKIP) {
      it('runs against a PostgreSQL server', { skip: 'BROKER_TEST_POSTGRES=skip and no BROKER_TEST_DATABASE_URL' }, () => undefined);
    } else {
      it('needs a PostgreSQL server', () => {
        assert.fail(
          'BROKER_TEST_DATABASE_URL is not set. Start a throwaway server with `eval "$(.ci/postgres.sh start)"` ' +
            '(stop it with `.ci/postgres.sh stop`), or set BROKER_TEST_POSTGRES=skip to skip the PostgreSQL tests on purpose.',
        );
      });
    }
  });
} else {
  describePostgres(DATABASE_URL);
}

function describePostgres(databaseUrl: string): void {
  const admin = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  admin.on('error', () => undefined);
  const schemas = new Map<string, string>();

  after(async () => {
    for (const schema of schemas.values()) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  /**
   * A URL whose connections live in a new, empty schema; `tag` names them in
   * pg_stat_activity, `settings` are more `-c name=value` server settings.
   */
  async function freshUrl(tag?: string, settings: readonly string[] = []): Promise<string> {
    const schema = `broker_test_${randomBytes(6).toString('hex')}`;
    await admin.query(`CREATE SCHEMA ${schema}`);
    const url = new URL(databaseUrl);
    url.searchParams.set('options', [`search_path=${schema}`, ...settings].map((setting) => `-c ${setting}`).join(' '));
    if (tag !== undefined) url.searchParams.set('application_name', tag);
    schemas.set(url.href, schema);
    return url.href;
  }

  /**
   * Whether another replica has asked for the user's lease since it was taken:
   * a refused `INSERT … ON CONFLICT DO UPDATE … WHERE` still locks the row, and
   * the lock leaves its transaction id in the row's xmax.
   */
  async function leaseWasAskedFor(schema: string, userId: string): Promise<boolean> {
    const lease = await admin.query<{ xmax: string }>(`SELECT xmax::text AS xmax FROM ${schema}.refresh_leases WHERE user_id = $1`, [
      userId,
    ]);
    return lease.rows.some((row) => row.xmax !== '0');
  }

  /** The database's clock in milliseconds, as leases read it. */
  async function databaseNowMs(): Promise<number> {
    const now = await admin.query<{ now: string }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now');
    return Number(now.rows[0]?.now);
  }

  function schemaOf(url: string): string {
    const schema = schemas.get(url);
    if (schema === undefined) throw new Error(`no schema was made for ${url}`);
    return schema;
  }

  const backend: StoreBackend = {
    fresh: () => freshUrl(),
    open: (connectionString, encryptionKey) => openPostgresStore({ connectionString, encryptionKey }),
    contentsAtRest: async (url) => {
      const schema = schemaOf(url);
      const tables = await admin.query<{ table_name: string }>(
        'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
        [schema],
      );
      const dumps: string[] = [];
      for (const { table_name: table } of tables.rows) {
        const rows = await admin.query<{ row: string }>(`SELECT t::text AS row FROM ${schema}.${pg.escapeIdentifier(table)} t`);
        dumps.push(...rows.rows.map((row) => row.row));
      }
      return Buffer.from(dumps.join('\n'), 'utf8');
    },
    markNewerSchema: async (url) => {
      await admin.query(`INSERT INTO ${schemaOf(url)}.${MIGRATIONS_TABLE} (version, applied_at) VALUES ($1, 0)`, [
        POSTGRES_SCHEMA_VERSION + 1,
      ]);
    },
  };

  describeStore('postgres', backend);

  describe('postgres store: several replicas on one database', () => {
    const key = randomBytes(32);
    const open = (url: string, options: Partial<PostgresStoreOptions> = {}): Promise<Store> =>
      openPostgresStore({ connectionString: url, encryptionKey: key, ...options });

    /** Two stores on one schema, as two broker replicas would hold them. */
    async function replicas(body: (a: Store, b: Store, url: string) => Promise<void>): Promise<void> {
      const url = await freshUrl();
      const a = await open(url);
      const b = await open(url);
      try {
        await body(a, b, url);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    }

    it('records every migration once in broker_schema_migrations', async () => {
      const url = await freshUrl();
      await (await open(url)).close();
      await (await open(url)).close();
      const rows = await admin.query<{ version: number }>(`SELECT version FROM ${schemaOf(url)}.${MIGRATIONS_TABLE} ORDER BY version`);
      assert.deepEqual(
        rows.rows.map((row) => row.version),
        Array.from({ length: POSTGRES_SCHEMA_VERSION }, (_, i) => i + 1),
      );
    });

    it('migrates once when several replicas start at the same moment', async () => {
      const url = await freshUrl();
      const stores = await Promise.all(Array.from({ length: 6 }, () => open(url)));
      try {
        const rows = await admin.query<{ count: string }>(`SELECT count(*) AS count FROM ${schemaOf(url)}.${MIGRATIONS_TABLE}`);
        assert.equal(Number(rows.rows[0]?.count), POSTGRES_SCHEMA_VERSION);
        // Every replica works on the one schema.
        await stores[0]?.clients.create(client);
        for (const store of stores) assert.deepEqual(await store.clients.find(client.clientId), client);
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    });

    it('lets each replica see the other replica’s writes at once', async () => {
      await replicas(async (a, b) => {
        await a.clients.create(client);
        assert.deepEqual(await b.clients.find(client.clientId), client);

        const login = await a.credentials.replaceAfterLogin(user, tokens, T0);
        const refreshed = await b.credentials.storeRefreshed(user.userId, login.generation, { ...tokens, refreshToken: 'r2' }, T0 + 1);
        assert.equal((await a.credentials.find(user.userId))?.refreshToken, 'r2');
        // Replica A still holds the older generation: its refresh result is refused.
        assert.equal(
          await a.credentials.storeRefreshed(user.userId, login.generation, { ...tokens, refreshToken: 'r-stale' }, T0 + 2),
          undefined,
        );
        assert.equal((await b.credentials.find(user.userId))?.generation, refreshed?.generation);

        await a.codes.create(code('code-x'));
        assert.equal((await b.codes.consume('code-x', T0)).status, 'valid');
        assert.equal(await a.grants.createFromCode('code-x', grant('g-x'), pair('x')), true);
        assert.deepEqual(await a.codes.consume('code-x', T0), { status: 'replayed', grantId: 'g-x' });
        assert.equal((await b.grants.findAccessToken('at-x'))?.grant.grantId, 'g-x');

        await b.signIns.create({ tokenHash: 'si', userId: user.userId, createdAt: T0, expiresAt: T0 + 1000 });
        assert.equal(await a.signIns.findUserId('si', T0), user.userId);

        // A legacy session started on one replica carries on on the other.
        await a.legacySessions.save(legacySession('sess'));
        assert.deepEqual(await b.legacySessions.find('sess'), legacySession('sess'));
        await b.legacySessions.touch('sess', T0 + 60_000);
        await a.legacySessions.touch('sess', T0 + 30_000);
        assert.equal((await b.legacySessions.find('sess'))?.lastUsedAt, T0 + 60_000);
        assert.equal(await b.legacySessions.deleteOfUser(user.userId), 1);
        assert.equal(await a.legacySessions.find('sess'), undefined);
      });
    });

    it('rotates a refresh token on one replica and revokes the grant once when two race with it', async () => {
      await replicas(async (a, b) => {
        for (let round = 0; round < 10; round++) {
          await seedGrant(a, `g-${round}`, `${round}`);
          const outcomes = await Promise.all([
            exchangeWithoutGrace(a, `rt-${round}`, `${round}-a`, T0 + 1),
            exchangeWithoutGrace(b, `rt-${round}`, `${round}-b`, T0 + 2),
          ]);
          assert.deepEqual([...outcomes].sort(), ['reuse_revoked', 'rotated'], `round ${round}: ${outcomes.join(', ')}`);
          const revoker = outcomes[0] === 'reuse_revoked' ? T0 + 1 : T0 + 2;
          const winner = outcomes[0] === 'rotated' ? 'a' : 'b';
          const issued = await b.grants.findAccessToken(`at-${round}-${winner}`);
          assert.equal(issued?.grant.revokedAt, revoker, 'the pair issued to the winner died with the grant');
          // A later revocation, from either replica, changes nothing: the grant was revoked exactly once.
          await a.grants.revokeGrant(`g-${round}`, T0 + 9);
          assert.equal((await b.grants.findRefreshToken(`rt-${round}`))?.grant.revokedAt, revoker);
        }
      });
    });

    it('gives the grace pair to the replica that lost a concurrent rotation', async () => {
      await replicas(async (a, b) => {
        await seedGrant(a, 'g-grace', 'grace');
        const [fromA, fromB] = await Promise.all([
          a.grants.rotateRefreshToken('rt-grace', pair('grace-a'), { sealed: 'pair-a', sealedUntil: T0 + 10_000 }, T0 + 1),
          b.grants.rotateRefreshToken('rt-grace', pair('grace-b'), { sealed: 'pair-b', sealedUntil: T0 + 10_000 }, T0 + 1),
        ]);
        assert.deepEqual([fromA, fromB].sort(), ['already_rotated', 'rotated']);
        const view = await (fromA === 'rotated' ? b : a).grants.findRefreshToken('rt-grace');
        assert.equal(view?.successorSealed, fromA === 'rotated' ? 'pair-a' : 'pair-b', 'the loser reads the winner’s sealed pair');
        assert.equal(view?.successorRotated, false);
        assert.equal(view?.grant.revokedAt, null);
      });
    });

    it('refreshes one user on one replica at a time', async () => {
      await replicas(async (a, b, url) => {
        const held = gate();
        const order: string[] = [];
        const onA = a.credentials.withRefreshLock(user.userId, async () => {
          order.push('a:start');
          await held.wait;
          order.push('a:end');
        });
        await eventually(() => order.length > 0, 'A holds the lease');
        const onB = b.credentials.withRefreshLock(user.userId, () => {
          order.push('b');
          return Promise.resolve();
        });
        // Replica B refreshes another user meanwhile.
        await b.credentials.withRefreshLock('someone-else', () => Promise.resolve());
        await eventually(() => leaseWasAskedFor(schemaOf(url), user.userId), 'B asked for the lease A holds');
        assert.deepEqual(order, ['a:start'], 'B waits while A holds the lease');
        held.open();
        await Promise.all([onA, onB]);
        assert.deepEqual(order, ['a:start', 'a:end', 'b']);
      });
    });

    it('takes over a lease left by a replica that died while refreshing', async () => {
      const url = await freshUrl();
      const store = await open(url, { refreshLeaseMs: 400 });
      try {
        const dead = await admin.query<{ expires_at: string }>(
          `INSERT INTO ${schemaOf(url)}.refresh_leases (user_id, holder, expires_at)
           VALUES ($1, 'dead-replica', (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 300)
           RETURNING expires_at`,
          [user.userId],
        );
        const deadExpiresAt = Number(dead.rows[0]?.expires_at);
        const takenAt = await store.credentials.withRefreshLock(user.userId, () => databaseNowMs());
        assert.ok(takenAt >= deadExpiresAt, 'it took the lease only after the dead one ran out');
        const left = await admin.query(`SELECT 1 FROM ${schemaOf(url)}.refresh_leases`);
        assert.equal(left.rowCount, 0, 'the lease is given back');
      } finally {
        await store.close();
      }
    });

    it('keeps working after the server drops its connections', async () => {
      const tag = `broker-test-${randomBytes(4).toString('hex')}`;
      const url = await freshUrl(tag);
      const idleErrors: Error[] = [];
      const store = await open(url, { onIdleError: (error) => idleErrors.push(error) });
      try {
        await store.clients.create(client);
        const killed = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [tag]);
        assert.ok((killed.rowCount ?? 0) > 0, 'the store held a connection');
        await eventually(() => idleErrors.length > 0, 'the idle connection’s error');
        assert.ok(idleErrors.length > 0, 'the idle connection’s error reached the listener instead of crashing');
        assert.equal(await store.ready(), true);
        assert.deepEqual(await store.clients.find(client.clientId), client);
      } finally {
        await store.close();
      }
    });

    it('writes credentials on a server that does not wait for its disk by default', async () => {
      // synchronous_commit=off would let a crash lose the newest Forgejo refresh token; credential writes turn it back on.
      const url = await freshUrl(undefined, ['synchronous_commit=off']);
      const store = await open(url);
      try {
        const login = await store.credentials.replaceAfterLogin(user, tokens, T0);
        const refreshed = await store.credentials.storeRefreshed(user.userId, login.generation, { ...tokens, refreshToken: 'r2' }, T0 + 1);
        assert.equal(refreshed?.refreshToken, 'r2');
        assert.equal(await store.credentials.endCredentialRevokingGrants(user.userId, login.generation + 1, T0 + 2), true);
      } finally {
        await store.close();
      }
    });

    it('fails to open, promptly and without a password in the message, when the server cannot be reached', async () => {
      const unreachable = new URL(databaseUrl);
      unreachable.port = '1';
      unreachable.password = 'hunter2';
      await assert.rejects(
        openPostgresStore({ connectionString: unreachable.href, encryptionKey: key, connectTimeoutMs: 2_000 }),
        (error: unknown) => error instanceof Error && !error.message.includes('hunter2'),
      );
    });

    it('loses nothing across a restart of every replica', async () => {
      const url = await freshUrl();
      const a = await open(url);
      const b = await open(url);
      await seedGrant(a, 'g-restart', 'restart');
      await b.grants.rotateRefreshToken('rt-restart', pair('restart-2'), { sealed: 'sealed', sealedUntil: T0 + 10_000 }, T0 + 1);
      const refreshed = await b.credentials.storeRefreshed(user.userId, 1, { ...tokens, refreshToken: 'newest' }, T0 + 2);
      await Promise.all([a.close(), b.close()]);
      const c = await open(url);
      try {
        const credential = await c.credentials.find(user.userId);
        assert.equal(credential?.refreshToken, 'newest', 'the newest Forgejo refresh token was committed');
        assert.equal(credential?.generation, refreshed?.generation);
        assert.equal((await c.grants.findAccessToken('at-restart-2'))?.grant.grantId, 'g-restart');
        assert.equal((await c.grants.findRefreshToken('rt-restart'))?.successorSealed, 'sealed');
        assert.deepEqual(await c.codes.consume('code-g-restart', T0), { status: 'replayed', grantId: 'g-restart' });
      } finally {
        await c.close();
      }
    });
  });

  describe('openBrokerAuth with a database URL', () => {
    let forgejo: Awaited<ReturnType<typeof startForgejoStandin>>;
    before(async () => {
      forgejo = await startForgejoStandin({ users: [], applications: [] });
    });
    after(async () => {
      await forgejo.close();
    });

    it('opens the PostgreSQL store, with the configured key, and reports readiness', async () => {
      const url = await freshUrl();
      const encryptionKey = randomBytes(32);
      const auth = await openBrokerAuth({
        publicUrl: new URL('http://127.0.0.1:8080'),
        forgejoUrl: new URL(forgejo.url),
        forgejoClientId: 'app',
        forgejoClientSecret: 'secret',
        forgejoScopes: 'read:user',
        dataDir: '/nonexistent/never-created',
        databaseUrl: url,
        encryptionKey,
        logger: silentLogger(),
      });
      try {
        assert.equal(await auth.ready(), true);
        await auth.store.credentials.replaceAfterLogin(user, tokens, T0);
        const other = await openPostgresStore({ connectionString: url, encryptionKey });
        try {
          assert.equal((await other.credentials.find(user.userId))?.refreshToken, tokens.refreshToken);
        } finally {
          await other.close();
        }
      } finally {
        await auth.close();
      }
      assert.equal(await auth.ready(), false);
    });
  });
}

/**
 * What the token endpoint does with a refresh token when the grace period is
 * off: rotate it, or, when it was already rotated, treat it as reused and
 * revoke the grant.
 */
async function exchangeWithoutGrace(
  store: Store,
  oldHash: string,
  suffix: string,
  at: number,
): Promise<'rotated' | 'reuse_revoked' | 'refused'> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const view = await store.grants.findRefreshToken(oldHash);
    if (view === undefined || view.grant.revokedAt !== null) return 'refused';
    if (view.rotatedAt !== null) {
      await store.grants.revokeGrant(view.grant.grantId, at);
      return 'reuse_revoked';
    }
    if ((await store.grants.rotateRefreshToken(oldHash, pair(suffix), null, at)) === 'rotated') return 'rotated';
  }
  return 'refused';
}
