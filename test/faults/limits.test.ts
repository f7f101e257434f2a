/**
 * Faults of the broker's limits (issue 10, section 3), replayed against the
 * production wiring (`loadConfig` and `createBroker`, real stand-in children,
 * real sockets): one user opening sessions until the cap, clients that
 * trickle headers or stall a body, and rate limiting behind a reverse proxy.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createBroker, type RunningBroker } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { standinChildCommand } from '../../src/demo.js';
import { silentLogger } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { randomToken, TestAuthenticator, TestCredentials, startBroker } from '../support/brokers.js';
import { TestForge } from '../support/forgejo.js';

const PROTOCOL_VERSION = '2025-11-25';
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'faults', version: '1' } },
};

interface ConfiguredBroker {
  readonly broker: RunningBroker;
  /** A bearer token of a new user. */
  readonly addUser: (login: string) => string;
}

/** The production broker from these variables (and nothing else but loopback and the stand-in child), with injected sign-in. */
async function startConfigured(t: TestContext, env: Record<string, string> = {}): Promise<ConfiguredBroker> {
  const forge = await TestForge.start();
  const config = loadConfig({
    BROKER_LISTEN: '127.0.0.1:0',
    FORGEJO_URL: forge.url,
    BROKER_CHILD_COMMAND: standinChildCommand({ testTools: true }),
    ...env,
  });
  const authenticator = new TestAuthenticator('http://127.0.0.1/.well-known/oauth-protected-resource/mcp');
  const credentials = new TestCredentials();
  const broker = await createBroker({ config, log: silentLogger(), auth: { authenticator, credentials, routes: [] } });
  t.after(async () => {
    await broker.stop();
    await forge.close();
  });
  let users = 0;
  return {
    broker,
    addUser: (login) => {
      const userId = String(++users);
      const bearer = randomToken();
      const forgejoToken = randomToken();
      forge.addToken(forgejoToken, { id: users, login });
      credentials.set(userId, { accessToken: forgejoToken, expiresAt: Date.now() + 3_600_000 });
      authenticator.principals.set(bearer, {
        userId,
        forgejoLogin: login,
        clientId: 'faults',
        tokenHash: bearer,
        grantId: `grant-${userId}`,
      });
      return bearer;
    },
  };
}

function post(broker: RunningBroker, bearer: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${broker.url}/mcp`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      Authorization: `Bearer ${bearer}`,
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

/** An initialize as a raw client sends it; the session id, or the refusal's response. */
async function openSession(broker: RunningBroker, bearer: string): Promise<{ sessionId?: string; refusal?: Response }> {
  const response = await post(broker, bearer, INIT);
  await response.arrayBuffer();
  const sessionId = response.headers.get('mcp-session-id');
  if (response.status !== 200 || sessionId === null) return { refusal: response };
  const initialized = await post(
    broker,
    bearer,
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { 'Mcp-Session-Id': sessionId, 'MCP-Protocol-Version': PROTOCOL_VERSION },
  );
  assert.equal(initialized.status, 202);
  return { sessionId };
}

/**
 * A raw connection that sends `request` and then nothing more; resolves with
 * what the server wrote once the server closes it.
 */
async function stalledRequest(broker: RunningBroker, request: string): Promise<string> {
  const { hostname, port } = new URL(broker.url);
  const socket = connect(Number(port), hostname);
  await once(socket, 'connect');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.write(request);
  await once(socket, 'close');
  return received;
}

test(
  'cap lockout: with the defaults one user gets 16 sessions, the 17th is 503 with Retry-After, others are not locked out, and an ended session frees a place',
  { timeout: 120_000 },
  async (t) => {
    const { broker, addUser } = await startConfigured(t);
    const alice = addUser('alice');
    const sessions: string[] = [];
    for (let i = 0; i < 16; i++) {
      const { sessionId } = await openSession(broker, alice);
      assert.ok(sessionId, `session ${i + 1} of 16`);
      sessions.push(sessionId);
    }
    const refused = (await openSession(broker, alice)).refusal;
    assert.equal(refused?.status, 503, 'the 17th session of one user');
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    assert.equal(broker.legacy.active, 16, 'the refused initialize started no child');

    const bob = addUser('bob');
    assert.ok((await openSession(broker, bob)).sessionId, 'another user still gets a session');

    const ended = await fetch(`${broker.url}/mcp`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${alice}`, 'Mcp-Session-Id': sessions[0] as string, 'MCP-Protocol-Version': PROTOCOL_VERSION },
    });
    assert.equal(ended.status, 200);
    assert.ok((await openSession(broker, alice)).sessionId, 'a place freed by an ended session is usable again');
    t.diagnostic(`user cap 16: 16 opened, 1 refused (503), other user served, 1 ended and replaced; ${broker.legacy.active} live sessions`);
  },
);

test('slow headers are cut after BROKER_HEADERS_TIMEOUT with 408, and the broker keeps serving', { timeout: 60_000 }, async (t) => {
  const { broker, addUser } = await startConfigured(t, { BROKER_HEADERS_TIMEOUT: '300ms', BROKER_BODY_TIMEOUT: '600ms' });
  const answer = await stalledRequest(
    broker,
    `POST /mcp HTTP/1.1\r\nHost: ${new URL(broker.url).host}\r\nContent-Type: application/json\r\n`,
  );
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.ok((await openSession(broker, addUser('alice'))).sessionId, 'a well-behaved client is served');
});

test(
  'a stalled body is cut after BROKER_BODY_TIMEOUT with 408: no session, and the broker keeps serving',
  { timeout: 60_000 },
  async (t) => {
    const { broker, addUser } = await startConfigured(t, { BROKER_HEADERS_TIMEOUT: '300ms', BROKER_BODY_TIMEOUT: '600ms' });
    const alice = addUser('alice');
    const body = JSON.stringify(INIT);
    const head = [
      'POST /mcp HTTP/1.1',
      `Host: ${new URL(broker.url).host}`,
      'Content-Type: application/json',
      'Accept: application/json, text/event-stream',
      `Authorization: Bearer ${alice}`,
      `Content-Length: ${body.length}`,
    ].join('\r\n');
    const answer = await stalledRequest(broker, `${head}\r\n\r\n${body.slice(0, 20)}`);
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.equal(broker.legacy.active, 0, 'the cut request opened no session');
    assert.ok((await openSession(broker, alice)).sessionId, 'the same user is served right after');
  },
);

test('the body timeout bounds the request only: a tool call answering later than it is not cut', { timeout: 60_000 }, async (t) => {
  const { broker, addUser } = await startConfigured(t, { BROKER_HEADERS_TIMEOUT: '300ms', BROKER_BODY_TIMEOUT: '600ms' });
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', broker.url), {
    requestInit: { headers: { Authorization: `Bearer ${addUser('alice')}` } },
  });
  const client = new Client({ name: 'faults', version: '1' }, { capabilities: {} });
  await client.connect(transport);
  t.after(() => client.close());
  // Five times the body timeout, and more than Node checks deadlines (every 75 ms here).
  const result = await client.callTool({ name: 'sleep', arguments: { ms: 3_000 } });
  assert.deepEqual(
    (result as { content: { text: string }[] }).content.map((block) => block.text),
    ['slept'],
  );
});

test(
  'rate limiting behind trusted proxies keys on the right-most untrusted X-Forwarded-For address, IPv6 per /64; without the setting the header is ignored',
  { timeout: 60_000 },
  async (t) => {
    // BROKER_RATE_LIMIT=1: a burst of 10, then one a minute, so nothing refills during the test.
    const behindProxy = await startBroker({
      wiring: 'signed-in',
      name: 'faults-proxy',
      users: [],
      childCommand: standinChildCommand({ testTools: true }),
      env: { BROKER_RATE_LIMIT: '1', BROKER_TRUSTED_PROXIES: '127.0.0.1, 10.0.0.0/8' },
    });
    t.after(() => behindProxy.close());
    const authorize = async (url: string, forwardedFor?: string): Promise<number> => {
      const response = await fetch(`${url}${OAUTH_PATHS.authorize}`, {
        headers: forwardedFor === undefined ? {} : { 'X-Forwarded-For': forwardedFor },
      });
      await response.arrayBuffer();
      return response.status;
    };
    const spend = async (url: string, forwardedFor: string): Promise<void> => {
      for (let i = 0; i < 10; i++) assert.notEqual(await authorize(url, forwardedFor), 429, `request ${i + 1} from ${forwardedFor}`);
      assert.equal(await authorize(url, forwardedFor), 429, `request 11 from ${forwardedFor}`);
    };
    const url = behindProxy.url;
    await spend(url, '203.0.113.5');
    assert.notEqual(await authorize(url, '203.0.113.6'), 429, 'another client behind the same proxy has its own budget');
    assert.equal(await authorize(url, '203.0.113.99, 203.0.113.5'), 429, 'an address the client wrote left of it changes nothing');
    assert.notEqual(await authorize(url, '203.0.113.5, 203.0.113.7'), 429, 'the right-most untrusted address is the key');
    await spend(url, '198.51.100.7, 10.1.2.3');
    assert.equal(await authorize(url, '198.51.100.7'), 429, 'behind two trusted proxies, the client before them is the key');
    await spend(url, '2001:db8:1:2::1');
    assert.equal(await authorize(url, '2001:db8:1:2:ffff::7'), 429, 'the same /64');
    assert.equal(await authorize(url, '[2001:db8:1:2::8]:41000'), 429, 'the same /64, written with a port');
    assert.notEqual(await authorize(url, '2001:db8:1:3::1'), 429, 'the next /64 has its own budget');

    const direct = await startBroker({
      wiring: 'signed-in',
      name: 'faults-direct',
      users: [],
      childCommand: standinChildCommand({ testTools: true }),
      env: { BROKER_RATE_LIMIT: '1' },
    });
    t.after(() => direct.close());
    await spend(direct.url, '203.0.113.5');
    assert.equal(
      await authorize(direct.url, '203.0.113.6'),
      429,
      'without BROKER_TRUSTED_PROXIES the header is ignored: one peer, one budget',
    );
    assert.equal(await authorize(direct.url), 429);
  },
);
