import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { AuthFailure, Authenticator, ForgejoAccess, ForgejoCredentials, Principal } from '../../src/auth/principal.js';
import { BrokerError } from '../../src/errors/errors.js';
import { createBroker, type RunningBroker } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { LegacyFront } from '../../src/legacy/front.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';
import type { BrokerMetrics } from '../../src/metrics/metrics.js';
import type { ModernFront } from '../../src/modern/front.js';
import type { SpawnFunc } from '../../src/pool/child.js';
import type { ChannelPool } from '../../src/pool/pool.js';
import { TestForge } from './forge.js';

export const STANDIN_CHILD = fileURLToPath(new URL('../../src/standin/forgejo-mcp.js', import.meta.url));

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
  readonly log?: Logger;
  readonly now?: () => number;
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
    const config: Config = {
      ...defaults,
      ...(options.childCommand === undefined ? {} : { childCommand: options.childCommand }),
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
    const running = await createBroker({
      config,
      log: options.log ?? silentLogger(),
      auth: { authenticator, credentials, routes: [] },
      ...(spawn !== undefined ? { spawn: () => spawn } : wrapSpawn !== undefined ? { spawn: wrapSpawn } : {}),
      ...(options.now === undefined ? {} : { clock: options.now }),
    });
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

  /** A new Forgejo user with a Forgejo token the forge knows and a broker bearer token. */
  addUser(login?: string): TestUser {
    const n = this.nextUser++;
    const user = { userId: String(n), login: login ?? `user${n}`, bearer: randomToken(), forgejoToken: randomToken() };
    this.forge.addToken(user.forgejoToken, { id: n, login: user.login });
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

export function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 12);
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

/** Polls until the condition holds, or fails after the limit. Not a timing assertion: a bound on waiting. */
export async function eventually(condition: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether a process id is alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
