/**
 * What the admin and Connections tests share: a signed-in broker on either
 * store, users signed in from clients of their own, sessions of both eras,
 * and `forgejo-mcp-broker admin …` run as the real executable.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { standinChildCommand } from '../../src/demo.js';
import { MCP_PATH } from '../../src/http/route.js';
import { E2E_USERS, e2eUser, startBroker, type SignedInTestBroker } from '../support/brokers.js';
import { obtainToken, UserAgent, type TokenSet } from '../support/oauth.js';
import { withPostgres } from '../support/postgres.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

/** How a test reaches a store: the broker's variables, and the admin command's. */
export interface StoreUnderTest {
  readonly kind: 'sqlite' | 'postgres';
  /** Starts a signed-in broker on a fresh store of this kind. */
  start(name: string): Promise<SignedInTestBroker>;
  /** The configuration `admin` needs for that broker's store. */
  adminEnv(broker: SignedInTestBroker): Record<string, string>;
}

/** Describes `suite` once per store: SQLite in the broker's data directory, and PostgreSQL in a fresh schema. */
export function forEachStore(name: string, suite: (store: StoreUnderTest) => void): void {
  describe(`${name} (sqlite)`, () =>
    suite({
      kind: 'sqlite',
      start: (brokerName) => startSignedIn(brokerName, {}),
      adminEnv: (broker) => ({ BROKER_DATA_DIR: broker.dataDir }),
    }));
  withPostgres(`${name} (postgres)`, (freshUrl) => {
    const envs = new Map<SignedInTestBroker, Record<string, string>>();
    suite({
      kind: 'postgres',
      start: async (brokerName) => {
        const env = { BROKER_DATABASE_URL: await freshUrl(), BROKER_ENCRYPTION_KEY: randomBytes(32).toString('hex') };
        const broker = await startSignedIn(brokerName, env);
        envs.set(broker, env);
        return broker;
      },
      adminEnv: (broker) => envs.get(broker) ?? {},
    });
  });
}

function startSignedIn(name: string, env: Record<string, string>): Promise<SignedInTestBroker> {
  return startBroker({ wiring: 'signed-in', name, users: E2E_USERS, childCommand: standinChildCommand({ testTools: false }), env });
}

export interface SignedInUser extends TokenSet {
  readonly login: string;
  readonly userId: string;
  readonly clientId: string;
  /** The browser that signed in: it holds the broker's sign-in cookie. */
  readonly agent: UserAgent;
}

/** `login` signs in from a newly registered client called `clientName`, as a user and an MCP client would. */
export async function signIn(broker: SignedInTestBroker, login: string, clientName: string, agent?: UserAgent): Promise<SignedInUser> {
  const user = e2eUser(login);
  const browser = agent ?? new UserAgent(user);
  const tokens = await obtainToken(`${broker.url}${MCP_PATH}`, user, clientName, browser);
  return { ...tokens, login, userId: String(user.id), agent: browser };
}

/** A legacy-era session (initialize, then a held GET stream) of the official SDK client with the user's token. */
export async function openLegacySession(broker: SignedInTestBroker, user: SignedInUser): Promise<Client> {
  const client = new Client({ name: `admin-test-${user.login}`, version: '1.0.0' }, { versionNegotiation: { mode: 'legacy' } });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${broker.url}${MCP_PATH}`), {
      requestInit: { headers: { Authorization: `Bearer ${user.accessToken}` } },
    }),
  );
  return client;
}

/** A 2026-07-28 request (stateless: it goes to the user's channel) with the user's token. */
export function modernRequest(broker: SignedInTestBroker, user: SignedInUser, method: string): Promise<Response> {
  return fetch(`${broker.url}${MCP_PATH}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${user.accessToken}`,
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': method,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method,
      params: {
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    }),
  });
}

/** A legacy `tools/list` without a session: 401 for a token that no longer works, 400 otherwise (no session id). */
export async function tokenStatus(broker: SignedInTestBroker, user: SignedInUser): Promise<number> {
  const response = await fetch(`${broker.url}${MCP_PATH}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${user.accessToken}`,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  await response.body?.cancel();
  return response.status;
}

export interface AdminRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `forgejo-mcp-broker admin <args>` as a process of its own, with only PATH and `env` in its environment. */
export async function runAdmin(args: readonly string[], env: Record<string, string>): Promise<AdminRun> {
  const proc = spawn(process.execPath, [CLI, 'admin', ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** `admin <args> --json`, which must succeed; its document. */
export async function adminJson<T>(args: readonly string[], env: Record<string, string>): Promise<T> {
  const run = await runAdmin([...args, '--json'], env);
  if (run.code !== 0) throw new Error(`admin ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}
