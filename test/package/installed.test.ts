/**
 * The executable as a user runs it: `forgejo-mcp-broker demo` and
 * `forgejo-mcp-broker serve`, each a process of its own, and a person
 * signing in through each with the MCP SDK client, ending in a `tools/call`
 * that answers as that person.
 *
 * By default the executable is the built `dist/src/cli.js`. With
 * BROKER_INSTALLED_BIN it is the binary `npm install -g` put into a prefix
 * (`.ci/package-check.sh` packs the package and installs it into an empty
 * one): then only the package's files and its production dependencies are
 * there to be imported, so a runtime import of a dev dependency, or a file
 * missing from `files`, fails here.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/client';
import { DEMO_USERS } from '../../src/demo.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { startForgejoStandin } from '../../src/standin/forgejo.js';
import { eventually, freshDataDirs, portForProcess } from '../support/host.js';
import { disconnect, E2EOAuthProvider, getMe, signInWithSdk } from '../support/mcp-clients.js';
import { TestBrowser } from '../support/oauth.js';
import { DEMO_TOOL_NAMES } from '../support/forgejo.js';

const INSTALLED_BIN = process.env.BROKER_INSTALLED_BIN;
const BUILT_CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
/** The stand-in forgejo-mcp of the package under test, next to its cli.js (the installed bin is a symlink to it). */
const PACKAGE_STANDIN_CHILD = join(dirname(realpathSync(INSTALLED_BIN ?? BUILT_CLI)), 'standin', 'forgejo-mcp.js');
const SIGN_IN_LIMIT_MS = 30_000;

/** A forge tool's answer, the real forgejo-mcp's `{"Result": …}` unwrapped. */
function forgeResult<T>(result: Awaited<ReturnType<Client['callTool']>>): T {
  const first = result.content[0];
  assert.ok(result.isError !== true && first?.type === 'text', JSON.stringify(result.content));
  return (JSON.parse(first.text) as { Result: T }).Result;
}

interface BrokerProcess {
  readonly proc: ChildProcess;
  output(): string;
}

/** The executable under test with these arguments; its own shebang when installed, this Node otherwise. */
function startExecutable(args: readonly string[], env: Record<string, string>): BrokerProcess {
  const fullEnv = { PATH: process.env.PATH ?? '', ...env };
  const proc =
    INSTALLED_BIN === undefined
      ? spawn(process.execPath, [BUILT_CLI, ...args], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(INSTALLED_BIN, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { proc, output: () => output };
}

/** SIGTERM, and the graceful exit 0 the broker promises. */
async function stop(broker: BrokerProcess): Promise<void> {
  if (broker.proc.exitCode !== null) return;
  const exited = once(broker.proc, 'exit') as Promise<[number | null]>;
  broker.proc.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, broker.output());
}

/** Waits until the process printed `marker`; fails with what it printed if it exits first. */
async function printed(broker: BrokerProcess, marker: string): Promise<void> {
  await eventually(
    () => {
      if (broker.proc.exitCode !== null) throw new Error(`exited with ${broker.proc.exitCode} before "${marker}":\n${broker.output()}`);
      return broker.output().includes(marker);
    },
    marker,
    SIGN_IN_LIMIT_MS,
  );
}

describe(`the executable (${INSTALLED_BIN ?? BUILT_CLI}): sign-in and a tools/call through demo and serve`, () => {
  const dataDir = freshDataDirs('broker-installed-');
  const running: BrokerProcess[] = [];
  const closing: (() => Promise<void>)[] = [];

  after(async () => {
    for (const broker of running) await stop(broker);
    for (const close of closing) await close();
  });

  it('demo --listen: the embedded stand-ins, a sign-in each, the real forgejo-mcp tool names, an issue filed by one user that the other does not see', async () => {
    const port = await portForProcess();
    const broker = startExecutable(['demo', '--listen', `127.0.0.1:${port}`], { BROKER_LOG_LEVEL: 'warn' });
    running.push(broker);
    await printed(broker, 'demo is running');
    assert.match(broker.output(), new RegExp(`http://127\\.0\\.0\\.1:${port}/mcp`));

    const user = DEMO_USERS[0];
    assert.ok(user);
    const connected = await signInWithSdk(
      new URL(`http://127.0.0.1:${port}/mcp`),
      new E2EOAuthProvider({ clientName: 'installed demo client' }),
      new TestBrowser(),
      user,
    );
    assert.deepEqual(await getMe(connected.client), { login: user.login, id: user.id });
    assert.deepEqual(
      (await connected.client.listTools()).tools.map((tool) => tool.name).sort(),
      DEMO_TOOL_NAMES,
      'no test tools in the demo',
    );

    const repository = { owner: user.login, repo: 'website' };
    const filed = forgeResult<{ number: number }>(
      await connected.client.callTool({ name: 'create_issue', arguments: { ...repository, title: 'Filed in the demo' } }),
    );
    const issues = forgeResult<{ number: number; title: string }[]>(
      await connected.client.callTool({ name: 'list_repo_issues', arguments: repository }),
    );
    assert.deepEqual(issues[0], { ...issues[0], number: filed.number, title: 'Filed in the demo' });
    assert.ok(issues.length > 1, 'the seeded issues are there too');

    const other = DEMO_USERS[1];
    assert.ok(other);
    const otherConnected = await signInWithSdk(
      new URL(`http://127.0.0.1:${port}/mcp`),
      new E2EOAuthProvider({ clientName: 'installed demo client 2' }),
      new TestBrowser(),
      other,
    );
    const ownIssues = forgeResult<{ title: string }[]>(
      await otherConnected.client.callTool({ name: 'list_repo_issues', arguments: { owner: other.login, repo: 'website' } }),
    );
    assert.ok(!ownIssues.some((issue) => issue.title === 'Filed in the demo'));
    const notVisible = await otherConnected.client.callTool({ name: 'list_repo_issues', arguments: repository });
    assert.equal(notVisible.isError, true, `${user.login}'s repository is private`);
    await disconnect(otherConnected);
    await disconnect(connected);
    await stop(broker);
  });

  it("serve: FORGEJO_URL and the application from the environment, the package's stand-in forgejo-mcp as the child", async () => {
    const port = await portForProcess();
    const publicUrl = `http://127.0.0.1:${port}`;
    const application = { clientId: 'installed-broker', clientSecret: randomBytes(24).toString('hex') };
    const forgejo = await startForgejoStandin({
      users: DEMO_USERS,
      applications: [{ ...application, redirectUris: [`${publicUrl}${OAUTH_PATHS.callback}`] }],
    });
    closing.push(() => forgejo.close());
    const broker = startExecutable(['serve'], {
      FORGEJO_URL: forgejo.url,
      FORGEJO_CLIENT_ID: application.clientId,
      FORGEJO_CLIENT_SECRET: application.clientSecret,
      FORGEJO_SCOPES: 'read:user write:issue write:repository',
      BROKER_PUBLIC_URL: publicUrl,
      BROKER_LISTEN: `127.0.0.1:${port}`,
      BROKER_DATA_DIR: dataDir(),
      BROKER_CHILD_COMMAND: `'${process.execPath}' '${PACKAGE_STANDIN_CHILD}' --transport stdio --test-tools`,
      BROKER_LOG_LEVEL: 'info',
    });
    running.push(broker);
    await printed(broker, '"event":"listening"');

    const user = DEMO_USERS[1];
    assert.ok(user);
    const connected = await signInWithSdk(
      new URL(`${publicUrl}/mcp`),
      new E2EOAuthProvider({ clientName: 'installed serve client' }),
      new TestBrowser(),
      user,
    );
    assert.deepEqual(await getMe(connected.client), { login: user.login, id: user.id });
    await disconnect(connected);
    await stop(broker);
  });
});
