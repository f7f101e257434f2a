/**
 * Two replicas on one store, each with its token cache and revocation
 * follower (`openBrokerAuth`, as production wires them). A token both
 * replicas have cached stops working on the other replica within the
 * follower's poll after each kind of revocation made on the first: the
 * Connections page's, `admin revoke`'s (the store alone), /oauth/revoke's,
 * a refresh token's reuse, and a Forgejo credential ending.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { openBrokerAuth, type BrokerAuth } from '../../src/oauth/setup.js';
import { startForgejoStandin, type ForgejoStandin } from '../../src/standin/forgejo.js';
import { MCP_PATH } from '../../src/http/route.js';
import { E2E_USERS, e2eUser } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { obtainToken, type TokenSet } from '../support/oauth.js';
import { withPostgres } from '../support/postgres.js';

/** The follower reads the log every POLL_MS; the bound is the watchdog, not a measurement. */
const POLL_MS = 200;
const BOUND_MS = 5_000;

interface Replica {
  readonly auth: BrokerAuth;
  /** Store reads of access tokens, counted. */
  reads: number;
}

interface Replicas {
  readonly url: string;
  readonly forge: ForgejoStandin;
  readonly a: Replica;
  readonly b: Replica;
  close(): Promise<void>;
}

/** Replica A serves the OAuth endpoints (and /mcp, with a Bearer challenge); B shares the store and the public URL. */
async function startReplicas(name: string, store: { databaseUrl?: string; dataDir: string; encryptionKey: Buffer }): Promise<Replicas> {
  // Replica A, once open: the server listens first, for the public URL.
  const serving: { auth?: BrokerAuth } = {};
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    void (async () => {
      const { auth } = serving;
      if (auth !== undefined && (await auth.routes(req, res, url))) return;
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const result = bearer === undefined ? undefined : await auth?.authenticator.authenticate(bearer);
      if (result === undefined || 'error' in result) {
        res.writeHead(401, {
          'www-authenticate': `Bearer resource_metadata="${auth?.authenticator.resourceMetadataUrl ?? ''}"`,
        });
      } else res.writeHead(204);
      res.end();
    })();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const application = { clientId: `broker-${name}`, clientSecret: randomBytes(16).toString('hex') };
  const forge = await startForgejoStandin({
    users: E2E_USERS,
    applications: [{ ...application, redirectUris: [`${url}${OAUTH_PATHS.callback}`] }],
  });
  const open = async (): Promise<Replica> => {
    const auth = await openBrokerAuth({
      publicUrl: new URL(url),
      forgejoUrl: new URL(forge.url),
      forgejoClientId: application.clientId,
      forgejoClientSecret: application.clientSecret,
      forgejoScopes: 'read:user',
      dataDir: store.dataDir,
      ...(store.databaseUrl === undefined ? {} : { databaseUrl: store.databaseUrl }),
      encryptionKey: store.encryptionKey,
      logger: createLogger('error', process.stderr),
      revocationPollMs: POLL_MS,
    });
    const replica: Replica = { auth, reads: 0 };
    const { grants } = auth.store;
    const find = grants.findAccessToken.bind(grants);
    grants.findAccessToken = (tokenHash) => {
      replica.reads++;
      return find(tokenHash);
    };
    await auth.revocations.start();
    return replica;
  };
  const a = await open();
  const b = await open();
  serving.auth = a.auth;
  return {
    url,
    forge,
    a,
    b,
    close: async () => {
      for (const replica of [a, b]) await replica.auth.close();
      await forge.close();
      server.close();
      server.closeAllConnections();
    },
  };
}

async function accepts(replica: Replica, token: string): Promise<boolean> {
  return !('error' in (await replica.auth.authenticator.authenticate(token)));
}

function describeReplicas(kind: string, storeFor: () => Promise<{ databaseUrl?: string; dataDir: string }>): void {
  describe(`token cache across two replicas (${kind})`, () => {
    let replicas: Replicas;
    let dataDir: string;

    before(async () => {
      const store = await storeFor();
      dataDir = store.dataDir;
      replicas = await startReplicas(`cache-${kind}`, { ...store, encryptionKey: randomBytes(32) });
    });
    after(async () => {
      await replicas?.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    /** `login` signs in at A from a new client; both replicas accept the token and have cached it. */
    const signedIn = async (login: string): Promise<TokenSet & { clientId: string; userId: string }> => {
      const tokens = await obtainToken(`${replicas.url}${MCP_PATH}`, e2eUser(login), `client-${login}-${randomBytes(3).toString('hex')}`);
      for (const replica of [replicas.a, replicas.b]) {
        assert.ok(await accepts(replica, tokens.accessToken));
        const reads = replica.reads;
        assert.ok(await accepts(replica, tokens.accessToken));
        assert.equal(replica.reads, reads, 'a cached token answers without a store read');
      }
      return { ...tokens, userId: String(e2eUser(login).id) };
    };

    const refusedOnB = async (token: string, what: string): Promise<void> => {
      await eventually(async () => !(await accepts(replicas.b, token)), `B refuses the token after ${what}`, BOUND_MS);
      assert.equal(await accepts(replicas.a, token), false, `A refuses it too after ${what}`);
    };

    const form = (url: string, fields: Record<string, string>): Promise<Response> =>
      fetch(`${replicas.url}${url}`, { method: 'POST', body: new URLSearchParams(fields) });

    it("the Connections page's revoke on A", async () => {
      const user = await signedIn('demo');
      await replicas.a.auth.revocations.revoke({ kind: 'connection', userId: user.userId, clientId: user.clientId });
      await refusedOnB(user.accessToken, 'a revoked connection');
    });

    it('admin revoke (the store alone, no broker)', async () => {
      const user = await signedIn('alice');
      await replicas.a.auth.store.revocations.revoke({ kind: 'user', userId: user.userId }, Date.now());
      await eventually(async () => !(await accepts(replicas.a, user.accessToken)), 'A refuses the token', BOUND_MS);
      await refusedOnB(user.accessToken, 'admin revoke');
    });

    it('/oauth/revoke of the access token at A', async () => {
      const user = await signedIn('carol');
      const response = await form(OAUTH_PATHS.revoke, { token: user.accessToken, client_id: user.clientId });
      assert.equal(response.status, 200, await response.text());
      await refusedOnB(user.accessToken, '/oauth/revoke');
    });

    it("a refresh token's reuse at A revokes the grant", async () => {
      const user = await signedIn('dave');
      const refresh = async (refreshToken: string): Promise<Response> =>
        form(OAUTH_PATHS.token, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: user.clientId });
      const first = await refresh(user.refreshToken as string);
      assert.equal(first.status, 200);
      const next = ((await first.json()) as { refresh_token: string }).refresh_token;
      assert.equal((await refresh(next)).status, 200, 'the successor is used');
      const reuse = await refresh(user.refreshToken as string);
      assert.equal(reuse.status, 400, 'the first refresh token again: reuse');
      await refusedOnB(user.accessToken, 'refresh token reuse');
    });

    it("the user's Forgejo credential ending at A", async () => {
      const user = await signedIn('erin');
      const forgejo = await replicas.a.auth.credentials.access(user.userId, 0);
      assert.ok(replicas.forge.deleteGrant('erin'));
      await assert.rejects(replicas.a.auth.credentials.refused(user.userId, forgejo.accessToken), /sign in again/);
      await refusedOnB(user.accessToken, 'the credential ended');
    });
  });
}

describeReplicas('sqlite', async () => ({ dataDir: await mkdtemp(join(tmpdir(), 'cache-replicas-')) }));
withPostgres('token cache across two replicas (postgres)', (freshUrl) =>
  describeReplicas('postgres', async () => ({ databaseUrl: await freshUrl(), dataDir: await mkdtemp(join(tmpdir(), 'cache-replicas-')) })),
);
