/**
 * Brokers for the real-client tests (test/clients), on loopback only:
 *
 * - `startClientsDemo`: `forgejo-mcp-broker demo` as a newcomer runs it
 *   (`startDemo`: the broker, the Forgejo stand-in with `DEMO_USERS`, the
 *   stand-in child, SQLite in a temporary directory), on a free port. The
 *   third-party clients talk to this one.
 * - `startClientsBroker`: the production wiring (`startSignedInBroker`,
 *   configured through `loadConfig` from the variables an operator sets, a
 *   real SQLite data directory) in front of a Forgejo stand-in the test
 *   controls: its users, its access-token lifetime, and any further broker
 *   variable (rotation interval, refresh lead, ...). It also opens the
 *   broker's store a second time, read-only in spirit, so a test can see the
 *   Forgejo credential the broker holds for a user.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startSignedInBroker, type RunningBroker } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { startDemo, standinChildCommand, DEMO_USERS } from '../../src/demo.js';
import { createLogger, type LogLevel } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin, type ForgejoStandin, type StandinUser } from '../../src/standin/forgejo.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { ForgejoCredential, Store } from '../../src/store/store.js';

export { DEMO_USERS };

/** A port nothing listens on right now (closed again before it is returned). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export interface ClientsBroker {
  /** The broker's base URL (also the OAuth issuer). */
  readonly url: string;
  /** `<url>/mcp`, what an MCP client is given. */
  readonly mcpUrl: string;
  readonly broker: RunningBroker;
  readonly forgejo: ForgejoStandin;
  close(): Promise<void>;
}

/** The demo (`startDemo`) on a free loopback port, quiet unless told otherwise. */
export async function startClientsDemo(logLevel: LogLevel = 'warn'): Promise<ClientsBroker> {
  const port = await freePort();
  const config = loadConfig({
    BROKER_LISTEN: `127.0.0.1:${port}`,
    BROKER_CHILD_COMMAND: standinChildCommand(),
    BROKER_LOG_LEVEL: logLevel,
    BROKER_SHUTDOWN_GRACE: '5s',
  });
  const demo = await startDemo(config, createLogger(config.logLevel, process.stderr), { keepDataDir: false });
  return {
    url: demo.broker.url,
    mcpUrl: `${demo.broker.url}/mcp`,
    broker: demo.broker,
    forgejo: demo.forgejo,
    close: () => demo.stop(),
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

const FORGEJO_SCOPES = 'read:user write:issue write:repository';

/** `startSignedInBroker` as production wires it, in front of a Forgejo stand-in the test controls. */
export async function startProductionBroker(options: ProductionBrokerOptions): Promise<ProductionBroker> {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const application = { clientId: 'forgejo-mcp-broker-clients', clientSecret: randomBytes(24).toString('hex') };
  const forgejo = await startForgejoStandin({
    users: options.users,
    applications: [{ ...application, redirectUris: [`${publicUrl}${OAUTH_PATHS.callback}`] }],
    ...(options.accessTokenLifetimeSeconds === undefined ? {} : { accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds }),
  });
  const dataDir = await mkdtemp(join(tmpdir(), 'broker-clients-'));
  const encryptionKey = randomBytes(32);
  let broker: RunningBroker | undefined;
  let store: Store | undefined;
  try {
    const config = loadConfig({
      BROKER_LISTEN: `127.0.0.1:${port}`,
      BROKER_PUBLIC_URL: publicUrl,
      BROKER_DATA_DIR: dataDir,
      BROKER_ENCRYPTION_KEY: encryptionKey.toString('hex'),
      FORGEJO_URL: forgejo.url,
      FORGEJO_CLIENT_ID: application.clientId,
      FORGEJO_CLIENT_SECRET: application.clientSecret,
      FORGEJO_SCOPES,
      BROKER_CHILD_COMMAND: standinChildCommand(),
      BROKER_LOG_LEVEL: options.logLevel ?? 'warn',
      BROKER_SHUTDOWN_GRACE: '5s',
      // Every test client signs in from 127.0.0.1.
      BROKER_RATE_LIMIT: '10000',
      ...options.env,
    });
    broker = await startSignedInBroker(config, createLogger(config.logLevel, process.stderr));
    store = await openSqliteStore({ dataDir, encryptionKey });
  } catch (error) {
    await broker?.stop();
    await forgejo.close();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const running = broker;
  const reader = store;
  return {
    url: running.url,
    mcpUrl: `${running.url}/mcp`,
    broker: running,
    forgejo,
    dataDir,
    storedCredential: (userId) => reader.credentials.find(userId),
    close: async () => {
      try {
        await running.stop();
      } finally {
        await reader.close();
        await forgejo.close();
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
