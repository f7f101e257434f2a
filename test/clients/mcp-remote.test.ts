/**
 * `mcp-remote`, the stdio <-> remote bridge many desktop MCP hosts use, in
 * front of the demo broker, signing in through its own OAuth flow: it finds
 * the broker from the 401 challenge, registers itself (RFC 7591), and opens
 * the authorization URL in "the browser". Here the browser command
 * (`BROWSER`, which the xdg-open mcp-remote runs honours) is a tiny script
 * that writes the URL to a file; Chromium, driven by playwright-core, then
 * does what a person would: `Approve` on the broker's consent page, name and
 * password on the Forgejo stand-in's login form. Forgejo sends the browser
 * back to the broker, the broker to mcp-remote's loopback callback, and
 * mcp-remote exchanges the code. The MCP host is the official SDK `Client`
 * over `StdioClientTransport`, as a desktop host would be: it ends with a
 * working `tools/call`.
 *
 * mcp-remote keeps its client registration and tokens under
 * `MCP_REMOTE_CONFIG_DIR` (default `~/.mcp-auth`); both that and HOME point
 * into a temporary directory. A second mcp-remote, in its dual-era mode
 * (`--protocol auto`), then starts from those stored tokens, with no
 * browser at all, and reaches the broker's modern (2026-07-28) side.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import type { Browser } from 'playwright-core';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { eventually, isAlive, skipIfMissing } from '../support/host.js';
import { type ClientsBroker, DEMO_USERS, startClientsDemo } from '../support/brokers.js';
import { CHROMIUM, clientBinary, launchChromium, skipUnlessInstalled, text } from '../support/mcp-clients.js';

const MCP_REMOTE = 'mcp-remote';
/** Bound on the whole sign-in: mcp-remote waiting for its callback, and the host waiting for `initialize`. */
const SIGN_IN_LIMIT_MS = 60_000;

function skipReason(): string | false {
  return (
    skipUnlessInstalled(MCP_REMOTE) ||
    skipIfMissing(existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed: apt-get install chromium`)
  );
}

/** Variables a child needs, without any desktop: no display, no D-Bus session, a generic xdg-open. */
function baseEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (/^(DISPLAY|WAYLAND_DISPLAY|DBUS_SESSION_BUS_ADDRESS|XDG_.*|KDE_.*|GNOME_.*|DESKTOP_SESSION|BROWSER)$/.test(name)) continue;
    env[name] = value;
  }
  return env;
}

interface Bridge {
  readonly client: Client;
  readonly transport: StdioClientTransport;
  stderr(): string;
}

describe('mcp-remote through its OAuth flow, the browser step in Chromium', { skip: skipReason() }, () => {
  const user = DEMO_USERS.find((candidate) => candidate.login === 'alice');
  assert.ok(user);
  let demo: ClientsBroker;
  let browser: Browser;
  let home: string;
  let urlFile: string;
  let callbackPort: number;
  const bridges: Bridge[] = [];

  before(async () => {
    demo = await startClientsDemo();
    home = await mkdtemp(join(tmpdir(), 'broker-mcp-remote-'));
    urlFile = join(home, 'opened-urls.txt');
    const script = join(home, 'record-url.sh');
    // Quoted for sh: the path is ours (mkdtemp), the URL only ever "$1".
    await writeFile(script, `#!/bin/sh\nprintf '%s\\n' "$1" >> '${urlFile}'\n`);
    await chmod(script, 0o755);
    callbackPort = await callbackPortFor();
    browser = await launchChromium();
  });

  after(async () => {
    for (const bridge of bridges) await bridge.client.close().catch(() => undefined);
    await browser?.close();
    await demo?.close();
    if (home !== undefined) await rm(home, { recursive: true, force: true });
  });

  /** An MCP host on stdio with mcp-remote as its "server", pointed at the broker. */
  function bridge(extraArgs: readonly string[], name: string): { bridge: Bridge; connected: Promise<void> } {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        clientBinary(MCP_REMOTE),
        demo.mcpUrl,
        String(callbackPort),
        '--host',
        '127.0.0.1',
        '--transport',
        'http-only',
        '--auth-timeout',
        String(SIGN_IN_LIMIT_MS / 1000),
        ...extraArgs,
      ],
      env: {
        ...baseEnvironment(),
        HOME: home,
        MCP_REMOTE_CONFIG_DIR: join(home, '.mcp-auth'),
        BROWSER: join(home, 'record-url.sh'),
        XDG_CURRENT_DESKTOP: 'X-Generic',
      },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const client = new Client({ name, version: '1.0.0' });
    const made: Bridge = { client, transport, stderr: () => stderr };
    bridges.push(made);
    return { bridge: made, connected: client.connect(transport, { timeout: SIGN_IN_LIMIT_MS }) };
  }

  /** Closes the host's side; mcp-remote must exit with it. */
  async function stopBridge(made: Bridge): Promise<void> {
    const pid = made.transport.pid;
    await made.client.close().catch(() => undefined);
    if (pid !== null) await eventually(() => !isAlive(pid), 'mcp-remote exited', 10_000);
  }

  /** The URLs mcp-remote has asked the browser to open so far. */
  async function openedUrls(): Promise<string[]> {
    if (!existsSync(urlFile)) return [];
    return (await readFile(urlFile, 'utf8')).split('\n').filter((line) => line !== '');
  }

  it('signs in (consent page, Forgejo login) and ends with a working tools/call get_me', async () => {
    const { bridge: first, connected } = bridge([], 'desktop host (legacy)');
    try {
      let authorizationUrl = '';
      await Promise.race([
        eventually(
          async () => (authorizationUrl = (await openedUrls())[0] ?? '') !== '',
          'mcp-remote opening the authorization URL',
          SIGN_IN_LIMIT_MS,
        ),
        connected.then(() => assert.fail('connected without signing in')),
      ]).catch((error: unknown) => {
        throw new Error(`${String(error)}\nmcp-remote stderr:\n${first.stderr()}`);
      });

      const authorize = new URL(authorizationUrl);
      assert.equal(authorize.origin + authorize.pathname, `${demo.url}${OAUTH_PATHS.authorize}`);
      assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
      assert.equal(authorize.searchParams.get('resource'), demo.mcpUrl);
      const redirectUri = authorize.searchParams.get('redirect_uri') ?? '';
      assert.equal(redirectUri, `http://127.0.0.1:${callbackPort}/oauth/callback`);

      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        const consent = await page.goto(authorizationUrl);
        assert.equal(consent?.status(), 200);
        // The broker's consent page names the client mcp-remote registered, and its loopback redirect.
        assert.match(await page.locator('body').innerText(), /MCP CLI Proxy/);
        await page.getByRole('button', { name: 'Approve', exact: true }).click();
        await page.waitForURL((url) => url.href.startsWith(demo.forgejo.url));
        await page.fill('#user_name', user.login);
        await page.fill('#password', user.password);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL((url) => url.href.startsWith(redirectUri));
        assert.match(await page.locator('body').innerText(), /Authorization successful/i);
      } finally {
        await context.close();
      }

      await connected.catch((error: unknown) => {
        throw new Error(`${String(error)}\nmcp-remote stderr:\n${first.stderr()}`);
      });
      const tools = await first.client.listTools();
      assert.ok(tools.tools.some((tool) => tool.name === 'get_me'));
      assert.deepEqual(JSON.parse(text(await first.client.callTool({ name: 'get_me', arguments: {} }))), {
        login: user.login,
        id: user.id,
      });
      assert.equal(text(await first.client.callTool({ name: 'echo', arguments: { text: 'via mcp-remote' } })), 'via mcp-remote');
      // Legacy sessions of the Forgejo user who signed in: the host's, and mcp-remote's own
      // connection probe ("mcp-remote-fallback-test", which mcp-remote never ends: the idle reaper will).
      assert.ok(demo.broker.legacy.sessionIdsOf(String(user.id)).length >= 1);
      assert.equal(demo.broker.modern.activeUserChannels, 0);

      // The host goes away: mcp-remote goes with it.
      await stopBridge(first);
    } finally {
      await stopBridge(first);
    }
  });

  it('a second mcp-remote starts from the stored tokens (no browser) and, with --protocol auto, speaks the 2026-07-28 era', async () => {
    const before = (await openedUrls()).length;
    const legacySessions = demo.broker.legacy.sessionIdsOf(String(user.id)).length;
    const { bridge: second, connected } = bridge(['--protocol', 'auto'], 'desktop host (dual era)');
    try {
      await connected.catch((error: unknown) => {
        throw new Error(`${String(error)}\nmcp-remote stderr:\n${second.stderr()}`);
      });
      assert.deepEqual(JSON.parse(text(await second.client.callTool({ name: 'get_me', arguments: {} }))), {
        login: user.login,
        id: user.id,
      });
      assert.equal((await openedUrls()).length, before, 'mcp-remote asked for a browser again');
      // Served statelessly through the user's broker-initialised child: no new session.
      assert.equal(demo.broker.legacy.sessionIdsOf(String(user.id)).length, legacySessions);
      assert.equal(demo.broker.modern.activeUserChannels, 1);
    } finally {
      await stopBridge(second);
    }
  });
});

/**
 * A port nothing listens on right now, for mcp-remote's OAuth callback: it
 * binds the port itself, so the port must be named before it starts (a
 * small race with other processes, unavoidable for a third-party client).
 */
async function callbackPortFor(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}
