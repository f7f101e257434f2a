/**
 * Faults of the Forgejo refresh, replayed against the production broker and
 * the Forgejo stand-in (which, like Forgejo, spends a refresh token once it
 * processed the refresh, whether or not anyone read the answer):
 *
 * - Forgejo answers a refresh after the broker gave up (its timeout);
 * - the broker is killed (SIGKILL, a real process) between sending a refresh
 *   and storing its answer.
 *
 * Neither may end a session or revoke a grant: the user's sessions go on with
 * the current Forgejo access token. Only when Forgejo refuses that access
 * token before its expiry (the application's grant deleted there) do the
 * sessions end, with the 401 challenge, and the user's broker grants with
 * them: the user's next sign-in needs neither a new registration nor
 * consent, and the old broker refresh token stays refused.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type Client,
  type OAuthClientProvider,
  SdkHttpError,
  type StoredOAuthClientInformation,
  type StoredOAuthTokens,
  StreamableHTTPClientTransport,
} from '@modelcontextprotocol/client';
import { standinChildCommand } from '../../src/demo.js';
import { silentLogger } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { type StandinUser, startForgejoStandin } from '../../src/standin/forgejo.js';
import { loadEncryptionKey } from '../../src/store/encryption-key.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { eventually, freshDataDirs, isAlive, portForProcess } from '../support/host.js';
import { E2E_USERS, e2eUser, startBroker } from '../support/brokers.js';
import {
  approveAndSignIn,
  connect,
  type Connected,
  E2EOAuthProvider,
  forgejoTokenFingerprint,
  getMe,
  signInWithSdk,
} from '../support/mcp-clients.js';
import { TestBrowser } from '../support/oauth.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const SCOPES = 'read:user read:repository write:issue';
const nextDataDir = freshDataDirs('broker-faults-refresh-');

type CredentialScope = Parameters<NonNullable<OAuthClientProvider['invalidateCredentials']>>[0];

/**
 * A host that forgets what the authorization server called no good, as the
 * SDK asks of it (`invalidateCredentials`): tokens after `invalid_grant`, its
 * registration too after `invalid_client`. So a new registration would show
 * as a new client_id.
 */
class ForgetfulProvider extends E2EOAuthProvider {
  #tokensForgotten = false;
  #clientForgotten = false;

  override tokens(): StoredOAuthTokens | undefined {
    return this.#tokensForgotten ? undefined : super.tokens();
  }

  override saveTokens(tokens: StoredOAuthTokens): void {
    this.#tokensForgotten = false;
    super.saveTokens(tokens);
  }

  override clientInformation(): StoredOAuthClientInformation | undefined {
    return this.#clientForgotten ? undefined : super.clientInformation();
  }

  override saveClientInformation(client: StoredOAuthClientInformation): void {
    this.#clientForgotten = false;
    super.saveClientInformation(client);
  }

  invalidateCredentials(scope: CredentialScope): void {
    if (scope === 'all' || scope === 'tokens') this.#tokensForgotten = true;
    if (scope === 'all' || scope === 'client') this.#clientForgotten = true;
  }
}

/** A sample's value in a Prometheus exposition (0 when absent). */
function sample(exposition: string, name: string, labels: Readonly<Record<string, string>>): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of exposition.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const present = (match[2] ?? '').split(',');
    if (wanted.every((label) => present.includes(label))) return Number(match[3]);
  }
  return 0;
}

/** What the fault tests count, read from the broker's /metrics. */
interface Figures {
  readonly refreshes: { readonly ok: number; readonly refused: number; readonly unknown: number };
  /** Sessions (and modern channels) ended because the user's Forgejo credential ended. */
  readonly endedForCredential: number;
}

function figures(exposition: string): Figures {
  const refreshes = (outcome: string): number => sample(exposition, 'forgejo_mcp_broker_forgejo_refreshes_total', { outcome });
  return {
    refreshes: { ok: refreshes('ok'), refused: refreshes('refused'), unknown: refreshes('unknown') },
    endedForCredential:
      sample(exposition, 'forgejo_mcp_broker_sessions_ended_total', { era: 'legacy', reason: 'credential_revoked' }) +
      sample(exposition, 'forgejo_mcp_broker_sessions_ended_total', { era: 'modern', reason: 'credential_revoked' }),
  };
}

async function childPid(client: Client): Promise<number> {
  const result = await client.callTool({ name: 'pid', arguments: {} });
  const first = result.content[0];
  if (first?.type !== 'text') throw new Error('pid answered no text');
  return Number(first.text);
}

/** Runs calls at once and counts those that did not come back with the user's answer. */
async function lostOf(calls: readonly Promise<{ login: string }>[], login: string): Promise<number> {
  const settled = await Promise.allSettled(calls);
  return settled.filter((result) => result.status !== 'fulfilled' || result.value.login !== login).length;
}

/** The broker's refresh grant, as a client would send it; the new pair goes to the provider, as the SDK would store it. */
async function refreshAtBroker(brokerUrl: string, provider: E2EOAuthProvider, refreshToken: string): Promise<number> {
  const clientId = provider.clientInformation()?.client_id ?? '';
  const response = await fetch(`${brokerUrl}${OAUTH_PATHS.token}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', client_id: clientId, refresh_token: refreshToken }),
  });
  const body = (await response.json()) as { access_token: string; refresh_token: string; token_type: string; expires_in: number };
  if (response.ok) provider.saveTokens(body);
  return response.status;
}

/**
 * After Forgejo refused the access token: the client's next call meets the
 * 401 challenge, its refresh `invalid_grant`, and the SDK asks for the
 * browser; the person's sign-in goes through without a consent page; the
 * same client (same client_id, no new registration) reconnects and is served
 * as the same user again.
 */
async function signInAgain(
  t: TestContext,
  mcpUrl: URL,
  provider: E2EOAuthProvider,
  browser: TestBrowser,
  user: StandinUser,
  stale: Connected,
): Promise<Connected> {
  const clientId = provider.clientInformation()?.client_id;
  const asked = provider.authorizations.length;
  await assert.rejects(getMe(stale.client));
  assert.equal(provider.authorizations.length, asked + 1, 'the SDK asked the person to sign in again');
  const signIn = await approveAndSignIn(browser, provider.authorizations.at(-1) as URL, user);
  assert.equal(signIn.consentHtml, undefined, 'consent is remembered');
  assert.equal(signIn.callback.get('error'), null);
  await stale.transport.finishAuth(signIn.callback);
  await stale.client.close();
  const again = await connect(mcpUrl, provider);
  t.after(() => again.client.close());
  assert.deepEqual(await getMe(again.client), { login: user.login, id: user.id });
  assert.equal(provider.clientInformation()?.client_id, clientId, 'no new registration');
  return again;
}

test('Forgejo finishes a refresh after the broker gave up: sessions go on, grants stay; once Forgejo refuses the unexpired access token, the grants are revoked: signing in again is one click and the old broker refresh token stays refused', async (t) => {
  const harness = await startBroker({
    wiring: 'signed-in',
    name: 'faults-lost-refresh',
    users: E2E_USERS,
    childCommand: standinChildCommand({ testTools: true }),
    env: { FORGEJO_SCOPES: SCOPES, BROKER_FORGEJO_REFRESH_TIMEOUT: '200ms', BROKER_RATE_LIMIT: '1000' },
  });
  const pids = new Set<number>();
  let lost = 0;
  let wronglyEnded = 0;
  try {
    const user = e2eUser('dave');
    const userId = String(user.id);
    const mcpUrl = new URL(`${harness.url}/mcp`);
    const metrics = async (): Promise<Figures> => figures((await harness.broker.metrics.render()).body);
    const provider = new ForgetfulProvider({ clientName: 'faults: lost refresh answer' });
    const browser = new TestBrowser();
    const connected = await signInWithSdk(mcpUrl, provider, browser, user);
    const sessionId = connected.transport.sessionId;
    const fingerprint = await forgejoTokenFingerprint(connected.client);
    pids.add(await childPid(connected.client));

    // The fault: Forgejo holds the refresh until the broker gave up on it, then processes it all the same.
    const held = harness.forgejo.holdNextRefresh();
    const rotation = harness.broker.pool.rotateUser(userId, Number.MAX_SAFE_INTEGER);
    await held.arrived;
    const during = Array.from({ length: 8 }, () => getMe(connected.client));
    await held.abandoned;
    await held.release();
    await rotation;
    assert.equal(harness.forgejo.stats.refreshes, 1, 'Forgejo spent the refresh token');
    lost += await lostOf(during, user.login);
    // The broker retries in the background; Forgejo refuses the spent refresh token; the access token still serves.
    await eventually(async () => (await metrics()).refreshes.refused === 1, 'the retried refresh is refused');
    lost += await lostOf(
      Array.from({ length: 8 }, () => getMe(connected.client)),
      user.login,
    );
    assert.equal(connected.transport.sessionId, sessionId, 'the same session');
    assert.equal(await forgejoTokenFingerprint(connected.client), fingerprint, 'the same Forgejo access token');
    pids.add(await childPid(connected.client));
    const afterFault = await metrics();
    assert.deepEqual(afterFault.refreshes, { ok: 0, refused: 1, unknown: 1 });
    wronglyEnded = afterFault.endedForCredential;
    assert.equal(wronglyEnded, 0, 'no session ended');
    assert.equal(await refreshAtBroker(harness.url, provider, provider.tokens()?.refresh_token ?? ''), 200, 'the grant is alive');
    const keptRefreshToken = provider.tokens()?.refresh_token ?? '';

    // Now Forgejo refuses the access token, unexpired, for real (the user removed the application's grant).
    assert.ok(harness.forgejo.deleteGrant(user.login));
    await harness.broker.pool.rotateUser(userId, Number.MAX_SAFE_INTEGER);
    assert.ok((await metrics()).endedForCredential >= 1, 'the session ended');
    const again = await signInAgain(t, mcpUrl, provider, browser, user, connected);
    pids.add(await childPid(again.client));
    // A revocation at Forgejo revoked the grant: its refresh token (a thief's copy, say) does not revive with the sign-in.
    assert.equal(await refreshAtBroker(harness.url, provider, keptRefreshToken), 400);
    assert.equal(await refreshAtBroker(harness.url, provider, provider.tokens()?.refresh_token ?? ''), 200, 'the new grant lives');
  } finally {
    await harness.close();
  }
  await eventually(() => [...pids].every((pid) => !isAlive(pid)), 'every child stopped');
  t.diagnostic(
    `faults injected: 1 (refresh answered after the broker's timeout); requests lost: ${lost}; sessions wrongly ended: ${wronglyEnded}; children left over: 0 of ${pids.size} seen`,
  );
  assert.equal(lost, 0);
});

/** The production CLI (`serve`) in a process of its own; its JSON log lines are read as they come. */
class BrokerProcess {
  readonly #proc: ChildProcess;
  readonly #exited: Promise<[number | null, NodeJS.Signals | null]>;

  private constructor(proc: ChildProcess) {
    this.#proc = proc;
    this.#exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  }

  static async start(env: Readonly<Record<string, string>>): Promise<BrokerProcess> {
    const proc = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    const broker = new BrokerProcess(proc);
    const listening = new Promise<void>((resolve, reject) => {
      createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        if (line.includes('"event":"listening"')) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`the broker exited with ${String(code)} before listening`)));
    });
    await listening;
    return broker;
  }

  kill(signal: NodeJS.Signals): Promise<[number | null, NodeJS.Signals | null]> {
    this.#proc.kill(signal);
    return this.#exited;
  }
}

test('the broker is killed between sending a refresh and storing its answer: after the restart sessions go on, grants stay; once Forgejo refuses the unexpired access token, the grants are revoked and signing in again is one click', async (t) => {
  const port = await portForProcess();
  const url = `http://127.0.0.1:${port}`;
  const application = { clientId: 'faults-killed-refresh', clientSecret: randomBytes(24).toString('hex') };
  const forgejo = await startForgejoStandin({
    users: E2E_USERS,
    applications: [{ ...application, redirectUris: [`${url}${OAUTH_PATHS.callback}`] }],
  });
  t.after(() => forgejo.close());
  const dataDir = nextDataDir();
  const env = {
    PATH: process.env.PATH ?? '',
    FORGEJO_URL: forgejo.url,
    FORGEJO_CLIENT_ID: application.clientId,
    FORGEJO_CLIENT_SECRET: application.clientSecret,
    FORGEJO_SCOPES: SCOPES,
    BROKER_LISTEN: `127.0.0.1:${port}`,
    BROKER_PUBLIC_URL: url,
    BROKER_DATA_DIR: dataDir,
    BROKER_CHILD_COMMAND: standinChildCommand({ testTools: true }),
    // Every sweep finds the token due: the refresh happens as soon as the user has a session.
    BROKER_REFRESH_LEAD: '1h',
    BROKER_ROTATE_INTERVAL: '250ms',
    BROKER_RATE_LIMIT: '1000',
    BROKER_LOG_LEVEL: 'info',
  };
  const metrics = async (): Promise<Figures> => figures(await (await fetch(`${url}/metrics`)).text());
  const user = e2eUser('erin');
  const mcpUrl = new URL(`${url}/mcp`);
  const provider = new ForgetfulProvider({ clientName: 'faults: broker killed mid-refresh' });
  const browser = new TestBrowser();
  const pids = new Set<number>();
  let lost = 0;
  let wronglyEnded = 0;

  // The fault: the refresh reaches Forgejo, the broker dies before its answer; Forgejo then processes it.
  const held = forgejo.holdNextRefresh();
  const first = await BrokerProcess.start(env);
  let second: BrokerProcess | undefined;
  try {
    const connected = await signInWithSdk(mcpUrl, provider, browser, user);
    const fingerprint = await forgejoTokenFingerprint(connected.client);
    const firstChild = await childPid(connected.client);
    pids.add(firstChild);
    await held.arrived;
    await first.kill('SIGKILL');
    await held.abandoned;
    await held.release();
    assert.equal(forgejo.stats.refreshes, 1, 'Forgejo spent the refresh token');
    await eventually(() => !isAlive(firstChild), 'the killed broker’s child exits');

    // What the killed broker left on disk: the refresh recorded as started, the credential alive.
    const store = await openSqliteStore({ dataDir, encryptionKey: await loadEncryptionKey(dataDir, undefined, silentLogger()) });
    try {
      const credential = await store.credentials.find(String(user.id));
      assert.notEqual(credential?.refreshStartedAt, null, '"refresh started" was stored before the refresh was sent');
      assert.equal(credential?.revokedAt, null);
    } finally {
      await store.close();
    }

    second = await BrokerProcess.start(env);
    // The session died with the broker: the client re-initialises (404), with its tokens, no sign-in.
    await assert.rejects(getMe(connected.client), (error: unknown) => error instanceof SdkHttpError && error.status === 404);
    await connected.client.close();
    const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
    await connected.client.connect(transport);
    const reconnected: Connected = { client: connected.client, transport };
    const sessionId = transport.sessionId;
    pids.add(await childPid(reconnected.client));
    // The restarted broker sends the refresh whose answer was lost again; Forgejo refuses the spent token.
    await eventually(async () => (await metrics()).refreshes.refused === 1, 'the refresh is retried and refused');
    lost += await lostOf(
      Array.from({ length: 8 }, () => getMe(reconnected.client)),
      user.login,
    );
    assert.equal(transport.sessionId, sessionId, 'the same session');
    assert.equal(await forgejoTokenFingerprint(reconnected.client), fingerprint, 'the same Forgejo access token');
    const afterFault = await metrics();
    assert.deepEqual(afterFault.refreshes, { ok: 0, refused: 1, unknown: 0 });
    wronglyEnded = afterFault.endedForCredential;
    assert.equal(wronglyEnded, 0, 'no session ended');
    assert.equal(await refreshAtBroker(url, provider, provider.tokens()?.refresh_token ?? ''), 200, 'the grant is alive');
    const keptRefreshToken = provider.tokens()?.refresh_token ?? '';

    // Now Forgejo refuses the access token, unexpired, for real; the next sweep notices and ends the session.
    assert.ok(forgejo.deleteGrant(user.login));
    await eventually(async () => (await metrics()).endedForCredential >= 1, 'the session ends');
    const again = await signInAgain(t, mcpUrl, provider, browser, user, reconnected);
    pids.add(await childPid(again.client));
    await again.client.close();
    assert.equal(await refreshAtBroker(url, provider, keptRefreshToken), 400, 'the revoked grant stays revoked');
  } finally {
    await second?.kill('SIGTERM');
    await first.kill('SIGKILL');
  }
  await eventually(() => [...pids].every((pid) => !isAlive(pid)), 'every child stopped');
  t.diagnostic(
    `faults injected: 1 (SIGKILL between sending a refresh and storing its answer); requests lost: ${lost}; sessions wrongly ended: ${wronglyEnded}; children left over: 0 of ${pids.size} seen`,
  );
  assert.equal(lost, 0);
});
