/**
 * The token cache in front of the store: a token accepted once answers from
 * memory until it expires, the log names it, or the log stops being read;
 * the cache holds at most its bound. Store reads are counted by a wrapper.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Principal } from '../../src/auth/principal.js';
import { BrokerAuthenticator } from '../../src/oauth/authenticator.js';
import { TokenCache } from '../../src/oauth/token-cache.js';
import { sha256Hex } from '../../src/oauth/tokens.js';
import type { AccessTokenView, GrantRepository } from '../../src/store/store.js';

const RESOURCE = 'https://broker.example/mcp';
const T0 = 1_800_000_000_000;

/** Access tokens `token-N` of user `uN`'s grant `gN`, each expiring at T0 + 60 s; counts every read. */
class CountingGrants {
  reads = 0;
  /** Held reads: resolved by the test, to revoke while a read is on its way. */
  hold: Promise<void> | undefined;

  readonly repository = {
    findAccessToken: async (tokenHash: string): Promise<AccessTokenView | undefined> => {
      this.reads++;
      if (this.hold !== undefined) await this.hold;
      const n = [...Array(100).keys()].find((i) => sha256Hex(`token-${i}`) === tokenHash);
      if (n === undefined) return undefined;
      return {
        tokenHash,
        expiresAt: T0 + 60_000,
        revokedAt: null,
        credentialRevoked: false,
        forgejoLogin: `login-${n}`,
        grant: { grantId: `g${n}`, userId: `u${n}`, clientId: 'client', resource: RESOURCE, revokedAt: null },
      } as unknown as AccessTokenView;
    },
    touch: () => Promise.resolve(),
  } as unknown as GrantRepository;
}

function setUp(maxEntries = 10_000): {
  grants: CountingGrants;
  cache: TokenCache;
  authenticator: BrokerAuthenticator;
  clock: { now: number };
} {
  const clock = { now: T0 };
  const grants = new CountingGrants();
  const cache = new TokenCache({ maxEntries, maxStalenessMs: 3_000, now: () => clock.now });
  cache.followed(T0);
  const authenticator = new BrokerAuthenticator({
    grants: grants.repository,
    resource: RESOURCE,
    resourceMetadataUrl: `${RESOURCE}/meta`,
    cache,
    now: () => clock.now,
  });
  return { grants, cache, authenticator, clock };
}

function accepted(result: Principal | { error: string }): Principal {
  assert.ok(!('error' in result), `refused: ${JSON.stringify(result)}`);
  return result;
}

describe('the token cache', () => {
  it('answers a token accepted once without reading the store again', async () => {
    const { grants, authenticator } = setUp();
    const first = accepted(await authenticator.authenticate('token-1'));
    for (let i = 0; i < 5; i++) assert.deepEqual(accepted(await authenticator.authenticate('token-1')), first);
    assert.equal(grants.reads, 1);
  });

  it('never remembers a refusal', async () => {
    const { grants, authenticator } = setUp();
    assert.ok('error' in (await authenticator.authenticate('unknown')));
    assert.ok('error' in (await authenticator.authenticate('unknown')));
    assert.equal(grants.reads, 2);
  });

  it("honours the token's expiry", async () => {
    const { authenticator, clock } = setUp();
    accepted(await authenticator.authenticate('token-1'));
    clock.now = T0 + 60_000;
    // The store's view of the token (same expiry) now refuses it too.
    const result = await authenticator.authenticate('token-1');
    assert.deepEqual(result, { error: 'invalid_token', description: 'access token expired' });
  });

  it('holds at most its bound, dropping the least recently used', async () => {
    const { grants, cache, authenticator } = setUp(3);
    for (const n of [1, 2, 3]) accepted(await authenticator.authenticate(`token-${n}`));
    accepted(await authenticator.authenticate('token-1'));
    accepted(await authenticator.authenticate('token-4'));
    assert.equal(cache.size, 3);
    assert.equal(grants.reads, 4);
    accepted(await authenticator.authenticate('token-1'));
    assert.equal(grants.reads, 4, 'token-1 was used recently: still there');
    accepted(await authenticator.authenticate('token-2'));
    assert.equal(grants.reads, 5, 'token-2 was the least recently used: dropped');
  });

  it('drops what a log entry names: by user, client, grant, connection, access token and credential', async () => {
    const { grants, cache, authenticator } = setUp();
    const targets = [
      { kind: 'user', userId: 'u1' },
      { kind: 'client', clientId: 'client' },
      { kind: 'grant', grantId: 'g1' },
      { kind: 'connection', userId: 'u1', clientId: 'client' },
      { kind: 'access_token', grantId: 'g1' },
      { kind: 'credential', userId: 'u1' },
    ] as const;
    for (const target of targets) {
      accepted(await authenticator.authenticate('token-1'));
      accepted(await authenticator.authenticate('token-2'));
      const reads = grants.reads;
      assert.equal(cache.forget(target), target.kind === 'client' ? 2 : 1, target.kind);
      accepted(await authenticator.authenticate('token-1'));
      assert.equal(grants.reads, reads + 1, `${target.kind}: token-1 is read from the store again`);
      cache.forget({ kind: 'client', clientId: 'client' });
    }
  });

  it('does not remember a read that an invalidation overtook', async () => {
    const { grants, cache, authenticator } = setUp();
    let release!: () => void;
    grants.hold = new Promise((resolve) => (release = resolve));
    const reading = authenticator.authenticate('token-1');
    cache.forget({ kind: 'grant', grantId: 'g1' });
    release();
    accepted(await reading);
    grants.hold = undefined;
    accepted(await authenticator.authenticate('token-1'));
    assert.equal(grants.reads, 2);
  });

  it('trusts nothing once the log has not been read for longer than its bound, or could not be read', async () => {
    const { grants, cache, authenticator, clock } = setUp();
    accepted(await authenticator.authenticate('token-1'));
    clock.now = T0 + 3_001;
    accepted(await authenticator.authenticate('token-1'));
    assert.equal(grants.reads, 2, 'stale: read from the store');
    // Read to its end again: whatever it named meanwhile was dropped by then, so the rest is trusted again.
    cache.followed(clock.now);
    accepted(await authenticator.authenticate('token-1'));
    assert.equal(grants.reads, 2);
    cache.lost();
    accepted(await authenticator.authenticate('token-1'));
    assert.equal(grants.reads, 3, 'the log unreadable: read from the store');
    assert.equal(cache.size, 0);
  });
});
