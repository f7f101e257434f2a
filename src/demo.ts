import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server as NetServer } from 'node:net';
import { createBroker, type RunningBroker } from './app.js';
import type { Config } from './config/config.js';
import type { Logger } from './log/logger.js';
import { OAUTH_PATHS } from './oauth/context.js';
import { startForgejoStandin, type ForgejoStandin, type StandinUser } from './standin/forgejo.js';
import type { StandinRepositorySeed } from './standin/forgejo-repositories.js';

/** The stand-in forgejo-mcp, compiled next to this file. */
export const STANDIN_CHILD_SCRIPT = fileURLToPath(new URL('./standin/forgejo-mcp.js', import.meta.url));

/**
 * The stand-in child as a command line for BROKER_CHILD_COMMAND. `testTools`
 * adds the tools only the broker's tests call (`--test-tools`); the demo's
 * child shows the forge tools alone.
 */
export function standinChildCommand(options: { readonly testTools: boolean }): string {
  return `'${process.execPath}' '${STANDIN_CHILD_SCRIPT}' --transport stdio${options.testTools ? ' --test-tools' : ''}`;
}

/** The stand-in forgejo-mcp in its multi-tenant HTTP mode, as an argv for a shared upstream (`{port}` is the broker's to fill). */
export function standinUpstreamCommand(options: { readonly testTools: boolean }): readonly string[] {
  return [
    process.execPath,
    STANDIN_CHILD_SCRIPT,
    '--transport',
    'http',
    '--http-port',
    '{port}',
    ...(options.testTools ? ['--test-tools'] : []),
  ];
}

/** Who can sign in at the demo's Forgejo stand-in. */
export const DEMO_USERS: readonly StandinUser[] = [
  { id: 1, login: 'demo', password: 'demo', fullName: 'Demo User', email: 'demo@example.test' },
  { id: 2, login: 'alice', password: 'alice', fullName: 'Alice Example', email: 'alice@example.test' },
];

/** What each demo user finds at the forge: a private repository of their own with a few issues and a pull request. */
export const DEMO_REPOSITORIES: readonly StandinRepositorySeed[] = DEMO_USERS.map((user) => ({
  owner: user.login,
  name: 'website',
  description: `${user.fullName}'s website`,
  issues: [
    { title: 'The contact form loses its input on error', body: 'Submitting with an empty email clears every other field.' },
    { title: 'Add a dark theme', body: 'Follow prefers-color-scheme.' },
    { title: 'Broken link on the about page', body: 'The link to the team page answers 404.' },
  ],
  pullRequests: [{ title: 'Compress the header images', body: 'Halves the size of the front page.', head: 'smaller-images' }],
}));

export interface Demo {
  readonly broker: RunningBroker;
  readonly forgejo: ForgejoStandin;
  stop(): Promise<void>;
}

/**
 * The whole flow on one machine: a Forgejo stand-in (login form, OAuth2
 * provider, API) with the broker registered as its application, and the
 * broker signing users in through it. The data directory is temporary
 * unless the configuration names one.
 */
export interface DemoOptions {
  readonly keepDataDir: boolean;
  /** A server already listening on the public URL's port whose connections the broker takes (tests). */
  readonly listener?: NetServer;
}

export async function startDemo(config: Config, log: Logger, options: DemoOptions): Promise<Demo> {
  const application = { clientId: 'forgejo-mcp-broker-demo', clientSecret: randomBytes(24).toString('hex') };
  const forgejo = await startForgejoStandin({
    users: DEMO_USERS,
    repositories: DEMO_REPOSITORIES,
    applications: [{ ...application, redirectUris: [new URL(OAUTH_PATHS.callback, config.publicUrl).href] }],
  });
  const dataDir = options.keepDataDir ? config.dataDir : await mkdtemp(path.join(tmpdir(), 'forgejo-mcp-broker-demo-'));
  const removeDataDir = async (): Promise<void> => {
    if (!options.keepDataDir) await rm(dataDir, { recursive: true, force: true });
  };
  let broker: RunningBroker;
  try {
    broker = await createBroker({
      config: {
        ...config,
        dataDir,
        forgejoUrl: new URL(forgejo.url),
        ...(config.demoSharedUpstream && config.upstream.kind === 'stdio'
          ? { upstream: { kind: 'command', command: standinUpstreamCommand({ testTools: false }), processes: 1 } }
          : {}),
        signIn: { ...config.signIn, forgejoClientId: application.clientId, forgejoClientSecret: application.clientSecret },
      },
      log,
      ...(options.listener === undefined ? {} : { listener: options.listener }),
    });
  } catch (error) {
    await forgejo.close();
    await removeDataDir();
    throw error;
  }
  return {
    broker,
    forgejo,
    stop: async () => {
      await broker.stop();
      await forgejo.close();
      await removeDataDir();
    },
  };
}
