/**
 * The behaviour every `Store` backend must have, as one suite run against
 * each (test/store/sqlite.test.ts, test/store/postgres.test.ts). Besides the
 * plain repository behaviour it checks every atomic operation under real
 * concurrency: for SQLite that is trivially serial, for PostgreSQL the calls
 * run on several pooled connections at once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { isBrokerError } from '../../src/errors/errors.js';
import type {
  AuthorizationCode,
  Grant,
  PendingAuthorization,
  RegisteredClient,
  Store,
  StoredLegacySession,
  TokenHashes,
} from '../../src/store/store.js';

export const T0 = 1_800_000_000_000;
export const HOUR = 3_600_000;

/** How a backend gives the suite a place to keep a store, and a look at what it keeps. */
export interface StoreBackend {
  /** A new, empty place for a store: a directory, a database schema. */
  fresh(): Promise<string>;
  open(location: string, key: Buffer): Promise<Store>;
  /** Everything the backend keeps at rest for the location, to look for secrets in the clear. */
  contentsAtRest(location: string): Promise<Buffer>;
  /** Makes the location look as if a newer broker had migrated it. */
  markNewerSchema(location: string): Promise<void>;
}

export async function withStore(
  backend: StoreBackend,
  location: string,
  key: Buffer,
  body: (store: Store) => Promise<void>,
): Promise<void> {
  const store = await backend.open(location, key);
  try {
    await body(store);
  } finally {
    await store.close();
  }
}

export const client: RegisteredClient = {
  clientId: 'client-1',
  clientSecretHash: null,
  tokenEndpointAuthMethod: 'none',
  redirectUris: ['http://127.0.0.1/callback'],
  grantTypes: ['authorization_code', 'refresh_token'],
  clientName: 'Test client',
  clientUri: null,
  createdAt: T0,
  firstSignInAt: null,
};

export const user = { userId: '42', forgejoLogin: 'alice' };
export const tokens = { accessToken: 'forgejo-access-secret', refreshToken: 'forgejo-refresh-secret', expiresAt: T0 + HOUR };

export function code(codeHash: string): AuthorizationCode {
  return {
    codeHash,
    clientId: client.clientId,
    userId: user.userId,
    redirectUri: 'http://127.0.0.1:5000/callback',
    codeChallenge: 'c'.repeat(43),
    resource: 'https://broker.example/mcp',
    scope: null,
    createdAt: T0,
    expiresAt: T0 + 60_000,
  };
}

export function grant(grantId: string): Grant {
  return {
    grantId,
    userId: user.userId,
    clientId: client.clientId,
    resource: 'https://broker.example/mcp',
    scope: null,
    createdAt: T0,
    revokedAt: null,
  };
}

export function pending(id: string): PendingAuthorization {
  return {
    id,
    clientId: client.clientId,
    redirectUri: 'http://127.0.0.1:5000/callback',
    state: 'xyz',
    codeChallenge: 'c'.repeat(43),
    resource: 'https://broker.example/mcp',
    scope: null,
    browserBindingHash: 'b',
    csrfTokenHash: 'x',
    userId: null,
    approved: false,
    createdAt: T0,
    expiresAt: T0 + 600_000,
  };
}

export function pair(suffix: string): TokenHashes {
  return {
    accessTokenHash: `at-${suffix}`,
    accessExpiresAt: T0 + HOUR,
    refreshTokenHash: `rt-${suffix}`,
    refreshExpiresAt: T0 + 24 * HOUR,
  };
}

export function legacySession(sessionIdHash: string, userId: string = user.userId): StoredLegacySession {
  return {
    sessionIdHash,
    userId,
    forgejoLogin: userId === user.userId ? user.forgejoLogin : `login-${userId}`,
    grantId: 'g-session',
    clientId: client.clientId,
    initializeParams: JSON.stringify({ protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'c', version: '1' } }),
    protocolVersion: '2025-03-26',
    createdAt: T0,
    lastUsedAt: T0,
    ownerReplica: 'r1',
  };
}

/** A signed-in user with one grant from a consumed code, holding the pair `suffix`. */
export async function seedGrant(store: Store, grantId: string, suffix: string): Promise<void> {
  await store.credentials.replaceAfterLogin(user, tokens, T0);
  await store.codes.create(code(`code-${grantId}`));
  assert.equal((await store.codes.consume(`code-${grantId}`, T0)).status, 'valid');
  assert.equal(await store.grants.createFromCode(`code-${grantId}`, grant(grantId), pair(suffix)), true);
}

/** Resolves when `open` is called: lets a test hold work inside a lock. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

const CONCURRENCY = 8;

export function describeStore(name: string, backend: StoreBackend): void {
  describe(`${name} store: the Store contract`, () => {
    const key = randomBytes(32);
    const fresh = async (body: (store: Store) => Promise<void>): Promise<void> => withStore(backend, await backend.fresh(), key, body);

    it('refuses a database written by a newer schema', async () => {
      const location = await backend.fresh();
      await withStore(backend, location, key, () => Promise.resolve());
      await backend.markNewerSchema(location);
      await assert.rejects(backend.open(location, key), /newer/);
    });

    it('stores clients and records the first sign-in once', async () => {
      await fresh(async (store) => {
        await store.clients.create(client);
        assert.deepEqual(await store.clients.find(client.clientId), client);
        await store.clients.markSignedIn(client.clientId, T0 + 5);
        await store.clients.markSignedIn(client.clientId, T0 + 9);
        assert.equal((await store.clients.find(client.clientId))?.firstSignInAt, T0 + 5);
        assert.equal(await store.clients.find('nobody'), undefined);
        await assert.rejects(store.clients.create(client), 'a client id is unique');
      });
    });

    it('records a used client assertion once until it expires, for every replica on the store; the purge forgets expired ones', async () => {
      const location = await backend.fresh();
      await withStore(backend, location, key, async (store) => {
        await withStore(backend, location, key, async (otherReplica) => {
          assert.equal(await store.assertionReplays.use('jti-hash', T0 + 60_000, T0), true, 'first use');
          assert.equal(await otherReplica.assertionReplays.use('jti-hash', T0 + 60_000, T0 + 1), false, 'a second use, anywhere');
          assert.equal(await store.assertionReplays.use('jti-hash', T0 + 120_000, T0 + 60_000), true, 'expired: the key may come again');
          await store.purge(T0 + 200_000, 0);
          assert.equal(await otherReplica.assertionReplays.use('jti-hash', T0 + 300_000, T0 + 200_001), true, 'purged');
        });
      });
    });

    it('counts the registered clients that never signed in', async () => {
      await fresh(async (store) => {
        assert.equal(await store.clients.countUnused(), 0);
        await store.clients.create(client);
        await store.clients.create({ ...client, clientId: 'second-client' });
        assert.equal(await store.clients.countUnused(), 2);
        await store.clients.markSignedIn(client.clientId, T0 + 5);
        assert.equal(await store.clients.countUnused(), 1);
      });
    });

    it('keeps Forgejo credentials sealed at rest and bumps the generation on every change', async () => {
      const location = await backend.fresh();
      await withStore(backend, location, key, async (store) => {
        const first = await store.credentials.replaceAfterLogin(user, tokens, T0);
        assert.equal(first.generation, 1);
        assert.equal(first.accessToken, tokens.accessToken);
        assert.deepEqual(await store.users.find(user.userId), user);

        const refreshed = await store.credentials.storeRefreshed(
          user.userId,
          first.generation,
          { accessToken: 'access-two', refreshToken: 'refresh-two', expiresAt: T0 + 2 * HOUR },
          T0 + 1,
        );
        assert.equal(refreshed?.generation, 2);
        assert.equal(refreshed?.refreshToken, 'refresh-two');
        assert.equal(refreshed?.expiresAt, T0 + 2 * HOUR);
        // A refresh computed from an older generation must not overwrite the newer credential.
        assert.equal(await store.credentials.storeRefreshed(user.userId, 1, tokens, T0 + 2), undefined);
        assert.equal((await store.credentials.find(user.userId))?.refreshToken, 'refresh-two');
        await store.pendingAuthorizations.create(pending('p0'));
        await store.upstreamStates.create({ stateHash: 's0', pendingId: 'p0', codeVerifier: 'verifier-in-the-clear', expiresAt: T0 });
      });
      const atRest = await backend.contentsAtRest(location);
      assert.ok(atRest.length > 0, 'the backend shows what it keeps');
      assert.ok(atRest.includes('alice'), 'the dump holds the rows');
      for (const secret of ['forgejo-access-secret', 'forgejo-refresh-secret', 'access-two', 'refresh-two', 'verifier-in-the-clear']) {
        assert.equal(atRest.includes(secret), false, `${secret} found at rest`);
      }
    });

    it('does not open credentials under another key', async () => {
      const location = await backend.fresh();
      await withStore(backend, location, key, async (store) => {
        await store.credentials.replaceAfterLogin(user, tokens, T0);
      });
      await withStore(backend, location, randomBytes(32), async (store) => {
        await assert.rejects(store.credentials.find(user.userId), (error) => isBrokerError(error, 'internal'));
      });
    });

    it('ends a credential keeping the grants only at the expected generation, leaving the user grants alive for the next login', async () => {
      await fresh(async (store) => {
        const credential = await store.credentials.replaceAfterLogin(user, tokens, T0);
        await store.codes.create(code('code-a'));
        assert.equal((await store.codes.consume('code-a', T0)).status, 'valid');
        assert.equal(await store.grants.createFromCode('code-a', grant('g1'), pair('1')), true);
        assert.equal(await store.credentials.endCredentialKeepingGrants(user.userId, credential.generation + 5, T0), false);
        assert.equal(await store.credentials.endCredentialKeepingGrants(user.userId, credential.generation, T0 + 1), true);
        assert.equal(await store.credentials.endCredentialKeepingGrants(user.userId, credential.generation, T0 + 2), false, 'only once');
        const view = await store.grants.findAccessToken('at-1');
        assert.equal(view?.credentialRevoked, true);
        assert.equal(view?.grant.revokedAt, null, 'an upstream failure revokes no grant');
        assert.equal((await store.grants.findRefreshToken('rt-1'))?.credentialRevoked, true);
        // A revoked credential takes no refresh.
        assert.equal(await store.credentials.storeRefreshed(user.userId, credential.generation + 1, tokens, T0 + 2), undefined);
        // A new login brings the credential, and with it the grant's tokens, back to life.
        const relogin = await store.credentials.replaceAfterLogin(user, tokens, T0 + 2);
        assert.equal(relogin.revokedAt, null);
        assert.equal(relogin.generation, credential.generation + 2);
        assert.equal((await store.grants.findAccessToken('at-1'))?.credentialRevoked, false);
        assert.equal((await store.grants.findRefreshToken('rt-1'))?.credentialRevoked, false);
      });
    });

    it('ends a credential revoking every grant of the user in the same write, only at the expected generation; consents and other users stay', async () => {
      await fresh(async (store) => {
        const other = { userId: '43', forgejoLogin: 'bob' };
        await seedGrant(store, 'g1', '1');
        await seedGrant(store, 'g2', '2');
        await store.consents.record(user.userId, client.clientId, T0);
        await store.credentials.replaceAfterLogin(other, tokens, T0);
        await store.codes.create({ ...code('code-other'), userId: other.userId });
        assert.equal((await store.codes.consume('code-other', T0)).status, 'valid');
        assert.equal(await store.grants.createFromCode('code-other', { ...grant('g3'), userId: other.userId }, pair('3')), true);
        const credential = await store.credentials.find(user.userId);
        const generation = credential?.generation ?? 0;

        assert.equal(await store.credentials.endCredentialRevokingGrants(user.userId, generation + 5, T0 + 1), false);
        assert.equal((await store.grants.findAccessToken('at-1'))?.grant.revokedAt, null, 'another generation revokes nothing');
        assert.equal(await store.credentials.endCredentialRevokingGrants(user.userId, generation, T0 + 2), true);
        assert.equal(await store.credentials.endCredentialRevokingGrants(user.userId, generation, T0 + 3), false, 'only once');
        assert.equal((await store.credentials.find(user.userId))?.revokedAt, T0 + 2);
        for (const suffix of ['1', '2']) {
          assert.equal((await store.grants.findAccessToken(`at-${suffix}`))?.grant.revokedAt, T0 + 2, `grant ${suffix}`);
          assert.equal((await store.grants.findRefreshToken(`rt-${suffix}`))?.grant.revokedAt, T0 + 2, `grant ${suffix}`);
        }
        assert.equal((await store.grants.findAccessToken('at-3'))?.grant.revokedAt, null, 'another user keeps their grant');
        assert.equal(await store.consents.has(user.userId, client.clientId), true, 'consent stays');

        // A new login revives the credential, not the revoked grants.
        const relogin = await store.credentials.replaceAfterLogin(user, tokens, T0 + 4);
        assert.equal(relogin.revokedAt, null);
        assert.equal((await store.grants.findRefreshToken('rt-1'))?.grant.revokedAt, T0 + 2);
      });
    });

    it('records a refresh as started and refused without changing the generation; the stored answer or a login clears both', async () => {
      await fresh(async (store) => {
        const login = await store.credentials.replaceAfterLogin(user, tokens, T0);
        assert.equal(login.refreshStartedAt, null);
        assert.equal(login.refreshRefusedAt, null);
        assert.equal(await store.credentials.markRefreshStarted(user.userId, login.generation + 1, T0 + 1), false, 'another generation');
        assert.equal(await store.credentials.markRefreshStarted(user.userId, login.generation, T0 + 1), true);
        const started = await store.credentials.find(user.userId);
        assert.equal(started?.refreshStartedAt, T0 + 1);
        assert.equal(started?.generation, login.generation);
        assert.equal(started?.refreshToken, tokens.refreshToken);

        const refreshed = await store.credentials.storeRefreshed(user.userId, login.generation, { ...tokens, refreshToken: 'r2' }, T0 + 2);
        assert.equal(refreshed?.refreshStartedAt, null, 'the answer was stored');

        const generation = refreshed?.generation ?? 0;
        assert.equal(await store.credentials.markRefreshStarted(user.userId, generation, T0 + 3), true);
        assert.equal(await store.credentials.markRefreshRefused(user.userId, generation, T0 + 4), true);
        const refused = await store.credentials.find(user.userId);
        assert.equal(refused?.refreshStartedAt, T0 + 3);
        assert.equal(refused?.refreshRefusedAt, T0 + 4);
        assert.equal(refused?.revokedAt, null, 'a refused refresh token does not end the credential');

        const relogin = await store.credentials.replaceAfterLogin(user, tokens, T0 + 5);
        assert.equal(relogin.refreshStartedAt, null);
        assert.equal(relogin.refreshRefusedAt, null);
        assert.equal(await store.credentials.endCredentialKeepingGrants(user.userId, relogin.generation, T0 + 6), true);
        assert.equal(await store.credentials.markRefreshStarted(user.userId, relogin.generation + 1, T0 + 7), false, 'an ended credential');
      });
    });

    it('keeps "refresh started" across a reopen, as after a crash', async () => {
      const location = await backend.fresh();
      let generation = 0;
      await withStore(backend, location, key, async (store) => {
        generation = (await store.credentials.replaceAfterLogin(user, tokens, T0)).generation;
        assert.equal(await store.credentials.markRefreshStarted(user.userId, generation, T0 + 1), true);
      });
      await withStore(backend, location, key, async (store) => {
        const credential = await store.credentials.find(user.userId);
        assert.equal(credential?.refreshStartedAt, T0 + 1);
        assert.equal(credential?.generation, generation);
      });
    });

    it('consumes an authorization code once and reports a replay with the grant it produced', async () => {
      await fresh(async (store) => {
        await store.codes.create(code('code-b'));
        const first = await store.codes.consume('code-b', T0 + 1);
        assert.equal(first.status, 'valid');
        assert.deepEqual(first.status === 'valid' ? first.code : undefined, code('code-b'));
        await store.grants.createFromCode('code-b', grant('g2'), pair('2'));
        assert.deepEqual(await store.codes.consume('code-b', T0 + 2), { status: 'replayed', grantId: 'g2' });
        assert.deepEqual(await store.codes.consume('nope', T0), { status: 'unknown' });
      });
    });

    it('refuses to create a grant for a code whose replay was seen first', async () => {
      await fresh(async (store) => {
        await store.codes.create(code('code-c'));
        assert.equal((await store.codes.consume('code-c', T0)).status, 'valid');
        assert.deepEqual(await store.codes.consume('code-c', T0), { status: 'replayed', grantId: null });
        assert.equal(
          await store.grants.createFromCode('code-c', grant('g3'), { accessTokenHash: 'at3', accessExpiresAt: T0 + HOUR }),
          false,
        );
        assert.equal(await store.grants.findAccessToken('at3'), undefined);
      });
    });

    it('treats an expired code as unknown', async () => {
      await fresh(async (store) => {
        await store.codes.create(code('code-d'));
        assert.deepEqual(await store.codes.consume('code-d', T0 + 60_000), { status: 'unknown' });
      });
    });

    it('rotates a refresh token once and tells whether its successor was used', async () => {
      await fresh(async (store) => {
        await seedGrant(store, 'g4', '4');
        assert.equal(
          await store.grants.rotateRefreshToken('rt-4', pair('5'), { sealed: 'sealed-pair', sealedUntil: T0 + 10_000 }, T0 + 1),
          'rotated',
        );
        assert.equal(await store.grants.rotateRefreshToken('rt-4', pair('5b'), null, T0 + 2), 'already_rotated');
        assert.equal(await store.grants.findAccessToken('at-5b'), undefined, 'a losing rotation stores nothing');
        let old = await store.grants.findRefreshToken('rt-4');
        assert.equal(old?.rotatedAt, T0 + 1);
        assert.equal(old?.successorSealed, 'sealed-pair');
        assert.equal(old?.successorRotated, false);
        assert.equal((await store.grants.findAccessToken('at-5'))?.grant.grantId, 'g4');

        assert.equal(await store.grants.rotateRefreshToken('rt-5', pair('6'), null, T0 + 3), 'rotated');
        old = await store.grants.findRefreshToken('rt-4');
        assert.equal(old?.successorRotated, true);

        // The sealed pair outlives the grace period only until the next purge.
        await store.purge(T0 + 10_000, 0);
        assert.equal((await store.grants.findRefreshToken('rt-4'))?.successorSealed, null);

        await store.grants.revokeGrant('g4', T0 + 4);
        await store.grants.revokeGrant('g4', T0 + 5);
        assert.equal((await store.grants.findRefreshToken('rt-6'))?.grant.revokedAt, T0 + 4, 'the first revocation stands');
        assert.equal((await store.grants.findAccessToken('at-6'))?.grant.revokedAt, T0 + 4);
      });
    });

    it('revokes single access tokens', async () => {
      await fresh(async (store) => {
        await seedGrant(store, 'g7', '7');
        await store.grants.revokeAccessToken('at-7', T0 + 1);
        await store.grants.revokeAccessToken('at-7', T0 + 2);
        const view = await store.grants.findAccessToken('at-7');
        assert.equal(view?.revokedAt, T0 + 1);
        assert.equal(view?.grant.revokedAt, null);
        assert.equal(view?.forgejoLogin, 'alice');
        assert.equal(view?.expiresAt, T0 + HOUR);
      });
    });

    it('remembers consent per user and client; the Connections view lists them in order, and revoking one revokes its grants', async () => {
      await fresh(async (store) => {
        await store.credentials.replaceAfterLogin(user, tokens, T0);
        await store.consents.record(user.userId, client.clientId, T0);
        await store.consents.record(user.userId, client.clientId, T0 + 1);
        await store.consents.record(user.userId, 'client-0', T0 + 3);
        assert.equal(await store.consents.has(user.userId, client.clientId), true);
        assert.equal(await store.consents.has('7', client.clientId), false);
        await store.codes.create(code('code-f'));
        await store.codes.consume('code-f', T0);
        await store.grants.createFromCode('code-f', grant('g5'), { accessTokenHash: 'at7', accessExpiresAt: T0 + HOUR });
        await store.grants.touch('g5', T0 + 1);
        assert.deepEqual(
          (await store.admin.connections(user.userId)).map((c) => [c.clientId, c.approvedAt, c.lastUsedAt, c.activeGrants]),
          [
            [client.clientId, T0, T0 + 1, 1],
            ['client-0', T0 + 3, null, 0],
          ],
          'in order of approval, the first approval kept',
        );
        const outcome = await store.revocations.revoke({ kind: 'connection', userId: user.userId, clientId: client.clientId }, T0 + 2);
        assert.deepEqual([outcome.grants, outcome.consents, outcome.signIns], [1, 1, 0]);
        assert.equal(await store.consents.has(user.userId, client.clientId), false);
        assert.equal((await store.grants.findAccessToken('at7'))?.grant.revokedAt, T0 + 2);
        assert.deepEqual(await store.revocations.since(0, 10), [outcome.revocation]);
        assert.equal(await store.revocations.latestId(), outcome.revocation.id);
        const second = await store.revocations.revoke({ kind: 'user', userId: user.userId }, T0 + 4);
        assert.ok(second.revocation.id > outcome.revocation.id, 'log ids grow');
        assert.deepEqual(await store.revocations.since(outcome.revocation.id, 10), [second.revocation]);
        assert.equal(second.consents, 1, "the user's other approval goes too");
      });
    });

    it('hands a pending authorization and an upstream state to exactly one taker', async () => {
      await fresh(async (store) => {
        await store.pendingAuthorizations.create(pending('p1'));
        assert.deepEqual(await store.pendingAuthorizations.find('p1', T0), pending('p1'));
        await store.pendingAuthorizations.update('p1', { userId: user.userId });
        await store.pendingAuthorizations.update('p1', { approved: true });
        await store.pendingAuthorizations.update('p1', { approved: false, csrfTokenHash: 'y' });
        await store.pendingAuthorizations.update('p1', {});
        const found = await store.pendingAuthorizations.find('p1', T0);
        assert.equal(found?.userId, user.userId);
        assert.equal(found?.approved, true, 'approval is never withdrawn');
        assert.equal(found?.csrfTokenHash, 'y');
        assert.equal(await store.pendingAuthorizations.find('p1', T0 + 600_000), undefined);

        await store.upstreamStates.create({ stateHash: 's1', pendingId: 'p1', codeVerifier: 'verifier-secret', expiresAt: T0 + 1000 });
        assert.equal((await store.upstreamStates.take('s1', T0))?.codeVerifier, 'verifier-secret');
        assert.equal(await store.upstreamStates.take('s1', T0), undefined);
        await store.upstreamStates.create({ stateHash: 's2', pendingId: 'p1', codeVerifier: 'v', expiresAt: T0 + 1000 });
        assert.equal(await store.upstreamStates.take('s2', T0 + 1000), undefined, 'expired state');

        await store.upstreamStates.create({ stateHash: 's3', pendingId: 'p1', codeVerifier: 'v', expiresAt: T0 + 1000 });
        assert.equal((await store.pendingAuthorizations.take('p1', T0))?.id, 'p1');
        assert.equal(await store.pendingAuthorizations.take('p1', T0), undefined);
        assert.equal(await store.upstreamStates.take('s3', T0), undefined, 'states go with their pending authorization');
      });
    });

    it('keeps sign-ins until they expire', async () => {
      await fresh(async (store) => {
        await store.signIns.create({ tokenHash: 'si', userId: user.userId, createdAt: T0, expiresAt: T0 + HOUR });
        assert.equal(await store.signIns.findUserId('si', T0), user.userId);
        assert.equal(await store.signIns.findUserId('si', T0 + HOUR), undefined);
        await store.signIns.delete('si');
        assert.equal(await store.signIns.findUserId('si', T0), undefined);
      });
    });

    it('purges what expired and dynamically registered clients that never signed in', async () => {
      await fresh(async (store) => {
        await store.clients.create(client);
        await store.clients.create({ ...client, clientId: 'client-2', createdAt: T0 + 10 });
        await store.clients.create({ ...client, clientId: 'client-3', createdAt: T0 - 10, firstSignInAt: T0 });
        await store.pendingAuthorizations.create(pending('p2'));
        await store.signIns.create({ tokenHash: 'si2', userId: user.userId, createdAt: T0, expiresAt: T0 + 1 });
        await seedGrant(store, 'g8', '8');
        const result = await store.purge(T0 + HOUR, T0 + 5);
        assert.equal(result.unusedClients, 1);
        // The pending authorization, the sign-in, the code and the access token; the refresh token keeps the grant.
        assert.equal(result.rows, 4);
        assert.equal(await store.clients.find('client-1'), undefined);
        assert.ok(await store.clients.find('client-2'));
        assert.ok(await store.clients.find('client-3'));
        assert.ok(await store.grants.findRefreshToken('rt-8'));
        // Once its tokens are gone, the grant goes too.
        const later = await store.purge(T0 + 25 * HOUR, 0);
        assert.equal(later.rows, 2, 'the refresh token and the grant');
        assert.equal(await store.grants.findRefreshToken('rt-8'), undefined);
      });
    });

    it('answers ready while open, and not after close', async () => {
      const store = await backend.open(await backend.fresh(), key);
      assert.equal(await store.ready(), true);
      await store.close();
      assert.equal(await store.ready(), false);
      await store.close();
    });

    it('loses nothing across a restart', async () => {
      const location = await backend.fresh();
      await withStore(backend, location, key, async (store) => {
        await store.clients.create(client);
        await store.credentials.replaceAfterLogin(user, tokens, T0);
        await store.consents.record(user.userId, client.clientId, T0);
        await store.codes.create(code('code-g'));
        await store.codes.consume('code-g', T0);
        await store.grants.createFromCode('code-g', grant('g6'), pair('8'));
        await store.grants.rotateRefreshToken('rt-8', pair('9'), { sealed: 'sealed', sealedUntil: T0 + 10_000 }, T0 + 1);
        await store.signIns.create({ tokenHash: 'si3', userId: user.userId, createdAt: T0, expiresAt: T0 + HOUR });
        await store.pendingAuthorizations.create(pending('p3'));
      });
      await withStore(backend, location, key, async (store) => {
        assert.deepEqual(await store.clients.find(client.clientId), client);
        const credential = await store.credentials.find(user.userId);
        assert.equal(credential?.accessToken, tokens.accessToken);
        assert.equal(credential?.refreshToken, tokens.refreshToken);
        assert.equal(credential?.generation, 1);
        assert.equal(await store.consents.has(user.userId, client.clientId), true);
        const access = await store.grants.findAccessToken('at-9');
        assert.equal(access?.forgejoLogin, 'alice');
        assert.equal(access?.credentialRevoked, false);
        const old = await store.grants.findRefreshToken('rt-8');
        assert.equal(old?.grant.grantId, 'g6');
        assert.equal(old?.successorSealed, 'sealed');
        assert.equal(await store.signIns.findUserId('si3', T0), user.userId);
        assert.deepEqual(await store.pendingAuthorizations.find('p3', T0), pending('p3'));
        assert.deepEqual(await store.codes.consume('code-g', T0), { status: 'replayed', grantId: 'g6' });
      });
    });

    describe('legacy sessions', () => {
      it('saves a session and finds it by the hash of its id, as saved', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          assert.deepEqual(await store.legacySessions.find('sess-1'), legacySession('sess-1'));
          assert.equal(await store.legacySessions.find('sess-unknown'), undefined);
        });
      });

      it('replaces the record of a session saved again under the same id', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          const replacement: StoredLegacySession = {
            ...legacySession('sess-1', '43'),
            grantId: 'g-other',
            clientId: 'client-2',
            initializeParams: '{"protocolVersion":"2024-11-05"}',
            protocolVersion: '2024-11-05',
            createdAt: T0 + 10,
            lastUsedAt: T0 + 20,
            ownerReplica: 'r2',
          };
          await store.legacySessions.save(replacement);
          assert.deepEqual(await store.legacySessions.find('sess-1'), replacement);
          assert.equal(await store.legacySessions.deleteOfUser(user.userId), 0, 'nothing is left under the first user');
        });
      });

      it('finds the replica that owns a session', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save({ ...legacySession('sess-1'), ownerReplica: 'r-owner' });
          assert.equal((await store.legacySessions.find('sess-1'))?.ownerReplica, 'r-owner');
        });
      });

      it('moves a session to another replica on a claim from its current owner', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          await store.legacySessions.save(legacySession('sess-2'));
          assert.equal(await store.legacySessions.claim('sess-1', 'r1', 'r2'), true);
          assert.deepEqual(
            await store.legacySessions.find('sess-1'),
            { ...legacySession('sess-1'), ownerReplica: 'r2' },
            'only the owner moved',
          );
          assert.deepEqual(await store.legacySessions.find('sess-2'), legacySession('sess-2'), 'the other session stays');
        });
      });

      it('refuses a claim from a replica that is not the owner, changing nothing', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          assert.equal(await store.legacySessions.claim('sess-1', 'r-wrong', 'r3'), false);
          assert.deepEqual(await store.legacySessions.find('sess-1'), legacySession('sess-1'));
          assert.equal(await store.legacySessions.claim('sess-1', 'r1', 'r2'), true);
          assert.equal(await store.legacySessions.claim('sess-1', 'r1', 'r3'), false, 'a claim from the former owner');
          assert.equal((await store.legacySessions.find('sess-1'))?.ownerReplica, 'r2');
          assert.equal(await store.legacySessions.claim('sess-unknown', 'r1', 'r2'), false, 'an unknown session');
          assert.equal(await store.legacySessions.find('sess-unknown'), undefined, 'claiming an unknown session creates none');
        });
      });

      it('lets exactly one of concurrent claims from the same owner win', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          const claimants = Array.from({ length: CONCURRENCY }, (_, i) => `r-claimant-${i}`);
          const won = await Promise.all(claimants.map((to) => store.legacySessions.claim('sess-1', 'r1', to)));
          assert.equal(won.filter(Boolean).length, 1, 'exactly one claim wins');
          const winner = claimants[won.indexOf(true)];
          assert.equal((await store.legacySessions.find('sess-1'))?.ownerReplica, winner, 'the winner owns the session');
        });
      });

      it('moves lastUsedAt forward on touch, never back', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          await store.legacySessions.touch('sess-1', T0 + 60_000);
          assert.equal((await store.legacySessions.find('sess-1'))?.lastUsedAt, T0 + 60_000);
          await store.legacySessions.touch('sess-1', T0 + 30_000);
          await store.legacySessions.touch('sess-1', T0 + 60_000);
          const touched = await store.legacySessions.find('sess-1');
          assert.equal(touched?.lastUsedAt, T0 + 60_000, 'an older touch changes nothing');
          assert.deepEqual(touched, { ...legacySession('sess-1'), lastUsedAt: T0 + 60_000 }, 'only lastUsedAt moved');
          await store.legacySessions.touch('sess-unknown', T0 + 60_000);
          assert.equal(await store.legacySessions.find('sess-unknown'), undefined, 'touching an unknown session creates none');
        });
      });

      it('keeps the latest of concurrent touches', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          const times = Array.from({ length: CONCURRENCY }, (_, i) => T0 + (i + 1) * 1000);
          await Promise.all([...times].reverse().map((at) => store.legacySessions.touch('sess-1', at)));
          assert.equal((await store.legacySessions.find('sess-1'))?.lastUsedAt, T0 + CONCURRENCY * 1000);
        });
      });

      it('deletes a session idempotently, and only that one', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          await store.legacySessions.save(legacySession('sess-2'));
          await store.legacySessions.delete('sess-1');
          await store.legacySessions.delete('sess-1');
          await store.legacySessions.delete('sess-unknown');
          assert.equal(await store.legacySessions.find('sess-1'), undefined);
          assert.deepEqual(await store.legacySessions.find('sess-2'), legacySession('sess-2'));
        });
      });

      it("deletes every session of one user, counting them, and no one else's", async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          await store.legacySessions.save(legacySession('sess-2'));
          await store.legacySessions.save(legacySession('sess-3', '43'));
          assert.equal(await store.legacySessions.deleteOfUser(user.userId), 2);
          assert.equal(await store.legacySessions.find('sess-1'), undefined);
          assert.equal(await store.legacySessions.find('sess-2'), undefined);
          assert.deepEqual(await store.legacySessions.find('sess-3'), legacySession('sess-3', '43'));
          assert.equal(await store.legacySessions.deleteOfUser(user.userId), 0, 'nothing left to delete');
          assert.equal(await store.legacySessions.deleteOfUser('nobody'), 0);
        });
      });

      it('forgets sessions last used before the cut-off, counting them; one used at the cut-off stays', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save({ ...legacySession('sess-old'), lastUsedAt: T0 - 1 });
          await store.legacySessions.save({ ...legacySession('sess-at'), lastUsedAt: T0 });
          await store.legacySessions.save({ ...legacySession('sess-new', '43'), lastUsedAt: T0 + 1 });
          // Created long ago but touched since: the last use counts, not the creation.
          await store.legacySessions.save({ ...legacySession('sess-touched'), createdAt: T0 - HOUR, lastUsedAt: T0 - HOUR });
          await store.legacySessions.touch('sess-touched', T0 + 5);
          assert.equal(await store.legacySessions.deleteUnusedSince(T0), 1);
          assert.equal(await store.legacySessions.find('sess-old'), undefined);
          assert.ok(await store.legacySessions.find('sess-at'));
          assert.ok(await store.legacySessions.find('sess-new'));
          assert.ok(await store.legacySessions.find('sess-touched'));
          assert.equal(await store.legacySessions.deleteUnusedSince(T0), 0, 'nothing more at the same cut-off');
          assert.equal(await store.legacySessions.deleteUnusedSince(T0 + 2), 2, 'the sessions last used at T0 and T0 + 1');
          assert.ok(await store.legacySessions.find('sess-touched'));
        });
      });

      it('leaves sessions to deleteUnusedSince: purge keeps them', async () => {
        await fresh(async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          await store.purge(T0 + 100 * HOUR, T0 + 100 * HOUR);
          assert.deepEqual(await store.legacySessions.find('sess-1'), legacySession('sess-1'));
        });
      });

      it('keeps sessions across a restart', async () => {
        const location = await backend.fresh();
        await withStore(backend, location, key, async (store) => {
          await store.legacySessions.save(legacySession('sess-1'));
          await store.legacySessions.touch('sess-1', T0 + 60_000);
        });
        await withStore(backend, location, key, async (store) => {
          assert.deepEqual(await store.legacySessions.find('sess-1'), { ...legacySession('sess-1'), lastUsedAt: T0 + 60_000 });
        });
      });
    });

    describe('replicas', () => {
      const replica = (id: string, url: string | null = `http://10.0.0.${id.length}:8080`) => ({ id, url, startedAt: T0 });

      it('lists the replicas heartbeating since the cut-off, ordered by id, as they announced themselves', async () => {
        await fresh(async (store) => {
          assert.deepEqual(await store.replicas.list(0), []);
          await store.replicas.heartbeat(replica('bbbb'), T0 + 1000);
          await store.replicas.heartbeat(replica('a', null), T0 + 2000);
          await store.replicas.heartbeat(replica('ccc'), T0);
          assert.deepEqual(await store.replicas.list(T0 + 1000), [
            { id: 'a', url: null, startedAt: T0, heartbeatAt: T0 + 2000 },
            { id: 'bbbb', url: 'http://10.0.0.4:8080', startedAt: T0, heartbeatAt: T0 + 1000 },
          ]);
          assert.deepEqual(
            (await store.replicas.list(0)).map((listed) => listed.id),
            ['a', 'bbbb', 'ccc'],
          );
          assert.deepEqual(await store.replicas.list(T0 + 2001), []);
        });
      });

      it("moves a replica's heartbeat (and URL) on each heartbeat, keeping one row", async () => {
        await fresh(async (store) => {
          await store.replicas.heartbeat(replica('r1'), T0);
          await store.replicas.heartbeat(replica('r1', 'https://replica-1.internal'), T0 + 2000);
          assert.deepEqual(await store.replicas.list(0), [
            { id: 'r1', url: 'https://replica-1.internal', startedAt: T0, heartbeatAt: T0 + 2000 },
          ]);
          assert.deepEqual(await store.replicas.list(T0 + 1), [
            { id: 'r1', url: 'https://replica-1.internal', startedAt: T0, heartbeatAt: T0 + 2000 },
          ]);
        });
      });

      it('removes a replica idempotently, and only that one', async () => {
        await fresh(async (store) => {
          await store.replicas.heartbeat(replica('r1'), T0);
          await store.replicas.heartbeat(replica('r2'), T0);
          await store.replicas.remove('r1');
          await store.replicas.remove('r1');
          await store.replicas.remove('unknown');
          assert.deepEqual(
            (await store.replicas.list(0)).map((listed) => listed.id),
            ['r2'],
          );
        });
      });

      it('forgets replicas gone before the cut-off, counting them; one heartbeating at the cut-off stays', async () => {
        await fresh(async (store) => {
          await store.replicas.heartbeat(replica('old'), T0 - 1);
          await store.replicas.heartbeat(replica('at'), T0);
          await store.replicas.heartbeat(replica('new'), T0 + 1);
          assert.equal(await store.replicas.removeGoneBefore(T0), 1);
          assert.deepEqual(
            (await store.replicas.list(0)).map((listed) => listed.id),
            ['at', 'new'],
          );
          assert.equal(await store.replicas.removeGoneBefore(T0), 0, 'nothing more at the same cut-off');
        });
      });

      it('leaves replicas to removeGoneBefore: purge keeps them', async () => {
        await fresh(async (store) => {
          await store.replicas.heartbeat(replica('r1'), T0);
          await store.purge(T0 + 100 * HOUR, T0 + 100 * HOUR);
          assert.equal((await store.replicas.list(0)).length, 1);
        });
      });

      it('keeps replicas across a restart', async () => {
        const location = await backend.fresh();
        await withStore(backend, location, key, (store) => store.replicas.heartbeat(replica('r1'), T0));
        await withStore(backend, location, key, async (store) => {
          assert.deepEqual(await store.replicas.list(T0), [{ ...replica('r1'), heartbeatAt: T0 }]);
        });
      });
    });

    describe('under concurrency', () => {
      it('gives a code to exactly one of many concurrent consumers', async () => {
        await fresh(async (store) => {
          await store.codes.create(code('code-race'));
          const results = await Promise.all(Array.from({ length: CONCURRENCY }, () => store.codes.consume('code-race', T0)));
          assert.equal(results.filter((result) => result.status === 'valid').length, 1);
          assert.equal(results.filter((result) => result.status === 'replayed').length, CONCURRENCY - 1);
        });
      });

      it('creates one grant for a code even when a replay races the exchange', async () => {
        await fresh(async (store) => {
          await store.codes.create(code('code-race2'));
          assert.equal((await store.codes.consume('code-race2', T0)).status, 'valid');
          const [created, replay] = await Promise.all([
            store.grants.createFromCode('code-race2', grant('g-race'), pair('race')),
            store.codes.consume('code-race2', T0),
          ]);
          assert.equal(replay.status, 'replayed');
          if (created) {
            // The replay came after the exchange: it must name the grant, so that it gets revoked.
            assert.deepEqual(replay, { status: 'replayed', grantId: 'g-race' });
          } else {
            assert.deepEqual(replay, { status: 'replayed', grantId: null });
            assert.equal(await store.grants.findAccessToken('at-race'), undefined);
          }
        });
      });

      it('rotates a refresh token for exactly one of many concurrent exchanges', async () => {
        await fresh(async (store) => {
          await seedGrant(store, 'g-rot', 'rot');
          const outcomes = await Promise.all(
            Array.from({ length: CONCURRENCY }, (_, i) => store.grants.rotateRefreshToken('rt-rot', pair(`rot-${i}`), null, T0 + 1)),
          );
          assert.equal(outcomes.filter((outcome) => outcome === 'rotated').length, 1);
          const winners = await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => store.grants.findAccessToken(`at-rot-${i}`)));
          assert.equal(winners.filter((view) => view !== undefined).length, 1, 'only the winner stored a pair');
        });
      });

      it('stores exactly one of many concurrent refreshes of one generation', async () => {
        await fresh(async (store) => {
          const credential = await store.credentials.replaceAfterLogin(user, tokens, T0);
          const stored = await Promise.all(
            Array.from({ length: CONCURRENCY }, (_, i) =>
              store.credentials.storeRefreshed(
                user.userId,
                credential.generation,
                { accessToken: `a${i}`, refreshToken: `r${i}`, expiresAt: T0 + HOUR },
                T0 + 1,
              ),
            ),
          );
          const winners = stored.filter((result) => result !== undefined);
          assert.equal(winners.length, 1);
          const current = await store.credentials.find(user.userId);
          assert.equal(current?.generation, credential.generation + 1);
          assert.equal(current?.refreshToken, winners[0]?.refreshToken, 'the stored token is the winner’s');
        });
      });

      it('lets a refresh and an end of one generation not both succeed; grants are revoked only when the end won', async () => {
        for (const end of ['endCredentialKeepingGrants', 'endCredentialRevokingGrants'] as const) {
          await fresh(async (store) => {
            await seedGrant(store, 'g1', '1');
            const generation = (await store.credentials.find(user.userId))?.generation ?? 0;
            const [stored, ended] = await Promise.all([
              store.credentials.storeRefreshed(user.userId, generation, { ...tokens, refreshToken: 'r2' }, T0 + 1),
              store.credentials[end](user.userId, generation, T0 + 1),
            ]);
            assert.notEqual(stored !== undefined, ended, end);
            const grantRevoked = (await store.grants.findAccessToken('at-1'))?.grant.revokedAt !== null;
            assert.equal(grantRevoked, ended && end === 'endCredentialRevokingGrants', end);
          });
        }
      });

      it('hands a pending authorization and an upstream state to exactly one concurrent taker', async () => {
        await fresh(async (store) => {
          await store.pendingAuthorizations.create(pending('p-race'));
          await store.upstreamStates.create({ stateHash: 's-race', pendingId: 'p-race', codeVerifier: 'v', expiresAt: T0 + 1000 });
          const states = await Promise.all(Array.from({ length: CONCURRENCY }, () => store.upstreamStates.take('s-race', T0)));
          assert.equal(states.filter((state) => state !== undefined).length, 1);
          const taken = await Promise.all(Array.from({ length: CONCURRENCY }, () => store.pendingAuthorizations.take('p-race', T0)));
          assert.equal(taken.filter((taker) => taker !== undefined).length, 1);
        });
      });

      it('runs refresh work one at a time per user, and users side by side', async () => {
        await fresh(async (store) => {
          const held = gate();
          const order: string[] = [];
          const first = store.credentials.withRefreshLock(user.userId, async () => {
            order.push('first:start');
            await held.wait;
            order.push('first:end');
            return 1;
          });
          const second = store.credentials.withRefreshLock(user.userId, () => {
            order.push('second');
            return Promise.resolve(2);
          });
          // Another user is not held up by the first user's refresh.
          assert.equal(await store.credentials.withRefreshLock('someone-else', () => Promise.resolve('other')), 'other');
          assert.deepEqual(order, ['first:start']);
          held.open();
          assert.deepEqual(await Promise.all([first, second]), [1, 2]);
          assert.deepEqual(order, ['first:start', 'first:end', 'second']);
          // A failing holder releases the lock too.
          await assert.rejects(
            store.credentials.withRefreshLock(user.userId, () => Promise.reject(new Error('boom'))),
            /boom/,
          );
          assert.equal(await store.credentials.withRefreshLock(user.userId, () => Promise.resolve('again')), 'again');
        });
      });
    });
  });
}
