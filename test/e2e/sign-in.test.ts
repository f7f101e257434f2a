/**
 * Sign-in end to end, as issue 3's first "Done when" asks: a real OAuth
 * client, the MCP SDK's own client-side auth (`StreamableHTTPClientTransport`
 * with an `OAuthClientProvider`: the 401 → `auth()` → retry loop and
 * `finishAuth`), against the production broker (`createBroker`,
 * SQLite in a temporary data directory, the stand-in forgejo-mcp as child),
 * through discovery, registration (DCR and CIMD), authorize, the consent
 * page, Forgejo's login form, the callback and the token endpoint, to a
 * `tools/call` that answers as the right Forgejo user. Then two users at
 * once, a broker restart in the middle, and the 2026-07-28 era.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auth, SdkHttpError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { ENCRYPTION_KEY_FILE } from '../../src/store/encryption-key.js';
import { E2EBroker, e2eUser, TEST_UPSTREAM, type WireEntry } from '../support/brokers.js';
import { CLIENT_REDIRECT, ClientMetadataServer, TestBrowser } from '../support/oauth.js';
import { tokenFingerprint } from '../support/forgejo.js';
import {
  connect,
  type Connected,
  disconnect,
  E2EOAuthProvider,
  forgejoTokenFingerprint,
  getMe,
  signInWithSdk,
} from '../support/mcp-clients.js';

const CIMD_CLIENT_NAME = 'E2E metadata-document client';

/** `actual` holds `expected` in this order, other entries allowed in between. */
function assertInOrder(actual: readonly string[], expected: readonly RegExp[]): void {
  let next = 0;
  for (const line of actual) {
    const pattern = expected[next];
    if (pattern !== undefined && pattern.test(line)) next++;
  }
  assert.equal(
    next,
    expected.length,
    `expected, in order:\n  ${expected.map(String).join('\n  ')}\nbut the broker answered:\n  ${actual.join('\n  ')}`,
  );
}

function lines(entries: readonly WireEntry[]): string[] {
  return entries.map((entry) => `${entry.method} ${entry.path} ${entry.status}`);
}

/** The wire as a client sees a whole sign-in: challenge, discovery, (registration), browser, token, MCP. */
const SIGN_IN_ON_THE_WIRE = (registration: boolean): RegExp[] => [
  /^POST \/mcp 401$/,
  /^GET \/\.well-known\/oauth-protected-resource\/mcp 200$/,
  /^GET \/\.well-known\/oauth-authorization-server 200$/,
  ...(registration ? [/^POST \/oauth\/register 201$/] : []),
  /^GET \/oauth\/authorize 200$/,
  /^POST \/oauth\/consent 302$/,
  /^GET \/oauth\/callback 302$/,
  /^POST \/oauth\/token 200$/,
  /^POST \/mcp 200$/,
];

describe('sign-in end to end: the MCP SDK client through the production broker', () => {
  let e2e: E2EBroker;
  let cimd: ClientMetadataServer;
  const open: Connected[] = [];

  before(async () => {
    cimd = await ClientMetadataServer.start((clientId) => ({
      client_id: clientId,
      client_name: CIMD_CLIENT_NAME,
      redirect_uris: [CLIENT_REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }));
    cimd.trust();
    e2e = await E2EBroker.start();
  });

  after(async () => {
    for (const connected of open) await connected.client.close().catch(() => undefined);
    await e2e?.close();
    await cimd?.close();
  });

  /** Keeps a connection for `after` to close if the test fails before it does. */
  const track = <T extends Connected>(connected: T): T => {
    open.push(connected);
    return connected;
  };

  /** The Forgejo login a child's token belongs to, by the tokens the stand-in issued. */
  const ownerOfFingerprint = async (fingerprint: string): Promise<string | undefined> =>
    (await e2e.front.ownersByFingerprint()).get(fingerprint);

  it('DCR: 401 challenge, discovery, registration, consent, Forgejo login, token, then get_me answers as that user', async () => {
    const user = e2eUser('demo');
    const provider = new E2EOAuthProvider({ clientName: 'E2E registered client' });
    const wireFrom = e2e.wire.length;
    const registrations = e2e.count('POST', OAUTH_PATHS.register);
    const exchangesBefore = e2e.front.count('POST', '/login/oauth/access_token');

    const connected = track(await signInWithSdk(e2e.mcpUrl, provider, new TestBrowser(), user));
    assertInOrder(lines(e2e.wire.slice(wireFrom)), SIGN_IN_ON_THE_WIRE(true));

    // Registered by RFC 7591: a broker-issued client_id, not a URL.
    const registered = provider.clientInformation();
    assert.ok(registered?.client_id);
    assert.doesNotMatch(registered.client_id, /^https?:/);
    assert.equal(e2e.count('POST', OAUTH_PATHS.register, 201), registrations + 1);

    // The authorization request the SDK built from the broker's metadata.
    const authorizationUrl = provider.authorizations[0];
    assert.ok(authorizationUrl);
    assert.equal(`${authorizationUrl.origin}${authorizationUrl.pathname}`, `${e2e.url}${OAUTH_PATHS.authorize}`);
    assert.equal(authorizationUrl.searchParams.get('client_id'), registered.client_id);
    assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorizationUrl.searchParams.get('resource'), e2e.mcpUrl.href);
    assert.equal(authorizationUrl.searchParams.get('redirect_uri'), CLIENT_REDIRECT);

    // The person saw the broker's consent page first, then Forgejo's own login form.
    const { signIn } = connected;
    assert.match(signIn.consentHtml ?? '', /E2E registered client/);
    assert.match(signIn.consentHtml ?? '', new RegExp(new URL(e2e.front.url).host.replaceAll('.', '\\.')));
    assert.ok(signIn.loginFormUrl?.startsWith(`${e2e.front.url}/login/oauth/authorize`), signIn.loginFormUrl);
    assert.equal(signIn.callback.get('iss'), e2e.url);
    assert.equal(e2e.front.count('POST', '/login/oauth/access_token'), exchangesBefore + 1, 'one code exchange at Forgejo');

    // The client holds broker tokens, never a Forgejo token.
    const tokens = provider.tokens();
    assert.ok(tokens?.access_token && tokens.refresh_token);
    const forgejoTokens = new Set(e2e.front.issued.flatMap((issued) => [issued.accessToken, issued.refreshToken]));
    assert.ok(!forgejoTokens.has(tokens.access_token) && !forgejoTokens.has(tokens.refresh_token));

    // tools/call through the broker to this user's child.
    assert.ok(connected.transport.sessionId, 'a legacy session');
    assert.deepEqual(await getMe(connected.client), { login: 'demo', id: user.id });
    assert.equal(await ownerOfFingerprint(await forgejoTokenFingerprint(connected.client)), 'demo');
    await disconnect(connected);
  });

  it('CIMD: the client_id is its metadata document URL; no registration, the broker fetches the document', async () => {
    const user = e2eUser('alice');
    const provider = new E2EOAuthProvider({ clientName: 'not used: the document names the client', clientMetadataUrl: cimd.clientId });
    const registrations = e2e.count('POST', OAUTH_PATHS.register);
    const fetches = cimd.fetches;
    const wireFrom = e2e.wire.length;

    const connected = track(await signInWithSdk(e2e.mcpUrl, provider, new TestBrowser(), user));
    assertInOrder(lines(e2e.wire.slice(wireFrom)), SIGN_IN_ON_THE_WIRE(false));
    assert.equal(e2e.count('POST', OAUTH_PATHS.register), registrations, 'no dynamic registration');
    assert.equal(provider.clientInformation()?.client_id, cimd.clientId);
    assert.equal(provider.authorizations[0]?.searchParams.get('client_id'), cimd.clientId);
    assert.ok(cimd.fetches > fetches, 'the broker fetched the metadata document');
    // The consent page names the client as its document does, and where the document lives.
    assert.match(connected.signIn.consentHtml ?? '', new RegExp(CIMD_CLIENT_NAME));
    assert.match(connected.signIn.consentHtml ?? '', new RegExp(new URL(cimd.clientId).host.replaceAll('.', '\\.')));

    assert.deepEqual(await getMe(connected.client), { login: 'alice', id: user.id });
    assert.equal(await ownerOfFingerprint(await forgejoTokenFingerprint(connected.client)), 'alice');
    await disconnect(connected);
  });

  it('CIMD over plain http on loopback (development, BROKER_CIMD_ALLOW_PRIVATE): the broker fetches it; the SDK is given the client_id, since it refuses an http clientMetadataUrl', async () => {
    const user = e2eUser('erin');
    const plain = await ClientMetadataServer.start(
      (clientId) => ({
        client_id: clientId,
        client_name: 'E2E plain-http client',
        redirect_uris: [CLIENT_REDIRECT],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
      }),
      'http',
    );
    try {
      // The SDK's own CIMD path wants https: it refuses before sending anything.
      await assert.rejects(
        auth(new E2EOAuthProvider({ clientName: 'unused', clientMetadataUrl: plain.clientId }), { serverUrl: e2e.mcpUrl }),
        /HTTPS/,
      );
      assert.equal(plain.fetches, 0);
      // A client that knows its client_id (what the SDK saves when it does use CIMD).
      const provider = new E2EOAuthProvider({ clientName: 'unused' });
      provider.saveClientInformation({ client_id: plain.clientId });
      const registrations = e2e.count('POST', OAUTH_PATHS.register);
      const connected = track(await signInWithSdk(e2e.mcpUrl, provider, new TestBrowser(), user));
      assert.equal(e2e.count('POST', OAUTH_PATHS.register), registrations);
      assert.ok(plain.fetches > 0, 'the broker fetched the http document');
      assert.match(connected.signIn.consentHtml ?? '', /E2E plain-http client/);
      assert.deepEqual(await getMe(connected.client), { login: 'erin', id: user.id });
      await disconnect(connected);
    } finally {
      await plain.close();
    }
  });

  it('two users at once, through the same client, each get only their own Forgejo token', async () => {
    const demo = e2eUser('demo');
    const alice = e2eUser('alice');
    const demoProvider = new E2EOAuthProvider({ clientName: 'unused', clientMetadataUrl: cimd.clientId });
    const aliceProvider = new E2EOAuthProvider({ clientName: 'unused', clientMetadataUrl: cimd.clientId });
    // Both sign in at the same time, each in their own browser.
    const [a, b] = await Promise.all([
      signInWithSdk(e2e.mcpUrl, demoProvider, new TestBrowser(), demo),
      signInWithSdk(e2e.mcpUrl, aliceProvider, new TestBrowser(), alice),
    ]);
    track(a);
    track(b);
    assert.notEqual(demoProvider.tokens()?.access_token, aliceProvider.tokens()?.access_token);
    assert.notEqual(a.transport.sessionId, b.transport.sessionId);

    // Interleaved calls from both, many in flight at once.
    const rounds = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const [meA, meB, fpA, fpB] = await Promise.all([
          getMe(a.client),
          getMe(b.client),
          forgejoTokenFingerprint(a.client),
          forgejoTokenFingerprint(b.client),
        ]);
        return { meA, meB, fpA, fpB };
      }),
    );
    const owners = await e2e.front.ownersByFingerprint();
    for (const { meA, meB, fpA, fpB } of rounds) {
      assert.deepEqual(meA, { login: 'demo', id: demo.id });
      assert.deepEqual(meB, { login: 'alice', id: alice.id });
      assert.notEqual(fpA, fpB);
      assert.equal(owners.get(fpA), 'demo', "demo's child holds a token Forgejo issued to demo");
      assert.equal(owners.get(fpB), 'alice', "alice's child holds a token Forgejo issued to alice");
    }
    // Each child holds its user's newest Forgejo token.
    const newest = async (login: string): Promise<string | undefined> => {
      for (const issued of [...e2e.front.issued].reverse()) {
        if ((await e2e.front.ownerOf(issued.accessToken)) === login) return issued.accessToken;
      }
      return undefined;
    };
    assert.equal(rounds[0]?.fpA, tokenFingerprint((await newest('demo')) ?? ''));
    assert.equal(rounds[0]?.fpB, tokenFingerprint((await newest('alice')) ?? ''));

    // Alice's broker token does not open demo's session.
    const crossed = await fetch(e2e.mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${aliceProvider.tokens()?.access_token ?? ''}`,
        'mcp-session-id': a.transport.sessionId ?? '',
        'mcp-protocol-version': a.client.getNegotiatedProtocolVersion() ?? '',
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name: 'get_me', arguments: {} } }),
    });
    const crossedBody = await crossed.text();
    assert.equal(crossed.status, 403, crossedBody);
    assert.doesNotMatch(crossedBody, /demo/);
    // And demo's session is still demo's.
    assert.deepEqual(await getMe(a.client), { login: 'demo', id: demo.id });

    await Promise.all([disconnect(a), disconnect(b)]);
  });

  it('a broker restart in the middle: the same client re-initialises on 404 (in shared mode: keeps its session) and goes on as the same user, no new sign-in; its refresh token works after the restart', async () => {
    const user = e2eUser('carol');
    const provider = new E2EOAuthProvider({ clientName: 'E2E restart client' });
    const legacy = track(await signInWithSdk(e2e.mcpUrl, provider, new TestBrowser(), user));
    // The same provider (same tokens) also serves a 2026-07-28 client: no session there.
    const modern = track(await connect(e2e.mcpUrl, provider, 'auto'));
    assert.equal(modern.client.getProtocolEra(), 'modern');
    assert.deepEqual(await getMe(legacy.client), { login: 'carol', id: user.id });
    assert.deepEqual(await getMe(modern.client), { login: 'carol', id: user.id });
    const fingerprint = await forgejoTokenFingerprint(legacy.client);
    assert.equal(await ownerOfFingerprint(fingerprint), 'carol');

    const oldSession = legacy.transport.sessionId;
    assert.ok(oldSession);
    const tokensBefore = provider.tokens();
    const signIns = {
      sdkAuthorizations: provider.authorizations.length,
      authorize: e2e.count('GET', OAUTH_PATHS.authorize),
      forgejoAuthorize: e2e.front.count('GET', '/login/oauth/authorize') + e2e.front.count('POST', '/login/oauth/authorize'),
      forgejoTokens: e2e.front.count('POST', '/login/oauth/access_token'),
      registrations: e2e.count('POST', OAUTH_PATHS.register),
    };
    const key = await readFile(join(e2e.dataDir, ENCRYPTION_KEY_FILE));

    await e2e.restart();
    assert.equal(e2e.generation, 2);
    assert.deepEqual(await readFile(join(e2e.dataDir, ENCRYPTION_KEY_FILE)), key, 'the same generated key file');

    let reconnected: Connected = legacy;
    if (TEST_UPSTREAM === 'http') {
      // Shared mode: the session is state in the store; the new broker carries it on, the client notices nothing.
      assert.deepEqual(await getMe(legacy.client), { login: 'carol', id: user.id });
      assert.equal(legacy.transport.sessionId, oldSession);
    } else {
      // stdio: the old session (its child) is gone, the next call is a 404 ...
      await assert.rejects(getMe(legacy.client), (error: unknown) => {
        assert.ok(error instanceof SdkHttpError, String(error));
        assert.equal(error.status, 404);
        return true;
      });
      assert.equal(e2e.wire.filter((entry) => entry.generation === 2 && entry.path === '/mcp').at(-1)?.status, 404);
      // ... and the host re-initialises: the same Client, the same provider and tokens, a new transport.
      await legacy.client.close();
      const again = new StreamableHTTPClientTransport(e2e.mcpUrl, { authProvider: provider });
      await legacy.client.connect(again);
      reconnected = track({ client: legacy.client, transport: again });
      assert.ok(again.sessionId);
      assert.notEqual(again.sessionId, oldSession);
      assert.deepEqual(await getMe(reconnected.client), { login: 'carol', id: user.id });
    }
    // The child got carol's Forgejo credential from the store (decrypted with the same key), unchanged.
    assert.equal(await forgejoTokenFingerprint(reconnected.client), fingerprint);

    const sessionAfterRestart = reconnected.transport.sessionId;

    // 2026-07-28 era: nothing to re-initialise, the client just goes on.
    assert.deepEqual(await getMe(modern.client), { login: 'carol', id: user.id });

    // Nobody signed in again, nothing was registered again, Forgejo saw nothing.
    assert.deepEqual(provider.tokens(), tokensBefore);
    assert.deepEqual(
      {
        sdkAuthorizations: provider.authorizations.length,
        authorize: e2e.count('GET', OAUTH_PATHS.authorize),
        forgejoAuthorize: e2e.front.count('GET', '/login/oauth/authorize') + e2e.front.count('POST', '/login/oauth/authorize'),
        forgejoTokens: e2e.front.count('POST', '/login/oauth/access_token'),
        registrations: e2e.count('POST', OAUTH_PATHS.register),
      },
      signIns,
    );

    // Refresh across the restart: the access token issued before the restart is revoked
    // (RFC 7009), so the next call is a 401; the SDK refreshes with the refresh token the
    // first broker issued, and retries.
    const clientId = provider.clientInformation()?.client_id ?? '';
    const revoked = await fetch(`${e2e.url}${OAUTH_PATHS.revoke}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: clientId, token: tokensBefore?.access_token ?? '' }).toString(),
    });
    assert.equal(revoked.status, 200);
    const tokenCalls = e2e.count('POST', OAUTH_PATHS.token, 200);
    const mcp401 = e2e.count('POST', '/mcp', 401);
    assert.deepEqual(await getMe(reconnected.client), { login: 'carol', id: user.id });
    assert.equal(e2e.count('POST', '/mcp', 401), mcp401 + 1, 'the revoked token was refused once');
    assert.equal(e2e.count('POST', OAUTH_PATHS.token, 200), tokenCalls + 1, 'one refresh');
    const refreshed = provider.tokens();
    assert.ok(refreshed?.access_token && refreshed.refresh_token);
    assert.notEqual(refreshed.access_token, tokensBefore?.access_token);
    assert.notEqual(refreshed.refresh_token, tokensBefore?.refresh_token, 'the refresh token rotated');
    // The session is bound to the grant, which the refresh keeps: same session, same child.
    assert.equal(reconnected.transport.sessionId, sessionAfterRestart);
    assert.equal(await forgejoTokenFingerprint(reconnected.client), fingerprint);
    assert.deepEqual(await getMe(modern.client), { login: 'carol', id: user.id });
    assert.equal(provider.authorizations.length, signIns.sdkAuthorizations, 'still no new sign-in');
    assert.equal(e2e.count('GET', OAUTH_PATHS.authorize), signIns.authorize);

    await disconnect(reconnected);
    await modern.client.close();
  });

  it('several requests refresh at once with the same refresh token: the grace period gives each the same pair, all succeed, the grant lives on', async () => {
    const user = e2eUser('erin');
    const provider = new E2EOAuthProvider({ clientName: 'E2E busy client' });
    const connected = track(await signInWithSdk(e2e.mcpUrl, provider, new TestBrowser(), user));
    const before = provider.tokens();
    // The access token dies (revoked here, as the clock cannot be moved in the production wiring) ...
    const revoked = await fetch(`${e2e.url}${OAUTH_PATHS.revoke}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: provider.clientInformation()?.client_id ?? '', token: before?.access_token ?? '' }).toString(),
    });
    assert.equal(revoked.status, 200);
    const refreshes = e2e.count('POST', OAUTH_PATHS.token);
    // ... while six requests are on their way: each gets 401, each has the SDK refresh, each retries.
    const answers = await Promise.all(Array.from({ length: 6 }, () => getMe(connected.client)));
    for (const answer of answers) assert.deepEqual(answer, { login: 'erin', id: user.id });
    assert.ok(e2e.count('POST', OAUTH_PATHS.token, 200) - refreshes >= 2, 'more than one refresh raced');
    assert.equal(
      e2e.count('POST', OAUTH_PATHS.token) - refreshes,
      e2e.count('POST', OAUTH_PATHS.token, 200) - refreshes,
      'no refresh refused',
    );
    const after = provider.tokens();
    assert.notEqual(after?.access_token, before?.access_token);
    // The grant was not taken for a stolen refresh token: the client goes on, and can refresh again.
    assert.deepEqual(await getMe(connected.client), { login: 'erin', id: user.id });
    assert.equal(await auth(provider, { serverUrl: e2e.mcpUrl }), 'AUTHORIZED');
    assert.notEqual(provider.tokens()?.refresh_token, after?.refresh_token);
    assert.deepEqual(await getMe(connected.client), { login: 'erin', id: user.id });
    assert.equal(provider.authorizations.length, 1, 'signed in once');
    await disconnect(connected);
  });

  it('a second sign-in by the same user moves their open sessions onto the new Forgejo token, keeping the session id', async () => {
    const user = e2eUser('alice');
    const first = new E2EOAuthProvider({ clientName: 'E2E first installation' });
    const legacy = track(await signInWithSdk(e2e.mcpUrl, first, new TestBrowser(), user));
    const modern = track(await connect(e2e.mcpUrl, first, 'auto'));
    const sessionId = legacy.transport.sessionId;
    const before = await forgejoTokenFingerprint(legacy.client);
    assert.equal(await forgejoTokenFingerprint(modern.client), before);

    // Alice signs in again elsewhere: Forgejo issues a new token and invalidates the old refresh token.
    const second = track(
      await signInWithSdk(e2e.mcpUrl, new E2EOAuthProvider({ clientName: 'E2E second installation' }), new TestBrowser(), user),
    );
    const newest = tokenFingerprint(e2e.front.issued.at(-1)?.accessToken ?? '');
    assert.equal(await ownerOfFingerprint(newest), 'alice');
    assert.notEqual(newest, before);
    assert.equal(await forgejoTokenFingerprint(second.client), newest);
    // The login started the move of alice's sessions; rotateUser is single flight, so this waits for it.
    await e2e.broker.pool.rotateUser(String(user.id));
    assert.equal(await forgejoTokenFingerprint(legacy.client), newest);
    assert.equal(legacy.transport.sessionId, sessionId, 'the client did not notice');
    assert.deepEqual(await getMe(legacy.client), { login: 'alice', id: user.id });
    assert.equal(await forgejoTokenFingerprint(modern.client), newest);
    assert.deepEqual(await getMe(modern.client), { login: 'alice', id: user.id });

    await Promise.all([disconnect(legacy), disconnect(second), modern.client.close()]);
  });

  it('2026-07-28 era: the SDK in versionNegotiation auto signs in the same way and get_me answers as that user', async () => {
    const user = e2eUser('dave');
    const provider = new E2EOAuthProvider({ clientName: 'E2E modern client' });
    const connected = track(await signInWithSdk(e2e.mcpUrl, provider, new TestBrowser(), user, 'auto'));
    assert.equal(connected.client.getProtocolEra(), 'modern');
    assert.equal(connected.transport.sessionId, undefined, 'no session in the 2026-07-28 era');
    assert.deepEqual(await getMe(connected.client), { login: 'dave', id: user.id });
    assert.equal(await ownerOfFingerprint(await forgejoTokenFingerprint(connected.client)), 'dave');
    await connected.client.close();
  });

  it('a returning user in the same browser: remembered consent and sign-in, straight back to the client', async () => {
    const user = e2eUser('demo');
    const browser = new TestBrowser();
    const first = new E2EOAuthProvider({ clientName: 'E2E returning client', clientMetadataUrl: cimd.clientId });
    const one = track(await signInWithSdk(e2e.mcpUrl, first, browser, user));
    assert.ok(one.signIn.consentHtml !== undefined && one.signIn.loginFormUrl !== undefined);
    await disconnect(one);
    // A second installation of the same client, same person, same browser.
    const second = new E2EOAuthProvider({ clientName: 'E2E returning client', clientMetadataUrl: cimd.clientId });
    const forgejoAuthorize = e2e.front.count('GET', '/login/oauth/authorize');
    const two = track(await signInWithSdk(e2e.mcpUrl, second, browser, user));
    assert.equal(two.signIn.consentHtml, undefined, 'consent remembered for (demo, this client)');
    assert.equal(two.signIn.loginFormUrl, undefined);
    assert.equal(e2e.front.count('GET', '/login/oauth/authorize'), forgejoAuthorize, 'no trip to Forgejo');
    assert.deepEqual(await getMe(two.client), { login: 'demo', id: user.id });
    await disconnect(two);
  });
});
