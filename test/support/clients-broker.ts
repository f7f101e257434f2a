/**
 * Brokers for the real-client tests (test/clients), on loopback only:
 *
 * - `startClientsDemo`: `forgejo-mcp-broker demo` as a newcomer runs it
 *   (`startDemo`: the broker, the Forgejo stand-in with `DEMO_USERS`, the
 *   stand-in child, SQLite in a temporary directory), on a free port. The
 *   third-party clients talk to this one.
 * - `startProductionBroker`: the production broker of signed-in-broker.ts
 *   in front of a Forgejo stand-in the test controls: its users, its
 *   access-token lifetime, and any further broker variable (rotation
 *   interval, refresh lead, ...). It also opens the broker's store a second
 *   time, read-only in spirit, so a test can see the Forgejo credential the
 *   broker holds for a user.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

import type { RunningBroker } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { startDemo, standinChildCommand, DEMO_USERS } from '../../src/demo.js';
import { createLogger, type LogLevel } from '../../src/log/logger.js';
import type { ForgejoStandin, StandinUser } from '../../src/standin/forgejo.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { ForgejoCredential } from '../../src/store/store.js';
import { listenOnAnyPort, startSignedInTestBroker } from './signed-in-broker.js';

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
      await new Promise<void>((resolve) => listener.close(() => resolve()));
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
  const harness = await startSignedInTestBroker({
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
