import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { BrokerError, isBrokerError } from '../../src/errors/errors.js';
import { ForgejoError } from '../../src/forgejo/errors.js';
import type { AccessTokenStatus } from '../../src/forgejo/client.js';
import { ForgejoCredentialManager, type ForgejoRefresher, type RefreshOutcome } from '../../src/forgejo/credentials.js';
import { silentLogger } from '../../src/log/logger.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { ForgejoTokens, Store } from '../../src/store/store.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;
const alice = { userId: '1', forgejoLogin: 'alice' };

/** A Forgejo refresh endpoint whose answers the test decides, one call at a time, and its `GET /api/v1/user`. */
class ScriptedRefresher implements ForgejoRefresher {
  readonly calls: string[] = [];
  /** Access tokens asked about with `GET /api/v1/user`. */
  readonly checked: string[] = [];
  /** What `GET /api/v1/user` says of every access token. */
  accessToken: AccessTokenStatus = 'live';
  /** Runs while `GET /api/v1/user` is in flight (time passing before Forgejo answers). */
  whileChecking: () => void = () => undefined;
  readonly #answers: (() => Promise<ForgejoTokens>)[] = [];

  answer(next: () => Promise<ForgejoTokens>): void {
    this.#answers.push(next);
  }

  refresh(refreshToken: string): Promise<ForgejoTokens> {
    this.calls.push(refreshToken);
    const next = this.#answers.shift();
    return next === undefined ? Promise.reject(new Error('unexpected refresh')) : next();
  }

  accessTokenStatus(accessToken: string): Promise<AccessTokenStatus> {
    this.checked.push(accessToken);
    this.whileChecking();
    return Promise.resolve(this.accessToken);
  }
}

/** Gives alice a broker grant with one token pair, as a completed authorization would. */
async function seedGrant(store: Store, grantId: string, at: number): Promise<void> {
  const codeHash = `code-${grantId}`;
  await store.codes.create({
    codeHash,
    clientId: 'client-1',
    userId: alice.userId,
    redirectUri: 'http://127.0.0.1/callback',
    codeChallenge: 'c'.repeat(43),
    resource: 'http://127.0.0.1/mcp',
    scope: null,
    createdAt: at,
    expiresAt: at + MINUTE,
  });
  assert.equal((await store.codes.consume(codeHash, at)).status, 'valid');
  const grant = {
    grantId,
    userId: alice.userId,
    clientId: 'client-1',
    resource: 'http://127.0.0.1/mcp',
    scope: null,
    createdAt: at,
    revokedAt: null,
  };
  const tokens = {
    accessTokenHash: `at-${grantId}`,
    accessExpiresAt: at + HOUR,
    refreshTokenHash: `rt-${grantId}`,
    refreshExpiresAt: at + 24 * HOUR,
  };
  assert.equal(await store.grants.createFromCode(codeHash, grant, tokens), true);
}

async function grantRevokedAt(store: Store, grantId: string): Promise<number | null | undefined> {
  return (await store.grants.findRefreshToken(`rt-${grantId}`))?.grant.revokedAt;
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('Forgejo credential manager', () => {
  let dir: string;
  let store: Store;
  let now: number;
  let forgejo: ScriptedRefresher;
  let manager: ForgejoCredentialManager;

  function createManager(retryInitialDelayMs: number): ForgejoCredentialManager {
    return new ForgejoCredentialManager({
      credentials: store.credentials,
      forgejo,
      logger: silentLogger(),
      now: () => now,
      retryInitialDelayMs,
    });
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'broker-credentials-test-'));
    store = await openSqliteStore({ dataDir: dir, encryptionKey: randomBytes(32) });
    now = 1_800_000_000_000;
    forgejo = new ScriptedRefresher();
    manager = createManager(HOUR);
    await store.credentials.replaceAfterLogin(alice, { accessToken: 'a1', refreshToken: 'r1', expiresAt: now + HOUR }, now);
  });

  afterEach(async () => {
    manager.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('hands out the stored token while it is valid long enough', async () => {
    assert.deepEqual(await manager.access(alice.userId, 5 * MINUTE), { accessToken: 'a1', expiresAt: now + HOUR });
    assert.equal(forgejo.calls.length, 0);
  });

  it('refuses a user without a live credential', async () => {
    await assert.rejects(manager.access('999', 0), (error) => isBrokerError(error, 'credential_revoked'));
  });

  it('refreshes near expiry, storing the new refresh token before returning, and tells listeners', async () => {
    const changed: string[] = [];
    manager.onCredentialChanged((userId) => changed.push(userId));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(async () => {
      // Nothing is stored before Forgejo answered.
      assert.equal((await store.credentials.find(alice.userId))?.refreshToken, 'r1');
      return { accessToken: 'a2', refreshToken: 'r2', expiresAt: now + HOUR };
    });
    const access = await manager.access(alice.userId, 5 * MINUTE);
    assert.equal(access.accessToken, 'a2');
    assert.deepEqual(forgejo.calls, ['r1']);
    assert.equal((await store.credentials.find(alice.userId))?.refreshToken, 'r2');
    assert.deepEqual(changed, [alice.userId]);
  });

  it('runs one refresh per user however many callers ask at once', async () => {
    now += HOUR - MINUTE;
    const gate = deferred<ForgejoTokens>();
    forgejo.answer(() => gate.promise);
    const callers = Array.from({ length: 8 }, () => manager.access(alice.userId, 5 * MINUTE));
    // Let every caller reach the single flight before Forgejo answers.
    await new Promise((resolve) => setImmediate(resolve));
    gate.resolve({ accessToken: 'a2', refreshToken: 'r2', expiresAt: now + HOUR });
    const results = await Promise.all(callers);
    assert.deepEqual(new Set(results.map((result) => result.accessToken)), new Set(['a2']));
    assert.equal(forgejo.calls.length, 1);
  });

  it('records "refresh started" durably before sending the refresh', async () => {
    now += HOUR - 2 * MINUTE;
    forgejo.answer(async () => {
      assert.equal((await store.credentials.find(alice.userId))?.refreshStartedAt, now);
      return { accessToken: 'a2', refreshToken: 'r2', expiresAt: now + HOUR };
    });
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a2');
    assert.equal((await store.credentials.find(alice.userId))?.refreshStartedAt, null, 'the answer was stored');
  });

  it('a refresh with an unknown outcome is no revocation: the start stays recorded and the access token serves', async () => {
    const revoked: string[] = [];
    manager.onCredentialRevoked((userId) => revoked.push(userId));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new BrokerError('unavailable', 'Forgejo refresh failed: timeout')));
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    const stored = await store.credentials.find(alice.userId);
    assert.notEqual(stored?.refreshStartedAt, null, 'still in doubt');
    assert.equal(stored?.revokedAt, null);
    assert.deepEqual(revoked, []);
  });

  it('a refused refresh token is no revocation: the access token serves while Forgejo accepts it, and no refresh is tried again', async () => {
    const revoked: string[] = [];
    manager.onCredentialRevoked((userId) => revoked.push(userId));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new ForgejoError('grant_refused', 'Forgejo refresh refused: unauthorized_client')));
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    assert.deepEqual(forgejo.calls, ['r1'], 'a refused refresh token is not sent again');
    assert.deepEqual(forgejo.checked, ['a1', 'a1'], 'the access token is checked whenever a fresher one is wanted');
    const stored = await store.credentials.find(alice.userId);
    assert.equal(stored?.revokedAt, null);
    assert.notEqual(stored?.refreshRefusedAt, null);
    assert.deepEqual(revoked, []);
  });

  it('a refresh started before and never finished (a broker killed mid-flight) is sent again; its refusal keeps the access token', async () => {
    const credential = await store.credentials.find(alice.userId);
    assert.equal(await store.credentials.markRefreshStarted(alice.userId, credential?.generation ?? 0, now), true);
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new ForgejoError('grant_refused', 'Forgejo refresh refused: unauthorized_client')));
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    assert.deepEqual(forgejo.calls, ['r1']);
    assert.equal((await store.credentials.find(alice.userId))?.revokedAt, null);
  });

  it('ends the credential when Forgejo refuses the access token before its expiry, revoking the user grants, and tells listeners', async () => {
    await seedGrant(store, 'g1', now);
    await seedGrant(store, 'g2', now);
    await store.consents.record(alice.userId, 'client-1', now);
    const revoked: string[] = [];
    manager.onCredentialRevoked((userId) => revoked.push(userId));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new ForgejoError('grant_refused', 'Forgejo refresh refused: invalid_grant')));
    forgejo.accessToken = 'refused';
    await assert.rejects(manager.access(alice.userId, 5 * MINUTE), (error) => isBrokerError(error, 'credential_revoked'));
    assert.deepEqual(revoked, [alice.userId]);
    const ended = (await store.credentials.find(alice.userId))?.revokedAt;
    assert.equal(ended, now);
    assert.equal(await grantRevokedAt(store, 'g1'), ended, 'revoked with the credential');
    assert.equal(await grantRevokedAt(store, 'g2'), ended);
    assert.equal(await store.consents.has(alice.userId, 'client-1'), true, 'consent stays');
    await assert.rejects(manager.access(alice.userId, 0), (error) => isBrokerError(error, 'credential_revoked'));
    assert.equal(forgejo.calls.length, 1, 'a dead credential is not refreshed again');
    await manager.storeLogin(alice, { accessToken: 'a2', refreshToken: 'r2', expiresAt: now + HOUR });
    assert.equal(await grantRevokedAt(store, 'g1'), ended, 'the next login revives no grant');
  });

  it('ends the credential once an access token that cannot be refreshed expires, keeping the user grants for the next login', async () => {
    await seedGrant(store, 'g1', now);
    const revoked: string[] = [];
    manager.onCredentialRevoked((userId) => revoked.push(userId));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new ForgejoError('grant_refused', 'Forgejo refresh refused: unauthorized_client')));
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    now += 2 * MINUTE;
    await assert.rejects(manager.access(alice.userId, 0), (error) => isBrokerError(error, 'credential_revoked'));
    assert.deepEqual(revoked, [alice.userId]);
    assert.equal(forgejo.calls.length, 1);
    assert.notEqual((await store.credentials.find(alice.userId))?.revokedAt, null);
    assert.equal(await grantRevokedAt(store, 'g1'), null);
  });

  it('takes a 401 that arrives once the access token expired for the expiry, keeping the user grants', async () => {
    await seedGrant(store, 'g1', now);
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new ForgejoError('grant_refused', 'Forgejo refresh refused: unauthorized_client')));
    forgejo.accessToken = 'refused';
    forgejo.whileChecking = () => {
      now += 2 * MINUTE;
    };
    await assert.rejects(manager.access(alice.userId, 5 * MINUTE), (error) => isBrokerError(error, 'credential_revoked'));
    assert.notEqual((await store.credentials.find(alice.userId))?.revokedAt, null);
    assert.equal(await grantRevokedAt(store, 'g1'), null);
  });

  it('reports the outcome of every refresh sent: ok, refused, unknown', async () => {
    const outcomes: RefreshOutcome[] = [];
    manager.onRefreshOutcome((outcome) => outcomes.push(outcome));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.resolve({ accessToken: 'a2', refreshToken: 'r2', expiresAt: now + 3 * MINUTE }));
    await manager.access(alice.userId, 5 * MINUTE);
    forgejo.answer(() => Promise.reject(new Error('socket hang up')));
    await manager.access(alice.userId, 5 * MINUTE);
    manager.close();
    manager = createManager(HOUR);
    manager.onRefreshOutcome((outcome) => outcomes.push(outcome));
    forgejo.answer(() => Promise.reject(new ForgejoError('grant_refused', 'Forgejo refresh refused: unauthorized_client')));
    await manager.access(alice.userId, 5 * MINUTE);
    assert.deepEqual(outcomes, ['ok', 'unknown', 'refused']);
  });

  it('keeps the old token through a passing failure and backs off instead of hammering Forgejo', async () => {
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new BrokerError('unavailable', 'HTTP 502')));
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    assert.equal(forgejo.calls.length, 1);
  });

  it('retries in the background after a passing failure until it succeeds', async () => {
    manager.close();
    manager = createManager(1);
    const changed = deferred<string>();
    manager.onCredentialChanged((userId) => changed.resolve(userId));
    now += HOUR - 2 * MINUTE;
    forgejo.answer(() => Promise.reject(new Error('fetch failed')));
    forgejo.answer(() => Promise.reject(new BrokerError('unavailable', 'HTTP 503')));
    forgejo.answer(() => Promise.resolve({ accessToken: 'a2', refreshToken: 'r2', expiresAt: now + HOUR }));
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a1');
    // The retry timer is unref'd (it must not hold a shutting-down broker open); hold the loop here.
    const keepAlive = setInterval(() => undefined, 1000);
    try {
      assert.equal(await changed.promise, alice.userId);
    } finally {
      clearInterval(keepAlive);
    }
    assert.equal(forgejo.calls.length, 3);
    assert.equal((await manager.access(alice.userId, 5 * MINUTE)).accessToken, 'a2');
  });

  it('reports unavailable once the token has expired and Forgejo still fails', async () => {
    now += HOUR + 1;
    forgejo.answer(() => Promise.reject(new BrokerError('unavailable', 'HTTP 500')));
    await assert.rejects(manager.access(alice.userId, MINUTE), (error) => isBrokerError(error, 'unavailable'));
    assert.equal((await store.credentials.find(alice.userId))?.revokedAt, null, 'not revoked');
  });

  it('lets a login that happens during a refresh win', async () => {
    now += HOUR - MINUTE;
    const gate = deferred<ForgejoTokens>();
    forgejo.answer(() => gate.promise);
    const pending = manager.access(alice.userId, 5 * MINUTE);
    await new Promise((resolve) => setImmediate(resolve));
    await manager.storeLogin(alice, { accessToken: 'login-a', refreshToken: 'login-r', expiresAt: now + HOUR });
    gate.resolve({ accessToken: 'stale-a', refreshToken: 'stale-r', expiresAt: now + HOUR });
    assert.equal((await pending).accessToken, 'login-a');
    assert.equal((await store.credentials.find(alice.userId))?.refreshToken, 'login-r');
  });

  it('does not kill a credential that a login replaced while Forgejo refused the older one', async () => {
    now += HOUR - MINUTE;
    let refuse!: () => void;
    forgejo.answer(
      () =>
        new Promise<ForgejoTokens>((_, reject) => {
          refuse = () => reject(new ForgejoError('grant_refused', 'token was already used'));
        }),
    );
    const pending = manager.access(alice.userId, 5 * MINUTE);
    await new Promise((resolve) => setImmediate(resolve));
    await manager.storeLogin(alice, { accessToken: 'login-a', refreshToken: 'login-r', expiresAt: now + HOUR });
    refuse();
    assert.equal((await pending).accessToken, 'login-a');
    assert.equal((await store.credentials.find(alice.userId))?.revokedAt, null);
  });

  it('tells listeners about a login and stops notifying after unsubscribe', async () => {
    const seen: string[] = [];
    const unsubscribe = manager.onCredentialChanged((userId) => seen.push(userId));
    await manager.storeLogin(alice, { accessToken: 'x', refreshToken: 'y', expiresAt: now + HOUR });
    unsubscribe();
    await manager.storeLogin(alice, { accessToken: 'x2', refreshToken: 'y2', expiresAt: now + HOUR });
    assert.deepEqual(seen, [alice.userId]);
  });
});
