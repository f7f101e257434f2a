/**
 * The broker as an operator runs it, for the end-to-end sign-in tests: the
 * production wiring (`startSignedInBroker`, configured by `loadConfig` from
 * the variables an operator sets) on a free loopback port, a real SQLite
 * data directory in a temporary directory with the generated encryption key
 * file, the stand-in forgejo-mcp as the child, and the Forgejo stand-in
 * (behind the recording `ForgejoFront`) with the broker registered as its
 * application. `restart()` stops the broker and starts a new one on the
 * same port and data directory, as a process restart would.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startSignedInBroker, type RunningBroker } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { DEMO_USERS, standinChildCommand } from '../../src/demo.js';
import { createLogger, type Logger } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin, type ForgejoStandin, type StandinUser } from '../../src/standin/forgejo.js';
import { ForgejoFront } from './e2e-forgejo.js';

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

async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export class E2EBroker {
  /** Every request the broker answered, across restarts. */
  readonly wire: WireEntry[] = [];
  generation = 0;
  #broker: RunningBroker | undefined;

  private constructor(
    readonly config: Config,
    readonly forgejo: ForgejoStandin,
    readonly front: ForgejoFront,
    readonly dataDir: string,
    readonly log: Logger,
  ) {}

  static async start(env: Readonly<Record<string, string>> = {}): Promise<E2EBroker> {
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    const application = { clientId: 'forgejo-mcp-broker-e2e', clientSecret: randomBytes(24).toString('hex') };
    const forgejo = await startForgejoStandin({
      users: E2E_USERS,
      applications: [{ ...application, redirectUris: [`${publicUrl}${OAUTH_PATHS.callback}`] }],
    });
    let front: ForgejoFront | undefined;
    let dataDir: string | undefined;
    try {
      front = await ForgejoFront.start(forgejo);
      dataDir = await mkdtemp(join(tmpdir(), 'broker-e2e-'));
      const config = loadConfig({
        BROKER_LISTEN: `127.0.0.1:${port}`,
        BROKER_PUBLIC_URL: publicUrl,
        BROKER_DATA_DIR: dataDir,
        FORGEJO_URL: front.url,
        FORGEJO_CLIENT_ID: application.clientId,
        FORGEJO_CLIENT_SECRET: application.clientSecret,
        FORGEJO_SCOPES: 'read:user read:repository write:issue',
        BROKER_CHILD_COMMAND: standinChildCommand(),
        BROKER_CIMD_ALLOW_PRIVATE: 'true',
        BROKER_LOG_LEVEL: process.env.E2E_LOG_LEVEL ?? 'error',
        BROKER_SHUTDOWN_GRACE: '5s',
        // Every browser and client here is 127.0.0.1; the default limit is per address.
        BROKER_RATE_LIMIT: '1000',
        ...env,
      });
      const e2e = new E2EBroker(config, forgejo, front, dataDir, createLogger(config.logLevel, process.stderr));
      await e2e.#startBroker();
      return e2e;
    } catch (error) {
      await front?.close();
      await forgejo.close();
      if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
      throw error;
    }
  }

  get url(): string {
    return this.config.publicUrl.href.replace(/\/$/, '');
  }

  get mcpUrl(): URL {
    return new URL(`${this.url}/mcp`);
  }

  get broker(): RunningBroker {
    if (this.#broker === undefined) throw new Error('the broker is not running');
    return this.#broker;
  }

  /** Requests the broker answered for METHOD path (optionally only those with this status). */
  count(method: string, path: string, status?: number): number {
    return this.wire.filter((entry) => entry.method === method && entry.path === path && (status === undefined || entry.status === status)).length;
  }

  /** Stops the broker (graceful, children stopped, store closed) and starts a new one on the same port and data directory. */
  async restart(): Promise<void> {
    await this.stopBroker();
    await this.#startBroker();
  }

  async stopBroker(): Promise<void> {
    const broker = this.#broker;
    this.#broker = undefined;
    await broker?.stop();
  }

  async close(): Promise<void> {
    try {
      await this.stopBroker();
    } finally {
      await this.front.close();
      await this.forgejo.close();
      await rm(this.dataDir, { recursive: true, force: true });
    }
  }

  async #startBroker(): Promise<void> {
    const broker = await startSignedInBroker(this.config, this.log);
    const generation = ++this.generation;
    broker.server.server.on('request', (req, res) => {
      const method = req.method ?? 'GET';
      const path = new URL(req.url ?? '/', this.url).pathname;
      res.once('close', () => this.wire.push({ method, path, status: res.statusCode, generation }));
    });
    this.#broker = broker;
  }
}
