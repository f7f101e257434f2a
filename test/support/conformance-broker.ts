/**
 * The broker as the through-broker conformance runs see it: the production
 * wiring (`startSignedInBroker`, configured through `loadConfig` from the
 * same variables an operator sets, a real SQLite store in a temporary
 * directory), the Forgejo stand-in on loopback with the broker registered as
 * its application, and the conformance fixture as the child
 * (`BROKER_CHILD_COMMAND`). Nothing in it turns authentication off: clients
 * sign in through the broker's consent page and the stand-in's login form.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSignedInBroker, type RunningBroker } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { createLogger, type LogLevel } from '../../src/log/logger.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin, type ForgejoStandin } from '../../src/standin/forgejo.js';
import type { Credentials } from './conformance-oauth.js';

/** The fixture child, compiled: dist/test/conformance/fixture.js. */
export const FIXTURE_CHILD = fileURLToPath(new URL('../conformance/fixture.js', import.meta.url));

export const CONFORMANCE_USER: Credentials & { readonly id: number } = {
  id: 4242,
  login: 'conformance',
  password: 'conformance-password',
};

const FORGEJO_APP = { clientId: 'forgejo-mcp-broker', clientSecret: randomBytes(24).toString('hex') };
const FORGEJO_SCOPES = 'read:user write:issue write:repository';

export interface ConformanceBroker {
  /** The broker's base URL; `/mcp` is the MCP endpoint and `url` the OAuth issuer. */
  readonly url: string;
  readonly broker: RunningBroker;
  readonly forgejo: ForgejoStandin;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export interface ConformanceBrokerOptions {
  /** Child argv; default `node dist/test/conformance/fixture.js`. */
  readonly childCommand?: string;
  readonly logLevel?: LogLevel;
}

export async function startConformanceBroker(options: ConformanceBrokerOptions = {}): Promise<ConformanceBroker> {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const forgejo = await startForgejoStandin({
    users: [{ id: CONFORMANCE_USER.id, login: CONFORMANCE_USER.login, password: CONFORMANCE_USER.password, fullName: 'Conformance Suite', email: 'conformance@example.test' }],
    applications: [{ ...FORGEJO_APP, redirectUris: [`${publicUrl}${OAUTH_PATHS.callback}`] }],
  });
  const dataDir = await mkdtemp(join(tmpdir(), 'broker-conformance-'));
  const config = loadConfig({
    BROKER_LISTEN: `127.0.0.1:${port}`,
    BROKER_PUBLIC_URL: publicUrl,
    BROKER_DATA_DIR: dataDir,
    FORGEJO_URL: forgejo.url,
    FORGEJO_CLIENT_ID: FORGEJO_APP.clientId,
    FORGEJO_CLIENT_SECRET: FORGEJO_APP.clientSecret,
    FORGEJO_SCOPES,
    BROKER_CHILD_COMMAND: options.childCommand ?? `'${process.execPath}' '${FIXTURE_CHILD}'`,
    BROKER_LOG_LEVEL: options.logLevel ?? 'warn',
    BROKER_SHUTDOWN_GRACE: '5s',
  });
  const log = createLogger(config.logLevel, process.stderr);
  let broker: RunningBroker;
  try {
    broker = await startSignedInBroker(config, log);
  } catch (error) {
    await forgejo.close();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: broker.url,
    broker,
    forgejo,
    close: async () => {
      await broker.stop();
      await forgejo.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
