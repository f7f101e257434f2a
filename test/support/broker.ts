import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { AuthFailure, Authenticator, ForgejoAccess, ForgejoCredentials, Principal } from '../../src/auth/principal.js';
import { BrokerError } from '../../src/errors/errors.js';
import { BrokerServer } from '../../src/http/server.js';
import { LegacyFront } from '../../src/legacy/front.js';
import { ModernFront } from '../../src/modern/front.js';
import { BROKER_INFO } from '../../src/version.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';
import type { SpawnFunc } from '../../src/pool/child.js';
import { ChannelPool } from '../../src/pool/pool.js';
import { processSpawner } from '../../src/supervisor/child.js';
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
  /** Where the real spawner reports children's suppressed log lines. */
  readonly onLogLinesSuppressed?: (lines: number) => void;
  readonly now?: () => number;
}

export interface TestUser {
  readonly userId: string;
  readonly login: string;
  /** A broker bearer token for this user. */
  readonly bearer: string;
  readonly forgejoToken: string;
}

/** A broker on a real loopback port, with real stand-in children, a test forge and injected auth. */
export class TestBroker {
  private nextUser = 1;

  private constructor(
    readonly forge: TestForge,
    readonly server: BrokerServer,
    readonly pool: ChannelPool,
    readonly legacy: LegacyFront,
    readonly modern: ModernFront,
    readonly authenticator: TestAuthenticator,
    readonly credentials: TestCredentials,
    readonly url: string,
  ) {}

  static async start(options: TestBrokerOptions = {}): Promise<TestBroker> {
    const forge = await TestForge.start();
    const log = options.log ?? silentLogger();
    const credentials = new TestCredentials();
    const spawn =
      options.spawn ??
      processSpawner({
        command: options.childCommand ?? [process.execPath, STANDIN_CHILD, '--transport', 'stdio', '--test-tools'],
        forgejoUrl: forge.url,
        envAllow: [],
        parentEnv: process.env,
        stopGraceMs: 2000,
        maxMessageBytes: 64 * 1024 * 1024,
        log,
        ...(options.onLogLinesSuppressed === undefined ? {} : { onLogLinesSuppressed: options.onLogLinesSuppressed }),
      });
    const pool = new ChannelPool({
      spawn: options.wrapSpawn === undefined ? spawn : options.wrapSpawn(spawn),
      credentials,
      log,
      maxChannels: options.maxSessions ?? 0,
      maxChannelsPerUser: options.maxSessionsPerUser ?? 0,
      idleTimeoutMs: options.idleTimeoutMs ?? 15 * 60_000,
      refreshLeadMs: options.refreshLeadMs ?? 5 * 60_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      drainGraceMs: options.drainGraceMs ?? 5_000,
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    const legacy = new LegacyFront({ pool, log, initTimeoutMs: options.initTimeoutMs ?? 30_000 });
    const modern = new ModernFront({ pool, log, inputTimeoutMs: options.requestTimeoutMs ?? 30_000, serverInfo: BROKER_INFO, keepAliveMs: 15_000 });
    const publicUrl = new URL('http://127.0.0.1');
    const authenticator = new TestAuthenticator(`${publicUrl.origin}/.well-known/oauth-protected-resource/mcp`);
    const server = new BrokerServer({
      publicUrl,
      allowedOrigins: [],
      authenticator,
      pool,
      legacy,
      modern,
      routes: [],
      maxBodyBytes: options.maxBodyBytes ?? 4 * 1024 * 1024,
      headersTimeoutMs: options.headersTimeoutMs ?? 10_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 60_000,
      retryAfterSeconds: 30,
      log,
    });
    const { port } = await server.listen('127.0.0.1', 0);
    return new TestBroker(forge, server, pool, legacy, modern, authenticator, credentials, `http://127.0.0.1:${port}`);
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

  /** An SDK client connected through the broker as this user. */
  async connect(user: TestUser, name = 'test-client'): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const transport = new StreamableHTTPClientTransport(this.mcpUrl, {
      requestInit: { headers: { Authorization: `Bearer ${user.bearer}` } },
    });
    const client = new Client(
      { name, version: '1.0.0' },
      { capabilities: { elicitation: { form: {} }, sampling: {}, roots: { listChanged: true } } },
    );
    await client.connect(transport);
    return { client, transport };
  }

  /** Ends every session and channel and refuses new ones, as the broker's shutdown does. */
  async stopSessions(): Promise<void> {
    await Promise.all([this.legacy.stop(), this.modern.stop(), this.pool.stop()]);
  }

  async close(): Promise<void> {
    await this.server.shutdown(1000);
    await this.forge.close();
  }
}

export function randomToken(): string {
  return randomBytes(24).toString('base64url');
}

export function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 12);
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
