/**
 * Two broker replicas on one PostgreSQL database refresh one user's Forgejo
 * credential at the same moment. Forgejo accepts a refresh token only once,
 * so exactly one refresh may reach it; the other replica must take the
 * result, not mistake Forgejo's refusal for a revoked credential.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { ForgejoError } from '../../src/forgejo/errors.js';
import type { AccessTokenStatus } from '../../src/forgejo/client.js';
import { ForgejoCredentialManager, type ForgejoRefresher } from '../../src/forgejo/credentials.js';
import { silentLogger } from '../../src/log/logger.js';
import { openPostgresStore } from '../../src/store/postgres.js';
import type { ForgejoTokens, Store } from '../../src/store/store.js';
import { eventually } from '../support/host.js';

const DATABASE_URL = process.env.BROKER_TEST_DATABASE_URL?.trim() ?? '';
const SKIP = process.env.BROKER_TEST_POSTGRES === 'skip';

/**
 * Forgejo's refresh-token invalidation: each refresh token works once, the
 * second use is refused. A refresh answers only once `contended` resolves.
 */
class OneShotForgejo implements ForgejoRefresher {
  calls = 0;
  private readonly used = new Set<string>();
  constructor(private readonly contended: () => Promise<void>) {}

  async refresh(refreshToken: string): Promise<ForgejoTokens> {
    this.calls++;
    await this.contended();
    if (this.used.has(refreshToken)) throw new ForgejoError('grant_refused', 'token was already used');
    this.used.add(refreshToken);
    return { accessToken: `access-${this.calls}`, refreshToken: `refresh-${this.calls}`, expiresAt: Date.now() + 3_600_000 };
  }

  accessTokenStatus(): Promise<AccessTokenStatus> {
    return Promise.resolve('live');
  }
}

describe('credential refresh across replicas', () => {
  if (DATABASE_URL === '') {
    it('needs a PostgreSQL server', { skip: SKIP ? 'BROKER_TEST_POSTGRES=skip' : false }, () => {
      assert.fail('BROKER_TEST_DATABASE_URL is not set: run `eval "$(.ci/postgres.sh start)"` or set BROKER_TEST_POSTGRES=skip');
    });
    return;
  }
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
  const schema = `broker_replicas_${randomBytes(6).toString('hex')}`;
  const stores: Store[] = [];
  after(async () => {
    for (const store of stores) await store.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it('one refresh reaches Forgejo; both replicas get the new token; nothing is revoked', async () => {
    await admin.query(`CREATE SCHEMA ${schema}`);
    const url = new URL(DATABASE_URL);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const key = randomBytes(32);
    for (let i = 0; i < 2; i++) stores.push(await openPostgresStore({ connectionString: url.href, encryptionKey: key }));
    const [first, second] = stores as [Store, Store];
    await first.credentials.replaceAfterLogin(
      { userId: '7', forgejoLogin: 'alice' },
      { accessToken: 'old-access', refreshToken: 'old-refresh', expiresAt: Date.now() + 1_000 },
      Date.now(),
    );
    // Forgejo answers the first refresh once the other replica has asked for the lease it holds:
    // a refused `INSERT … ON CONFLICT DO UPDATE … WHERE` still locks the row, leaving its xmax set.
    const forgejo = new OneShotForgejo(() =>
      eventually(async () => {
        const lease = await admin.query<{ xmax: string }>(`SELECT xmax::text AS xmax FROM ${schema}.refresh_leases WHERE user_id = '7'`);
        return lease.rows.some((row) => row.xmax !== '0');
      }, 'the other replica asked for the lease'),
    );
    const replicas = [first, second].map(
      (store) => new ForgejoCredentialManager({ credentials: store.credentials, forgejo, logger: silentLogger() }),
    );
    const revoked: string[] = [];
    for (const replica of replicas) replica.onCredentialRevoked((userId) => revoked.push(userId));

    const [a, b] = await Promise.all(replicas.map((replica) => replica.access('7', 60_000)));
    assert.equal(forgejo.calls, 1);
    assert.equal(a?.accessToken, 'access-1');
    assert.equal(b?.accessToken, 'access-1');
    assert.deepEqual(revoked, []);
    const stored = await second.credentials.find('7');
    assert.equal(stored?.refreshToken, 'refresh-1');
    for (const replica of replicas) replica.close();
  });
});
