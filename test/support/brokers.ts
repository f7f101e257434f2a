/**
 * Every way a test starts a broker. `startBroker(options)` is the entry;
 * every broker it starts is `createBroker` (src/app.ts), the one composition
 * root, and `wiring` says how:
 * - `fakes` (default): in process, injected bearer tokens and Forgejo
 *   credentials, real stand-in children (or `spawn` / `wrapSpawn`), a test
 *   forge: a `TestBroker`;
 * - `signed-in`: in process, configured by `loadConfig`, SQLite, the consent
 *   page and the Forgejo stand-in; `E2EBroker`, `startProductionBroker` and
 *   `startConformanceBroker` are it with what each suite adds
 *   (`startClientsDemo` is the demo);
 * - `process`: the fakes' wiring in a process of its own, for signals and kills.
 * `OAuthHarness` is the OAuth server alone, with a clock the test moves.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createBroker, stopOnSignals, type RunningBroker } from '../../src/app.js';
import { reloadPolicyOnHangup } from '../../src/app/governance.js';
import { AuditLog } from '../../src/audit/audit-log.js';
import type { PolicyConfig } from '../../src/config/governance.js';
import type { Authenticator, AuthFailure, ForgejoAccess, ForgejoCredentials, Principal } from '../../src/auth/principal.js';
import { type Config, loadConfig } from '../../src/config/config.js';
import { DEMO_USERS, standinChildCommand, standinUpstreamCommand, startDemo } from '../../src/demo.js';
import { BrokerError } from '../../src/errors/errors.js';
import { ForgejoClient } from '../../src/forgejo/client.js';
import { ForgejoCredentialManager } from '../../src/forgejo/credentials.js';
import { authenticateBearer } from '../../src/http/mcp-endpoint.js';
import { MCP_PATH } from '../../src/http/route.js';
import type { LegacyFront } from '../../src/legacy/front.js';
import { createLogger, type Logger, type LogLevel, silentLogger } from '../../src/log/logger.js';
import type { BrokerMetrics } from '../../src/metrics/metrics.js';
import type { ModernFront } from '../../src/modern/front.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { createOAuthServer, type OAuthServer, type OAuthServerOptions } from '../../src/oauth/server.js';
import type { SpawnFunc } from '../../src/pool/child.js';
import type { ChannelPool } from '../../src/pool/pool.js';
import { type ForgejoStandin, type StandinUser, startForgejoStandin } from '../../src/standin/forgejo.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { ForgejoCredential, Store } from '../../src/store/store.js';
import { ForgejoFront, TestForge } from './forgejo.js';
import { CLIENT_REDIRECT, consentFields, pkce, TestBrowser, type Credentials } from './oauth.js';

// --- the one entry
/** Where a test's broker runs and how it is wired. */
export type BrokerWiring = 'fakes' | 'signed-in' | 'process';

/**
 * Starts a broker for a test; every one is `createBroker`:
 * - `{ wiring: 'fakes' }` (the default): in process, with injected bearer
 *   tokens and Forgejo credentials (`TestBrokerOptions`);
 * - `{ wiring: 'signed-in', ... }`: in process, configured by `loadConfig`,
 *   signed in through the consent page and the Forgejo stand-in
 *   (`SignedInTestBrokerOptions`);
 * - `{ wiring: 'process' }`: the fakes' wiring in a process of its own.
 */
export function startBroker(options?: TestBrokerOptions & { readonly wiring?: 'fakes' }): Promise<TestBroker>;
export function startBroker<Front extends ForgejoFrontServer>(
  options: SignedInTestBrokerOptions & {
    readonly wiring: 'signed-in';
    readonly forgejoFront: (forgejo: ForgejoStandin) => Promise<Front>;
  },
): Promise<SignedInTestBroker<Front>>;
export function startBroker(options: SignedInTestBrokerOptions & { readonly wiring: 'signed-in' }): Promise<SignedInTestBroker>;
export function startBroker(options: {
  readonly wiring: 'process';
  readonly env?: Readonly<Record<string, string>>;
}): Promise<BrokerProcess>;
export function startBroker(
  options:
    | (TestBrokerOptions & { readonly wiring?: 'fakes' })
    | (SignedInTestBrokerOptions & {
        readonly wiring: 'signed-in';
        readonly forgejoFront?: (forgejo: ForgejoStandin) => Promise<ForgejoFrontServer>;
      })
    | { readonly wiring: 'process'; readonly env?: Readonly<Record<string, string>> } = {},
): Promise<TestBroker | SignedInTestBroker<ForgejoFrontServer | undefined> | BrokerProcess> {
  switch (options.wiring) {
    case 'process':
      return startBrokerProcess(options.env ?? {});
    case 'signed-in':
      return startSignedInTestBroker(options);
    default:
      return TestBroker.start(options);
  }
}

// --- in process, with fakes
export const STANDIN_CHILD = fileURLToPath(new URL('../../src/standin/forgejo-mcp.js', import.meta.url));

/**
 * Which upstream the suites run against: `BROKER_TEST_UPSTREAM=http` (`npm run
 * test:shared`) runs them in shared mode, one stand-in forgejo-mcp in its
 * multi-tenant HTTP mode for every user; otherwise a stdio child per channel.
 */
export const TEST_UPSTREAM: 'stdio' | 'http' = process.env.BROKER_TEST_UPSTREAM === 'http' ? 'http' : 'stdio';

/** BROKER_UPSTREAM_COMMAND for the stand-in, as a shell-quoted line (the variables' form). */
export function standinUpstreamCommandLine(options: { readonly testTools: boolean }): string {
  return standinUpstreamCommand(options)
    .map((word) => (word === '{port}' || word.startsWith('--') ? word : `'${word}'`))
    .join(' ');
}

/**
 * The injected authenticator of the core tests, as the seed's tests inject
 * theirs: bearer tokens the test hands out map to principals.
 */
export class TestAuthenticator implements Authenticator {
  readonly principals = new Map<string, Principal>();
  constructor(readonly resourceMetadataUrl: string) {}

  authenticate(bearerToken: string): Promise<Principal | AuthFailure> {
    const principal = this.principals.get(bearerToken);
    return Promise.resolve(principal ?? { error: 'invalid_token', description: 'The access token is not valid' });
  }
}

/** Forgejo credentials per user, set and revoked by the test; counts refreshes. */
export class TestCredentials implements ForgejoCredentials {
  private readonly current = new Map<string, ForgejoAccess>();
  private readonly revoked = new Set<string>();
  /** Called when a token expires within the asked validity; returns the next one. */
  refresh: ((userId: string) => ForgejoAccess) | undefined;
  refreshes = 0;

  set(userId: string, access: ForgejoAccess): void {
    this.current.set(userId, access);
  }

  get(userId: string): ForgejoAccess | undefined {
    return this.current.get(userId);
  }

  revoke(userId: string): void {
    this.revoked.add(userId);
  }

  access(userId: string, minValidityMs: number): Promise<ForgejoAccess> {
    if (this.revoked.has(userId)) return Promise.reject(new BrokerError('credential_revoked', 'refresh refused'));
    let access = this.current.get(userId);
    if (access === undefined) return Promise.reject(new BrokerError('credential_revoked', 'no credential'));
    if (access.expiresAt - Date.now() <= minValidityMs && this.refresh !== undefined) {
      this.refreshes++;
      access = this.refresh(userId);
      this.current.set(userId, access);
    }
    return Promise.resolve(access);
  }

  refused(userId: string): Promise<ForgejoAccess> {
    return this.access(userId, 0);
  }
}

export interface TestBrokerOptions {
  readonly maxSessions?: number;
  readonly maxSessionsPerUser?: number;
  readonly idleTimeoutMs?: number;
  readonly initTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly drainGraceMs?: number;
  readonly refreshLeadMs?: number;
  readonly maxBodyBytes?: number;
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
  readonly spawn?: SpawnFunc;
  /** Wraps the real spawner, to delay or observe spawns. */
  readonly wrapSpawn?: (spawn: SpawnFunc) => SpawnFunc;
  readonly childCommand?: readonly string[];
  /** `http`: shared mode, the stand-in's multi-tenant HTTP mode run by the broker. Default: TEST_UPSTREAM (stdio with childCommand or spawn). */
  readonly upstream?: 'stdio' | 'http';
  readonly upstreamProcesses?: number;
  /** BROKER_UPSTREAM_COMMAND's argv in shared mode (default: the stand-in with its test tools). */
  readonly upstreamCommand?: readonly string[];
  readonly log?: Logger;
  readonly now?: () => number;
  /** The audit log goes to this store's audit repository (written every few milliseconds); absent: no audit log. */
  readonly auditStore?: Pick<Store, 'audit'>;
  /** BROKER_AUDIT_ARGUMENTS. */
  readonly auditArguments?: boolean;
  /** The tool policy's settings (BROKER_TOOLS_*, BROKER_POLICY_*); unset ones as loadConfig leaves them. */
  readonly policy?: Partial<PolicyConfig>;
}

export interface TestUser {
  readonly userId: string;
  readonly login: string;
  /** A broker bearer token for this user. */
  readonly bearer: string;
  readonly forgejoToken: string;
}

/** A broker on a real loopback port (createBroker, as production), with real stand-in children, a test forge and injected auth. */
export class TestBroker {
  private nextUser = 1;

  private constructor(
    readonly forge: TestForge,
    readonly running: RunningBroker,
    readonly authenticator: TestAuthenticator,
    readonly credentials: TestCredentials,
  ) {}

  static async start(options: TestBrokerOptions = {}): Promise<TestBroker> {
    const forge = await TestForge.start();
    const credentials = new TestCredentials();
    const publicUrl = 'http://127.0.0.1';
    const authenticator = new TestAuthenticator(`${publicUrl}/.well-known/oauth-protected-resource/mcp`);
    const defaults = loadConfig({
      BROKER_LISTEN: '127.0.0.1:0',
      BROKER_PUBLIC_URL: publicUrl,
      FORGEJO_URL: forge.url,
      BROKER_CHILD_COMMAND: `'${process.execPath}' '${STANDIN_CHILD}' --transport stdio --test-tools`,
    });
    const upstream = options.upstream ?? (options.childCommand === undefined && options.spawn === undefined ? TEST_UPSTREAM : 'stdio');
    const config: Config = {
      ...defaults,
      ...(options.childCommand === undefined ? {} : { childCommand: options.childCommand }),
      ...(upstream === 'http'
        ? {
            upstream: {
              kind: 'command',
              command: options.upstreamCommand ?? standinUpstreamCommand({ testTools: true }),
              processes: options.upstreamProcesses ?? 1,
            },
          }
        : {}),
      // No caps, long timeouts and no background maintenance unless a test asks: each test drives what it checks.
      maxSessions: options.maxSessions ?? 0,
      maxSessionsPerUser: options.maxSessionsPerUser ?? 0,
      idleTimeoutMs: options.idleTimeoutMs ?? 15 * 60_000,
      initTimeoutMs: options.initTimeoutMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      drainGraceMs: options.drainGraceMs ?? 5_000,
      refreshLeadMs: options.refreshLeadMs ?? 5 * 60_000,
      maxBodyBytes: options.maxBodyBytes ?? 4 * 1024 * 1024,
      headersTimeoutMs: options.headersTimeoutMs ?? 10_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 60_000,
      childStopGraceMs: 2000,
      childEnvAllow: [],
      reapIntervalMs: 24 * 3_600_000,
      rotateIntervalMs: 24 * 3_600_000,
      shutdownGraceMs: 1000,
    };
    const { spawn, wrapSpawn } = options;
    const log = options.log ?? silentLogger();
    const audit =
      options.auditStore === undefined
        ? undefined
        : new AuditLog({
            repository: options.auditStore.audit,
            log,
            storeArguments: options.auditArguments ?? false,
            retentionMs: config.audit.retentionMs,
            maxQueued: 10_000,
            batchSize: 100,
            flushMs: 5,
            purgeIntervalMs: 3_600_000,
            clientName: (clientId) => Promise.resolve(`${clientId} name`),
          });
    let running: RunningBroker;
    try {
      running = await createBroker({
        config: { ...config, policy: { ...config.policy, ...options.policy } },
        log,
        auth: { authenticator, credentials, routes: [], ...(audit === undefined ? {} : { audit, close: () => audit.close() }) },
        ...(spawn !== undefined ? { spawn: () => spawn } : wrapSpawn !== undefined ? { spawn: wrapSpawn } : {}),
        ...(options.now === undefined ? {} : { clock: options.now }),
      });
    } catch (error) {
      await forge.close();
      throw error;
    }
    return new TestBroker(forge, running, authenticator, credentials);
  }

  get url(): string {
    return this.running.url;
  }

  get pool(): ChannelPool {
    return this.running.pool;
  }

  get legacy(): LegacyFront {
    return this.running.legacy;
  }

  get modern(): ModernFront {
    return this.running.modern;
  }

  get metrics(): BrokerMetrics {
    return this.running.metrics;
  }

  get mcpUrl(): URL {
    return new URL('/mcp', this.url);
  }

  /** A new Forgejo user with a Forgejo token the forge knows and a broker bearer token; `teams` are their Forgejo teams. */
  addUser(login?: string, teams: readonly { org: string; team: string }[] = []): TestUser {
    const n = this.nextUser++;
    const user = { userId: String(n), login: login ?? `user${n}`, bearer: randomToken(), forgejoToken: randomToken() };
    this.forge.addToken(user.forgejoToken, { id: n, login: user.login, teams });
    this.credentials.set(user.userId, { accessToken: user.forgejoToken, expiresAt: Date.now() + 3_600_000 });
    this.grantBearer(user, user.bearer, `grant-${n}`);
    return user;
  }

  /** Another bearer token for a user, under the given grant (of the given OAuth client). */
  grantBearer(user: Pick<TestUser, 'userId' | 'login'>, bearer: string, grantId: string, clientId = 'test-client'): void {
    this.authenticator.principals.set(bearer, {
      userId: user.userId,
      forgejoLogin: user.login,
      clientId,
      tokenHash: createHash('sha256').update(bearer).digest('hex'),
      grantId,
    });
  }

  /** A fresh Forgejo token for a user, known to the forge, made current. */
  newForgejoToken(user: TestUser, expiresAt = Date.now() + 3_600_000): string {
    const token = randomToken();
    this.forge.addToken(token, { id: Number(user.userId), login: user.login });
    this.credentials.set(user.userId, { accessToken: token, expiresAt });
    return token;
  }

  /** An SDK client connected through the broker as this user; `getStreamOpened` resolves once the broker accepts its GET stream. */
  async connect(
    user: TestUser,
    name = 'test-client',
  ): Promise<{ client: Client; transport: StreamableHTTPClientTransport; getStreamOpened: Promise<void> }> {
    const watch = watchGetStream();
    const transport = new StreamableHTTPClientTransport(this.mcpUrl, {
      requestInit: { headers: { Authorization: `Bearer ${user.bearer}` } },
      fetch: watch.fetch,
    });
    const client = new Client(
      { name, version: '1.0.0' },
      { capabilities: { elicitation: { form: {} }, sampling: {}, roots: { listChanged: true } } },
    );
    await client.connect(transport);
    return { client, transport, getStreamOpened: watch.opened };
  }

  /** Ends every session and channel and refuses new ones: the broker's own step of its stop. */
  stopSessions(): Promise<void> {
    return this.running.stopSessions();
  }

  async close(): Promise<void> {
    await this.running.stop();
    await this.forge.close();
  }
}

export function randomToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * A fetch for an SDK client transport that resolves `opened` once the server
 * has answered the client's GET stream request: from then on, notifications
 * that belong to no request reach the client.
 */
export function watchGetStream(): { fetch: typeof fetch; opened: Promise<void> } {
  let resolveOpened!: () => void;
  const opened = new Promise<void>((resolve) => {
    resolveOpened = resolve;
  });
  const watching: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if ((init?.method ?? 'GET') === 'GET' && response.ok) resolveOpened();
    return response;
  };
  return { fetch: watching, opened };
}

// --- in process, signed in as in production
/**
 * The production broker as the harness tests run it: `createBroker`,
 * configured by `loadConfig` from the variables an operator sets, on a
 * loopback port the system picked, with a real SQLite data directory (and its generated key
 * file) in a temporary directory, in front of the Forgejo stand-in with the
 * broker registered as its OAuth2 application. Nothing in it turns
 * authentication off: clients sign in through the broker's consent page and
 * the stand-in's login form.
 *
 * Not built on `startDemo`: the demo patches an already loaded Config with
 * its stand-in, where these tests want FORGEJO_URL, FORGEJO_CLIENT_ID,
 * FORGEJO_CLIENT_SECRET and FORGEJO_SCOPES to go through `loadConfig` as in
 * production.
 */

/**
 * A loopback socket on a port the system picked, held for the harness's life:
 * brokers (and restarts) take its connections. A connection that arrives while
 * no broker is mounted (a restart's gap) waits, as in a listen backlog, and
 * goes to the next broker `handOverWaiting` is called for.
 */
export async function listenOnAnyPort(): Promise<Server> {
  const listener = createServer();
  const sockets = new Set<Socket>();
  const waiting = new Set<Socket>();
  listener.on('connection', (socket: Socket) => {
    if (sockets.has(socket)) return;
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      waiting.delete(socket);
    });
    // This handler alone: no broker took it.
    if (listener.listenerCount('connection') === 1) waiting.add(socket);
  });
  heldSockets.set(listener, { sockets, waiting });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  return listener;
}

/** The connections each held listener accepted and that are still open, and those no broker took yet. */
const heldSockets = new WeakMap<Server, { readonly sockets: Set<Socket>; readonly waiting: Set<Socket> }>();

/** Gives the broker just mounted on a held listener the connections that arrived while none was. */
export function handOverWaiting(listener: Server): void {
  const held = heldSockets.get(listener);
  if (held === undefined) return;
  const waiting = [...held.waiting];
  held.waiting.clear();
  for (const socket of waiting) listener.emit('connection', socket);
}

/**
 * Closes a listener of `listenOnAnyPort`. A connection that arrived after the
 * last broker stopped waits for one that never comes: it is ended here, or the
 * close would wait for it forever.
 */
export async function closeHeldListener(listener: Server): Promise<void> {
  for (const socket of heldSockets.get(listener)?.sockets ?? []) socket.destroy();
  await new Promise<void>((resolve) => listener.close(() => resolve()));
}

/** A server put between the broker and the Forgejo stand-in (`forgejoFront`): its URL is the broker's FORGEJO_URL, and it is closed with the rest. */
export interface ForgejoFrontServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface SignedInTestBrokerOptions {
  /** Whose harness this is: names the temporary data directory and the broker's application at the stand-in. */
  readonly name: string;
  /** Who can sign in at the Forgejo stand-in. */
  readonly users: readonly StandinUser[];
  /** BROKER_CHILD_COMMAND. */
  readonly childCommand: string;
  /** The stand-in's access-token lifetime in seconds (Forgejo's default is 3600). */
  readonly accessTokenLifetimeSeconds?: number;
  /** Further broker variables (BROKER_RATE_LIMIT, BROKER_LOG_LEVEL, ...); they win over the ones set here. */
  readonly env?: Readonly<Record<string, string>>;
  /** Called with every broker started: the first, then each restart's. */
  readonly onBrokerStarted?: (broker: RunningBroker) => void;
}

export interface SignedInTestBroker<Front = undefined> {
  readonly config: Config;
  /** The broker's base URL (the OAuth issuer); `<url>/mcp` is the MCP endpoint. */
  readonly url: string;
  readonly dataDir: string;
  readonly forgejo: ForgejoStandin;
  /** What `forgejoFront` put between the broker and the stand-in. */
  readonly front: Front;
  /** The running broker; throws while none is (a restart that failed to start one). */
  readonly broker: RunningBroker;
  /** Stops the broker (graceful) and starts a new one on the same socket and data directory, as a process restart would. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const SIGNED_IN_FORGEJO_SCOPES = 'read:user write:issue write:repository';

/**
 * Starts the stand-in, then (with `forgejoFront`) the front before it, then
 * the broker; what started is stopped again when a later step fails.
 */
function startSignedInTestBroker<Front extends ForgejoFrontServer>(
  options: SignedInTestBrokerOptions & { readonly forgejoFront: (forgejo: ForgejoStandin) => Promise<Front> },
): Promise<SignedInTestBroker<Front>>;
function startSignedInTestBroker(options: SignedInTestBrokerOptions): Promise<SignedInTestBroker>;
async function startSignedInTestBroker(
  options: SignedInTestBrokerOptions & { readonly forgejoFront?: (forgejo: ForgejoStandin) => Promise<ForgejoFrontServer> },
): Promise<SignedInTestBroker<ForgejoFrontServer | undefined>> {
  const listener = await listenOnAnyPort();
  const { port } = listener.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const application = { clientId: `forgejo-mcp-broker-${options.name}`, clientSecret: randomBytes(24).toString('hex') };
  const forgejo = await startForgejoStandin({
    users: options.users,
    applications: [{ ...application, redirectUris: [`${url}${OAUTH_PATHS.callback}`] }],
    ...(options.accessTokenLifetimeSeconds === undefined ? {} : { accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds }),
  });
  let front: ForgejoFrontServer | undefined;
  let dataDir: string | undefined;
  let broker: RunningBroker | undefined;
  const startBroker = async (config: Config, log: Logger): Promise<void> => {
    broker = await createBroker({ config, log, listener });
    handOverWaiting(listener);
    options.onBrokerStarted?.(broker);
  };
  const stopBroker = async (): Promise<void> => {
    const running = broker;
    broker = undefined;
    await running?.stop();
  };
  const close = async (): Promise<void> => {
    try {
      await stopBroker();
    } finally {
      await front?.close();
      await forgejo.close();
      if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
      await closeHeldListener(listener);
    }
  };
  try {
    front = await options.forgejoFront?.(forgejo);
    dataDir = await mkdtemp(join(tmpdir(), `broker-${options.name}-`));
    const config = loadConfig({
      BROKER_LISTEN: `127.0.0.1:${port}`,
      BROKER_PUBLIC_URL: url,
      // As an operator running replicas sets it: where the others reach this one.
      BROKER_REPLICA_URL: url,
      BROKER_DATA_DIR: dataDir,
      FORGEJO_URL: front?.url ?? forgejo.url,
      FORGEJO_CLIENT_ID: application.clientId,
      FORGEJO_CLIENT_SECRET: application.clientSecret,
      FORGEJO_SCOPES: SIGNED_IN_FORGEJO_SCOPES,
      BROKER_CHILD_COMMAND: options.childCommand,
      // Shared-mode runs swap the stand-in child for the stand-in upstream; another child (the conformance fixture) stays.
      ...(TEST_UPSTREAM === 'http' && options.childCommand.includes(STANDIN_CHILD)
        ? { BROKER_UPSTREAM_COMMAND: standinUpstreamCommandLine({ testTools: options.childCommand.includes('--test-tools') }) }
        : {}),
      BROKER_LOG_LEVEL: 'warn',
      BROKER_SHUTDOWN_GRACE: '5s',
      ...options.env,
    });
    const log = createLogger(config.logLevel, process.stderr);
    await startBroker(config, log);
    return {
      config,
      url,
      dataDir,
      forgejo,
      front,
      get broker(): RunningBroker {
        if (broker === undefined) throw new Error('the broker is not running');
        return broker;
      },
      restart: async () => {
        await stopBroker();
        await startBroker(config, log);
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

// --- the end-to-end sign-in tests' broker
/**
 * The broker as an operator runs it, for the end-to-end sign-in tests: the
 * production broker of `startSignedInTestBroker` with the stand-in forgejo-mcp as
 * the child, the encryption key file generated in its data directory, and
 * the Forgejo stand-in behind the recording `ForgejoFront`. `restart()`
 * stops the broker and starts a new one on the same port and data
 * directory, as a process restart would; `wire` records what each broker
 * process answered.
 */

/** The demo's users (`demo`, `alice`) and one more, so each test can sign in someone of its own. */
export const E2E_USERS: readonly StandinUser[] = [
  ...DEMO_USERS,
  { id: 3, login: 'carol', password: 'carol-pw', fullName: 'Carol Example', email: 'carol@example.test' },
  { id: 4, login: 'dave', password: 'dave-pw', fullName: 'Dave Example', email: 'dave@example.test' },
  { id: 5, login: 'erin', password: 'erin-pw', fullName: 'Erin Example', email: 'erin@example.test' },
];

export function e2eUser(login: string): StandinUser {
  const user = E2E_USERS.find((candidate) => candidate.login === login);
  if (user === undefined) throw new Error(`no e2e user ${login}`);
  return user;
}

/** One request the broker answered. */
export interface WireEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** Which broker process (1, then 2 after a restart, …) answered. */
  readonly generation: number;
}

/** Records every request each broker process answers, numbering the processes as they start. */
class WireRecorder {
  readonly entries: WireEntry[] = [];
  generation = 0;

  record(broker: RunningBroker): void {
    const generation = ++this.generation;
    broker.server.server.on('request', (req, res) => {
      const method = req.method ?? 'GET';
      const path = new URL(req.url ?? '/', broker.url).pathname;
      res.once('close', () => this.entries.push({ method, path, status: res.statusCode, generation }));
    });
  }
}

export class E2EBroker {
  readonly #harness: SignedInTestBroker<ForgejoFront>;
  readonly #recorder: WireRecorder;

  private constructor(harness: SignedInTestBroker<ForgejoFront>, recorder: WireRecorder) {
    this.#harness = harness;
    this.#recorder = recorder;
  }

  static async start(env: Readonly<Record<string, string>> = {}): Promise<E2EBroker> {
    const recorder = new WireRecorder();
    const harness = await startBroker({
      wiring: 'signed-in',
      name: 'e2e',
      users: E2E_USERS,
      childCommand: standinChildCommand({ testTools: true }),
      forgejoFront: (forgejo) => ForgejoFront.start(forgejo),
      onBrokerStarted: (broker) => recorder.record(broker),
      env: {
        FORGEJO_SCOPES: 'read:user read:repository write:issue',
        BROKER_CIMD_ALLOW_PRIVATE: 'true',
        BROKER_LOG_LEVEL: process.env.E2E_LOG_LEVEL ?? 'error',
        // Every browser and client here is 127.0.0.1; the default limit is per address.
        BROKER_RATE_LIMIT: '1000',
        ...env,
      },
    });
    return new E2EBroker(harness, recorder);
  }

  /** Every request the broker answered, across restarts. */
  get wire(): readonly WireEntry[] {
    return this.#recorder.entries;
  }

  /** How many broker processes have started: 1, then 2 after a restart, … */
  get generation(): number {
    return this.#recorder.generation;
  }

  get url(): string {
    return this.#harness.url;
  }

  get mcpUrl(): URL {
    return new URL(`${this.url}/mcp`);
  }

  get front(): ForgejoFront {
    return this.#harness.front;
  }

  get dataDir(): string {
    return this.#harness.dataDir;
  }

  get broker(): RunningBroker {
    return this.#harness.broker;
  }

  /** Requests the broker answered for METHOD path (optionally only those with this status). */
  count(method: string, path: string, status?: number): number {
    return this.wire.filter((entry) => entry.method === method && entry.path === path && (status === undefined || entry.status === status))
      .length;
  }

  /** Stops the broker (graceful, children stopped, store closed) and starts a new one on the same port and data directory. */
  restart(): Promise<void> {
    return this.#harness.restart();
  }

  close(): Promise<void> {
    return this.#harness.close();
  }
}

// --- the real-client tests' brokers
/**
 * Brokers for the real-client tests (test/clients), on loopback only:
 *
 * - `startClientsDemo`: `forgejo-mcp-broker demo` as a newcomer runs it
 *   (`startDemo`: the broker, the Forgejo stand-in with `DEMO_USERS`, the
 *   stand-in child, SQLite in a temporary directory), on a free port. The
 *   third-party clients talk to this one.
 * - `startProductionBroker`: the production broker of `startSignedInTestBroker`
 *   in front of a Forgejo stand-in the test controls: its users, its
 *   access-token lifetime, and any further broker variable (rotation
 *   interval, refresh lead, ...). It also opens the broker's store a second
 *   time, read-only in spirit, so a test can see the Forgejo credential the
 *   broker holds for a user.
 */

export { DEMO_USERS };

export interface ClientsBroker {
  /** The broker's base URL (also the OAuth issuer). */
  readonly url: string;
  /** `<url>/mcp`, what an MCP client is given. */
  readonly mcpUrl: string;
  readonly broker: RunningBroker;
  readonly forgejo: ForgejoStandin;
  close(): Promise<void>;
}

/** The demo (`startDemo`) on a loopback port the system picked, quiet unless told otherwise. */
export async function startClientsDemo(logLevel: LogLevel = 'warn'): Promise<ClientsBroker> {
  const listener = await listenOnAnyPort();
  const { port } = listener.address() as AddressInfo;
  const config = loadConfig({
    BROKER_LISTEN: `127.0.0.1:${port}`,
    BROKER_CHILD_COMMAND: standinChildCommand({ testTools: true }),
    ...(TEST_UPSTREAM === 'http' ? { BROKER_UPSTREAM_COMMAND: standinUpstreamCommandLine({ testTools: true }) } : {}),
    BROKER_LOG_LEVEL: logLevel,
    BROKER_SHUTDOWN_GRACE: '5s',
  });
  const demo = await startDemo(config, createLogger(config.logLevel, process.stderr), { keepDataDir: false, listener });
  return {
    url: demo.broker.url,
    mcpUrl: `${demo.broker.url}/mcp`,
    broker: demo.broker,
    forgejo: demo.forgejo,
    close: async () => {
      await demo.stop();
      await closeHeldListener(listener);
    },
  };
}

export interface ProductionBrokerOptions {
  readonly users: readonly StandinUser[];
  /** The Forgejo stand-in's access-token lifetime (Forgejo's default is 3600). */
  readonly accessTokenLifetimeSeconds?: number;
  /** Further broker variables (`BROKER_ROTATE_INTERVAL`, `BROKER_REFRESH_LEAD`, ...). */
  readonly env?: Readonly<Record<string, string>>;
  readonly logLevel?: LogLevel;
}

export interface ProductionBroker extends ClientsBroker {
  readonly dataDir: string;
  /** The Forgejo credential the broker has stored for a user (Forgejo user id), read from its SQLite file. */
  storedCredential(userId: string): Promise<ForgejoCredential | undefined>;
}

/** `createBroker` as production wires it, in front of a Forgejo stand-in the test controls. */
export async function startProductionBroker(options: ProductionBrokerOptions): Promise<ProductionBroker> {
  const encryptionKey = randomBytes(32);
  const harness = await startBroker({
    wiring: 'signed-in',
    name: 'clients',
    users: options.users,
    childCommand: standinChildCommand({ testTools: true }),
    accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds,
    env: {
      BROKER_ENCRYPTION_KEY: encryptionKey.toString('hex'),
      BROKER_LOG_LEVEL: options.logLevel ?? 'warn',
      // Every test client signs in from 127.0.0.1.
      BROKER_RATE_LIMIT: '10000',
      ...options.env,
    },
  });
  const store = await openSqliteStore({ dataDir: harness.dataDir, encryptionKey }).catch(async (error: unknown) => {
    await harness.close();
    throw error;
  });
  return {
    url: harness.url,
    mcpUrl: `${harness.url}/mcp`,
    broker: harness.broker,
    forgejo: harness.forgejo,
    dataDir: harness.dataDir,
    storedCredential: (userId) => store.credentials.find(userId),
    close: async () => {
      try {
        await store.close();
      } finally {
        await harness.close();
      }
    },
  };
}

// --- the conformance runs' broker
/**
 * The broker as the through-broker conformance runs see it: the production
 * broker of `startSignedInTestBroker`, with the conformance user at the Forgejo
 * stand-in and the conformance fixture as the child (`BROKER_CHILD_COMMAND`).
 */

/** The fixture child, compiled: dist/test/conformance/fixture.js. */
export const FIXTURE_CHILD = fileURLToPath(new URL('../conformance/fixture.js', import.meta.url));

export const CONFORMANCE_USER: Credentials & { readonly id: number } = {
  id: 4242,
  login: 'conformance',
  password: 'conformance-password',
};

/** The fixture over the SDK's own Streamable HTTP server: the shared upstream of `conformance/run.sh --upstream http`. */
export const FIXTURE_HTTP_SERVER = fileURLToPath(new URL('../conformance/baseline-server.js', import.meta.url));

export interface ConformanceBrokerOptions {
  /** Child argv; default `node dist/test/conformance/fixture.js`. */
  readonly childCommand?: string;
  /** `http`: shared mode, the fixture served over HTTP (legacy era, as forgejo-mcp) as the one upstream. */
  readonly upstream?: 'stdio' | 'http';
  readonly logLevel?: LogLevel;
}

export function startConformanceBroker(options: ConformanceBrokerOptions = {}): Promise<SignedInTestBroker> {
  return startBroker({
    wiring: 'signed-in',
    name: 'conformance',
    users: [
      {
        id: CONFORMANCE_USER.id,
        login: CONFORMANCE_USER.login,
        password: CONFORMANCE_USER.password,
        fullName: 'Conformance Suite',
        email: 'conformance@example.test',
      },
    ],
    childCommand: options.childCommand ?? `'${process.execPath}' '${FIXTURE_CHILD}'`,
    // Every scenario (33 legacy ones) opens a session as the one conformance user, and one not
    // ended by a DELETE stays until the idle timeout: more than the default 16 per user in a run.
    env: {
      BROKER_LOG_LEVEL: options.logLevel ?? 'warn',
      BROKER_MAX_SESSIONS_PER_USER: '0',
      ...(options.upstream === 'http'
        ? { BROKER_UPSTREAM_COMMAND: `'${process.execPath}' '${FIXTURE_HTTP_SERVER}' --port {port} --mode legacy` }
        : {}),
    },
  });
}

// --- the OAuth server alone
export const FORGEJO_APP = { clientId: 'broker-app', clientSecret: 'broker-app-secret' };
export const OAUTH_FORGEJO_SCOPES = 'read:user write:issue read:repository';
export const OAUTH_USERS: readonly StandinUser[] = [
  { id: 1001, login: 'alice', password: 'alice-pw', fullName: 'Alice', email: 'alice@example.test' },
  { id: 1002, login: 'bob', password: 'bob-pw', fullName: 'Bob', email: 'bob@example.test' },
];
export type HarnessOptions = Partial<
  Pick<
    OAuthServerOptions,
    | 'lifetimes'
    | 'refreshGraceMs'
    | 'rateLimit'
    | 'cimd'
    | 'unusedClientTtlMs'
    | 'maxUnusedClients'
    | 'metadataDocuments'
    | 'securityEvents'
    | 'forgejoScopes'
    | 'toolPolicyFor'
  >
>;

/**
 * The broker's OAuth routes on a real loopback server, with the Forgejo
 * stand-in, a real SQLite file and a clock the test can move. `/mcp`
 * authenticates as the product's endpoint does, and answers the principal.
 */
export class OAuthHarness {
  readonly http: HttpServer;
  readonly forgejo: ForgejoStandin;
  readonly dataDir: string;
  readonly key: Buffer;
  readonly options: HarnessOptions;
  brokerUrl = '';
  store!: Store;
  server!: OAuthServer;
  credentials!: ForgejoCredentialManager;
  /** Added to the real time: lets codes and tokens expire without waiting. */
  clockOffsetMs = 0;

  private constructor(http: HttpServer, forgejo: ForgejoStandin, dataDir: string, options: HarnessOptions) {
    this.http = http;
    this.forgejo = forgejo;
    this.dataDir = dataDir;
    this.key = randomBytes(32);
    this.options = options;
  }

  static async start(options: HarnessOptions = {}): Promise<OAuthHarness> {
    // The server must listen before the harness exists: Forgejo needs the broker's callback URL.
    const ready: { harness?: OAuthHarness } = {};
    const http = createHttpServer((req, res) => {
      const url = new URL(req.url ?? '/', ready.harness?.brokerUrl ?? 'http://127.0.0.1');
      void (async () => {
        const harness = ready.harness;
        if (harness === undefined) throw new Error('harness not ready');
        if (await harness.server.routes(req, res, url)) return;
        if (url.pathname === MCP_PATH) {
          // The product's authentication and challenge; an authenticated request is answered with its principal.
          const result = await authenticateBearer(req, res, harness.server.authenticator);
          if (result === undefined) return;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(result));
          return;
        }
        res.writeHead(404);
        res.end();
      })().catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    const brokerUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const forgejo = await startForgejoStandin({
      users: OAUTH_USERS,
      applications: [{ ...FORGEJO_APP, redirectUris: [`${brokerUrl}${OAUTH_PATHS.callback}`] }],
    });
    const dataDir = await mkdtemp(join(tmpdir(), 'broker-oauth-test-'));
    const harness = new OAuthHarness(http, forgejo, dataDir, options);
    harness.brokerUrl = brokerUrl;
    await harness.open();
    ready.harness = harness;
    return harness;
  }

  now = (): number => Date.now() + this.clockOffsetMs;

  /** Opens store, credential manager and OAuth server on the data directory (again, after `shutDownBroker`). */
  async open(): Promise<void> {
    this.store = await openSqliteStore({ dataDir: this.dataDir, encryptionKey: this.key });
    const client = new ForgejoClient({
      forgejoUrl: new URL(this.forgejo.url),
      clientId: FORGEJO_APP.clientId,
      clientSecret: FORGEJO_APP.clientSecret,
      scopes: OAUTH_FORGEJO_SCOPES,
      redirectUri: `${this.brokerUrl}${OAUTH_PATHS.callback}`,
      now: this.now,
    });
    this.credentials = new ForgejoCredentialManager({
      credentials: this.store.credentials,
      forgejo: client,
      logger: silentLogger(),
      now: this.now,
    });
    this.server = createOAuthServer({
      publicUrl: new URL(this.brokerUrl),
      store: this.store,
      forgejo: client,
      logins: this.credentials,
      logger: silentLogger(),
      now: this.now,
      rateLimit: { burst: 10_000, perMinute: 10_000 },
      cimd: { allowPrivateNetwork: true },
      ...this.options,
    });
  }

  /** Stops the broker's OAuth state as a process exit would, keeping the data directory. */
  async shutDownBroker(): Promise<void> {
    this.server.close();
    this.credentials.close();
    await this.store.close();
  }

  async close(): Promise<void> {
    await this.shutDownBroker();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    await this.forgejo.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  url(path: string): string {
    return `${this.brokerUrl}${path}`;
  }

  /** RFC 7591 registration of a client; public unless a method is given. */
  async register(metadata: Record<string, unknown> = {}): Promise<RegisteredTestClient> {
    const response = await fetch(this.url(OAUTH_PATHS.register), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'Test MCP client',
        redirect_uris: [CLIENT_REDIRECT],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
        ...metadata,
      }),
    });
    if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${await response.text()}`);
    const body = (await response.json()) as { client_id: string; client_secret?: string };
    return { clientId: body.client_id, clientSecret: body.client_secret };
  }

  /** POST to the token endpoint as a public client (or with the given extra headers). */
  async token(
    params: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
    const response = await fetch(this.url(OAUTH_PATHS.token), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(params).toString(),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown>, headers: response.headers };
  }

  /** GET /mcp with a bearer token: the principal (200) or the challenge (401). */
  async mcp(accessToken: string): Promise<{ status: number; body: Record<string, unknown>; challenge: string | null }> {
    const response = await fetch(this.url('/mcp'), { headers: { authorization: `Bearer ${accessToken}` } });
    return {
      status: response.status,
      body: (await response.json()) as Record<string, unknown>,
      challenge: response.headers.get('www-authenticate'),
    };
  }
}

export interface RegisteredTestClient {
  readonly clientId: string;
  readonly clientSecret?: string | undefined;
}

export function authorizeUrl(harness: OAuthHarness, clientId: string, challenge: string, extra: Record<string, string> = {}): string {
  const url = new URL(harness.url(OAUTH_PATHS.authorize));
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: CLIENT_REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'client-state-123',
    resource: harness.url('/mcp'),
    ...extra,
  }).toString();
  return url.href;
}

/** Follows an authorization request that must stop at the consent page (the client not yet approved); the page's HTML. */
export async function consentPage(harness: OAuthHarness, browser: TestBrowser, clientId: string, challenge: string): Promise<string> {
  const arrival = await browser.follow(authorizeUrl(harness, clientId, challenge), CLIENT_REDIRECT);
  if (arrival.kind !== 'page') assert.fail(`expected the consent page, the browser was sent to ${arrival.url}`);
  return arrival.html;
}

/**
 * The whole sign-in in one browser: authorize, consent (Approve), Forgejo
 * login (the stand-in signs `login` in automatically), callback; returns the
 * client's authorization response parameters.
 */
export async function signIn(
  harness: OAuthHarness,
  browser: TestBrowser,
  clientId: string,
  login: string,
  challenge: string,
  redirectUri = CLIENT_REDIRECT,
): Promise<URLSearchParams> {
  harness.forgejo.setAutoLogin(login);
  const arrival = await browser.follow(authorizeUrl(harness, clientId, challenge, { redirect_uri: redirectUri }), redirectUri);
  if (arrival.kind === 'redirect') return arrival.params;
  const fields = consentFields(arrival.html);
  const after = await browser.follow(harness.url(OAUTH_PATHS.consent), redirectUri, { form: { ...fields, decision: 'approve' } });
  if (after.kind !== 'redirect') throw new Error(`sign-in did not complete:\n${after.html}`);
  return after.params;
}

/** Exchanges an authorization code as a public client. */
export async function exchangeCode(
  harness: OAuthHarness,
  clientId: string,
  code: string,
  verifier: string,
  extra: Record<string, string> = {},
) {
  return harness.token({
    grant_type: 'authorization_code',
    client_id: clientId,
    code,
    redirect_uri: CLIENT_REDIRECT,
    code_verifier: verifier,
    resource: harness.url('/mcp'),
    ...extra,
  });
}

/** A whole sign-in of `login` with `client` and the code exchanged: the tokens, and the code and verifier used. */
export async function signedInTokens(harness: OAuthHarness, client: RegisteredTestClient, login = 'alice') {
  const { verifier, challenge } = await pkce();
  const params = await signIn(harness, new TestBrowser(), client.clientId, login, challenge);
  const code = params.get('code');
  assert.ok(code);
  const tokens = await exchangeCode(harness, client.clientId, code, verifier);
  assert.equal(tokens.status, 200);
  return { code, verifier, accessToken: tokens.body.access_token as string, refreshToken: tokens.body.refresh_token as string };
}

// --- a broker in a process of its own
/**
 * This file run as a program (`node brokers.js process`): a broker in a
 * process of its own, wired by the production `createBroker` and
 * `stopOnSignals`, with the in-process broker's injected authentication.
 * Prints one JSON line `{url, bearer}` when ready. Used to prove what
 * happens when the broker process is signalled or killed.
 */
async function runBrokerProcess(env: Readonly<Record<string, string>>): Promise<void> {
  const forge = await TestForge.start();
  const config = loadConfig({
    ...env,
    BROKER_LISTEN: '127.0.0.1:0',
    FORGEJO_URL: forge.url,
    BROKER_CHILD_COMMAND: `'${process.execPath}' '${STANDIN_CHILD}' --transport stdio --test-tools`,
    BROKER_SHUTDOWN_GRACE: '10s',
    BROKER_LOG_LEVEL: 'warn',
  });
  const log = createLogger(config.logLevel, process.stderr);
  const authenticator = new TestAuthenticator('http://127.0.0.1/.well-known/oauth-protected-resource/mcp');
  const credentials = new TestCredentials();
  const bearer = randomToken();
  const forgejoToken = randomToken();
  forge.addToken(forgejoToken, { id: 1, login: 'alice' });
  credentials.set('1', { accessToken: forgejoToken, expiresAt: Date.now() + 3_600_000 });
  authenticator.principals.set(bearer, { userId: '1', forgejoLogin: 'alice', clientId: 'c', tokenHash: 'h', grantId: 'g' });
  const broker = await createBroker({ config, log, auth: { authenticator, credentials, routes: [] } });
  stopOnSignals(async () => {
    await broker.stop();
    await forge.close();
  }, log);
  reloadPolicyOnHangup(broker.policy, log);
  process.stdout.write(JSON.stringify({ url: broker.url, bearer }) + '\n');
}

const BROKER_PROCESS_ARGUMENT = 'process';

/** Starts `runBrokerProcess` in a new process; resolves once it listens, with its URL and a bearer token it accepts. */
/** A broker in a process of its own: the process, its URL and a bearer token it accepts. */
export interface BrokerProcess {
  readonly proc: ChildProcess;
  readonly url: string;
  readonly bearer: string;
}

async function startBrokerProcess(env: Readonly<Record<string, string>>): Promise<BrokerProcess> {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), BROKER_PROCESS_ARGUMENT, JSON.stringify(env)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(createInterface({ input: proc.stdout as NodeJS.ReadableStream }), 'line')) as [string];
  const { url, bearer } = JSON.parse(line) as { url: string; bearer: string };
  return { proc, url, bearer };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === BROKER_PROCESS_ARGUMENT)
  await runBrokerProcess(JSON.parse(process.argv[3] ?? '{}') as Record<string, string>);
