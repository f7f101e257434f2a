import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { standinChildCommand } from '../../src/demo.js';
import { skipIfMissing } from '../support/host.js';
import { CHROMIUM, launchChromium } from '../support/mcp-clients.js';
import { type SignedInTestBroker, startBroker } from '../support/brokers.js';

const ARTIFACTS = resolve('test-artifacts');
const PUBLIC_URL = 'https://mcp.example.test';
const MCP_URL = `${PUBLIC_URL}/mcp`;

/**
 * `GET /` in a real browser (Debian's chromium, JavaScript off: the page has
 * none): it renders in the consent page's look, and every client's setup
 * carries the configured public URL, not the address the broker listens on.
 */
describe(
  'landing page in Chromium',
  { skip: skipIfMissing(existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed: apt-get install chromium`) },
  () => {
    let broker: SignedInTestBroker;
    let browser: Browser;

    before(async () => {
      broker = await startBroker({
        wiring: 'signed-in',
        name: 'landing',
        users: [],
        childCommand: standinChildCommand({ testTools: false }),
        env: { BROKER_PUBLIC_URL: PUBLIC_URL },
      });
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      await broker?.close();
    });

    it('renders what the service is, the MCP URL and each client setup with the configured URL', async () => {
      const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 390, height: 844 } });
      try {
        const page = await context.newPage();
        const response = await page.goto(`${broker.broker.url}/`);
        assert.equal(response?.status(), 200);
        assert.match(response?.headers()['content-security-policy'] ?? '', /default-src 'none'/);
        const forgeHost = new URL(broker.forgejo.url).host;
        assert.equal(await page.locator('h1').innerText(), `Use ${forgeHost} from your AI tools`);
        assert.match(await page.locator('main > p').first().innerText(), /MCP server for the forge/);

        const snippets = {
          'MCP server URL': [MCP_URL],
          'Claude Code': [`claude mcp add --transport http forgejo ${MCP_URL}`],
          'Claude Desktop and claude.ai': [MCP_URL],
          Cursor: [JSON.stringify({ mcpServers: { forgejo: { url: MCP_URL } } }, null, 2)],
          'VS Code': [JSON.stringify({ servers: { forgejo: { type: 'http', url: MCP_URL } } }, null, 2)],
          ChatGPT: [MCP_URL],
          'Clients without remote servers': [`npx mcp-remote ${MCP_URL}`],
        };
        for (const [name, expected] of Object.entries(snippets)) {
          const region = page.getByRole('region', { name, exact: true });
          assert.equal(await region.getByRole('heading', { level: 2, name, exact: true }).count(), 1, name);
          assert.deepEqual(await region.locator('pre').allInnerTexts(), expected, name);
        }
        // Every snippet on the page carries the configured URL, and nothing shows the listen address.
        for (const text of await page.locator('pre').allInnerTexts()) assert.ok(text.includes(MCP_URL), text);
        assert.ok(!(await page.locator('main').innerText()).includes(broker.broker.url));
        assert.match(await page.getByRole('region', { name: 'VS Code' }).innerText(), /\.vscode\/mcp\.json/);

        const connections = page.getByRole('link', { name: 'See and revoke the applications you connected' });
        assert.equal(await connections.getAttribute('href'), `${PUBLIC_URL}/oauth/consents`);

        // Snippets wrap on a phone-sized screen instead of running off it.
        for (const pre of await page.locator('pre').all()) {
          const box = await pre.boundingBox();
          assert.ok(box !== null && box.x >= 0 && box.x + box.width <= 390, 'snippet within the viewport');
        }
        await mkdir(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: resolve(ARTIFACTS, 'landing.png'), fullPage: true });
      } finally {
        await context.close();
      }
    });

    it('is only GET / and HEAD /: other methods and paths are not the page', async () => {
      assert.equal((await fetch(`${broker.broker.url}/`, { method: 'HEAD' })).status, 200);
      const post = await fetch(`${broker.broker.url}/`, { method: 'POST' });
      assert.equal(post.status, 404);
      await post.body?.cancel();
    });
  },
);
