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
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createBroker, type RunningBroker } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createLogger, type Logger } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin, type ForgejoStandin, type StandinUser } from '../../src/standin/forgejo.js';

/** A loopback socket on a port the system picked, held for the harness's life: brokers (and restarts) take its connections. */
export async function listenOnAnyPort(): Promise<Server> {
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  return listener;
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

const FORGEJO_SCOPES = 'read:user write:issue write:repository';

/**
 * Starts the stand-in, then (with `forgejoFront`) the front before it, then
 * the broker; what started is stopped again when a later step fails.
 */
export function startSignedInTestBroker<Front extends ForgejoFrontServer>(
  options: SignedInTestBrokerOptions & { readonly forgejoFront: (forgejo: ForgejoStandin) => Promise<Front> },
): Promise<SignedInTestBroker<Front>>;
export function startSignedInTestBroker(options: SignedInTestBrokerOptions): Promise<SignedInTestBroker>;
export async function startSignedInTestBroker(
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
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    }
  };
  try {
    front = await options.forgejoFront?.(forgejo);
    dataDir = await mkdtemp(join(tmpdir(), `broker-${options.name}-`));
    const config = loadConfig({
      BROKER_LISTEN: `127.0.0.1:${port}`,
      BROKER_PUBLIC_URL: url,
      BROKER_DATA_DIR: dataDir,
      FORGEJO_URL: front?.url ?? forgejo.url,
      FORGEJO_CLIENT_ID: application.clientId,
      FORGEJO_CLIENT_SECRET: application.clientSecret,
      FORGEJO_SCOPES,
      BROKER_CHILD_COMMAND: options.childCommand,
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
