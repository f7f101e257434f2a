/**
 * Starting what is measured, each in its own process so that its RSS is its
 * own: the broker (production entry point, `forgejo-mcp-broker serve`, real
 * SQLite store, real OAuth sign-in through a Forgejo stand-in), supergateway,
 * and the two bare HTTP floors.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { standinUpstreamCommand } from '../../src/demo.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin, type ForgejoStandin, type StandinUser } from '../../src/standin/forgejo.js';
import { obtainToken } from '../../test/support/oauth.js';
import { BARE_BRIDGE, BARE_HTTP, BROKER_CLI, PROBE, SDK_TRANSPORT, STANDIN_CHILD, SUPERGATEWAY } from './paths.js';
import type { Proc, ProcessSet } from './procs.js';

export async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Quoted for BROKER_CHILD_COMMAND and supergateway's --stdio (no spaces expected, quoted anyway). */
export function commandLine(argv: readonly string[]): string {
  return argv.map((word) => `'${word.replaceAll("'", "'\\''")}'`).join(' ');
}

export const STANDIN_ARGV: readonly string[] = [process.execPath, STANDIN_CHILD, '--transport', 'stdio', '--test-tools'];
/** The same stand-in as one multi-tenant HTTP server (`--transport http --http-port {port}`), for shared mode. */
export const STANDIN_UPSTREAM_ARGV: readonly string[] = standinUpstreamCommand({ testTools: true });

/** Users of the Forgejo stand-ins: `bench` plus `u001`… for the figures that need many users. */
export function benchUsers(count: number): StandinUser[] {
  const users: StandinUser[] = [{ id: 1, login: 'bench', password: 'bench-password', fullName: 'Bench', email: 'bench@example.test' }];
  for (let i = 1; i <= count; i++) {
    const login = `u${String(i).padStart(3, '0')}`;
    users.push({ id: 1000 + i, login, password: `${login}-password`, fullName: login, email: `${login}@example.test` });
  }
  return users;
}

async function waitFor(check: () => Promise<boolean>, what: string, proc: Proc, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!proc.running) throw new Error(`${what}: the process exited (see bench/results/logs/${proc.name}.log)`);
    if (await check().catch(() => false)) return;
    await delay(50);
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms`);
}

export interface BrokerTarget {
  readonly proc: Proc;
  readonly url: string;
  readonly mcpUrl: URL;
  readonly dataDir: string;
  readonly forge: ForgejoStandin;
  readonly users: readonly StandinUser[];
  /** A real broker access token for a user, from the whole OAuth flow (registration, consent, Forgejo login, PKCE). */
  token(user: StandinUser): Promise<string>;
}

/**
 * How the broker reaches forgejo-mcp: a child per session (stdio mode,
 * BROKER_CHILD_COMMAND), or one multi-tenant HTTP server it starts, on a port
 * it picks for `{port}`, and talks to for every user (shared mode, BROKER_UPSTREAM_COMMAND).
 */
export type BrokerUpstream =
  { readonly mode: 'stdio'; readonly childArgv: readonly string[] } | { readonly mode: 'shared'; readonly upstreamArgv: readonly string[] };

export interface BrokerTargetOptions {
  readonly name: string;
  readonly upstream: BrokerUpstream;
  readonly users: readonly StandinUser[];
  /** Extra node flags for the broker process (profiling). */
  readonly nodeFlags?: readonly string[];
  /** Extra broker variables (BROKER_AUDIT=off for the audit phase's baseline). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The broker as an operator runs it, with its own Forgejo stand-in (in this process) to sign in at. */
export async function startBrokerTarget(procs: ProcessSet, options: BrokerTargetOptions): Promise<BrokerTarget> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const app = { clientId: `bench-${options.name}`, clientSecret: randomBytes(24).toString('hex') };
  const forge = await startForgejoStandin({
    users: options.users,
    applications: [{ ...app, redirectUris: [`${url}${OAUTH_PATHS.callback}`] }],
  });
  const dataDir = await mkdtemp(join(tmpdir(), `bench-${options.name}-`));
  const proc = procs.start(
    options.name,
    process.execPath,
    ['--expose-gc', '--import', PROBE, ...(options.nodeFlags ?? []), BROKER_CLI, 'serve'],
    {
      ipc: true,
      probe: true,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        BROKER_LISTEN: `127.0.0.1:${port}`,
        BROKER_PUBLIC_URL: url,
        BROKER_DATA_DIR: dataDir,
        FORGEJO_URL: forge.url,
        FORGEJO_CLIENT_ID: app.clientId,
        FORGEJO_CLIENT_SECRET: app.clientSecret,
        ...(options.upstream.mode === 'stdio'
          ? { BROKER_CHILD_COMMAND: commandLine(options.upstream.childArgv) }
          : { BROKER_UPSTREAM_COMMAND: commandLine(options.upstream.upstreamArgv) }),
        // Production defaults otherwise; the sign-in rate limit is raised because the bench signs in 100+ users from one address,
        // and the session caps are lifted because one user holds 100 sessions (throughput) and 1,000 (memory).
        BROKER_LOG_LEVEL: 'info',
        BROKER_RATE_LIMIT: '1000000',
        BROKER_MAX_SESSIONS: '0',
        BROKER_MAX_SESSIONS_PER_USER: '0',
        BROKER_SHUTDOWN_GRACE: '5s',
        ...options.env,
      },
    },
  );
  await waitFor(async () => (await fetch(`${url}/healthz`)).ok, options.name, proc);
  const mcpUrl = new URL('/mcp', url);
  return {
    proc,
    url,
    mcpUrl,
    dataDir,
    forge,
    users: options.users,
    token: async (user) =>
      (await obtainToken(mcpUrl.href, { login: user.login, password: user.password }, `bench-client-${user.login}`)).accessToken,
  };
}

export interface HttpServerTarget {
  readonly proc: Proc;
  readonly mcpUrl: URL;
}

/** supergateway 4 (pinned in bench/supergateway), stdio -> Streamable HTTP, stateful (one child per session), no auth, its logging off. */
export async function startSupergateway(
  procs: ProcessSet,
  name: string,
  childArgv: readonly string[],
  forgejoUrl: string,
  forgejoToken: string,
): Promise<HttpServerTarget> {
  const port = await freePort();
  const proc = procs.start(
    name,
    process.execPath,
    [
      '--expose-gc',
      '--import',
      PROBE,
      SUPERGATEWAY,
      '--stdio',
      commandLine(childArgv),
      '--outputTransport',
      'streamableHttp',
      '--stateful',
      '--port',
      String(port),
      '--logLevel',
      'none',
      '--healthEndpoint',
      '/healthz',
    ],
    {
      ipc: true,
      probe: true,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        FORGEJO_URL: forgejoUrl,
        FORGEJO_ACCESS_TOKEN: forgejoToken,
      },
    },
  );
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, name, proc);
  return { proc, mcpUrl: new URL(`http://127.0.0.1:${port}/mcp`) };
}

async function startIpcServer(
  procs: ProcessSet,
  name: string,
  script: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<HttpServerTarget> {
  const proc = procs.start(name, process.execPath, [script, ...args], { ipc: true, env });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no port within 30 s`)), 30_000);
    proc.child.on('message', (message: { ready?: number }) => {
      if (typeof message.ready !== 'number') return;
      clearTimeout(timer);
      resolve(message.ready);
    });
    proc.child.once('exit', () => reject(new Error(`${name} exited`)));
  });
  return { proc, mcpUrl: new URL(`http://127.0.0.1:${port}/mcp`) };
}

export function startBareHttp(procs: ProcessSet): Promise<HttpServerTarget> {
  return startIpcServer(procs, 'bare-http', BARE_HTTP, [], { PATH: process.env.PATH });
}

export function startSdkTransport(procs: ProcessSet): Promise<HttpServerTarget> {
  return startIpcServer(procs, 'sdk-transport', SDK_TRANSPORT, [], { PATH: process.env.PATH });
}

export function startBareBridge(procs: ProcessSet, forgejoUrl: string, forgejoToken: string): Promise<HttpServerTarget> {
  return startIpcServer(procs, 'bare-bridge', BARE_BRIDGE, ['--', ...STANDIN_ARGV], {
    PATH: process.env.PATH,
    FORGEJO_URL: forgejoUrl,
    FORGEJO_ACCESS_TOKEN: forgejoToken,
  });
}
