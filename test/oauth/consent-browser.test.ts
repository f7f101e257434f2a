import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { authorizeUrl, OAuthHarness, OAUTH_USERS as USERS } from '../support/brokers.js';
import { pkce } from '../support/oauth.js';
import { skipIfMissing } from '../support/host.js';
import { CHROMIUM, launchChromium } from '../support/mcp-clients.js';

const ARTIFACTS = resolve('test-artifacts');

/**
 * The consent page in a real browser (Debian's chromium, JavaScript off: the
 * page must work without it): it renders, Approve leads through the Forgejo
 * login to the client with a code, Deny to the client with access_denied.
 */
describe(
  'consent page in Chromium',
  { skip: skipIfMissing(existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed: apt-get install chromium`) },
  () => {
    let harness: OAuthHarness;
    let browser: Browser;
    let callbackServer: Server;
    let redirectUri: string;

    before(async () => {
      harness = await OAuthHarness.start();
      callbackServer = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('signed in');
      });
      callbackServer.listen(0, '127.0.0.1');
      await once(callbackServer, 'listening');
      redirectUri = `http://127.0.0.1:${(callbackServer.address() as AddressInfo).port}/callback`;
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      callbackServer?.closeAllConnections();
      await new Promise<void>((done) => (callbackServer === undefined ? done() : callbackServer.close(() => done())));
      await harness?.close();
    });

    it('renders, and Approve leads through the Forgejo login back to the client with a code', async () => {
      const client = await harness.register({ client_name: 'Browser Test Client', redirect_uris: [redirectUri] });
      const { challenge } = await pkce();
      harness.forgejo.setAutoLogin(undefined);
      const context = await browser.newContext({ javaScriptEnabled: false });
      try {
        const page = await context.newPage();
        const response = await page.goto(authorizeUrl(harness, client.clientId, challenge, { redirect_uri: redirectUri }));
        assert.equal(response?.status(), 200);
        assert.match(await page.locator('h1').innerText(), /Browser Test Client/);
        const approve = page.getByRole('button', { name: 'Approve', exact: true });
        const deny = page.getByRole('button', { name: 'Deny', exact: true });
        assert.equal(await approve.count(), 1);
        assert.equal(await deny.count(), 1);
        // What the client will be able to do: the configured Forgejo scopes in words, and the tool policy.
        assert.ok(await page.getByRole('heading', { name: 'What it will be able to do' }).isVisible());
        assert.ok(await page.getByRole('heading', { name: 'Tools it may use' }).isVisible());
        assert.match(
          await page.locator('ul').first().innerText(),
          /Full access to your account/,
          'no FORGEJO_SCOPES: full access, said so',
        );
        assert.ok(await page.getByRole('link', { name: 'Connections' }).isVisible(), 'the Connections page is linked');
        await mkdir(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: resolve(ARTIFACTS, 'consent.png'), fullPage: true });

        // The keyboard alone reaches Approve.
        let focused = '';
        for (let presses = 0; presses < 12 && focused !== 'Approve'; presses++) {
          await page.keyboard.press('Tab');
          focused = await page.locator(':focus').innerText();
        }
        assert.equal(focused, 'Approve', 'Tab reaches Approve');
        await page.keyboard.press('Enter');
        await page.waitForURL((url) => url.href.startsWith(harness.forgejo.url));
        const user = USERS[0];
        assert.ok(user);
        await page.fill('#user_name', user.login);
        await page.fill('#password', user.password);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL((url) => url.href.startsWith(redirectUri));

        const landed = new URL(page.url());
        assert.ok(landed.searchParams.get('code'));
        assert.equal(landed.searchParams.get('state'), 'client-state-123');
        assert.equal(landed.searchParams.get('iss'), harness.brokerUrl);
      } finally {
        await context.close();
      }
    });

    it('Deny returns access_denied to the client', async () => {
      const client = await harness.register({ client_name: 'Denied Client', redirect_uris: [redirectUri] });
      const { challenge } = await pkce();
      const context = await browser.newContext({ javaScriptEnabled: false });
      try {
        const page = await context.newPage();
        await page.goto(authorizeUrl(harness, client.clientId, challenge, { redirect_uri: redirectUri }));
        await page.getByRole('button', { name: 'Deny', exact: true }).click();
        await page.waitForURL((url) => url.href.startsWith(redirectUri));
        const landed = new URL(page.url());
        assert.equal(landed.searchParams.get('error'), 'access_denied');
        assert.equal(landed.searchParams.get('code'), null);
        assert.equal(landed.searchParams.get('iss'), harness.brokerUrl);
      } finally {
        await context.close();
      }
    });

    it('cannot be framed', async () => {
      const client = await harness.register({ client_name: 'Framed Client', redirect_uris: [redirectUri] });
      const { challenge } = await pkce();
      const target = authorizeUrl(harness, client.clientId, challenge, { redirect_uri: redirectUri });
      const framer = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(`<!doctype html><iframe id="victim" src="${target.replace(/&/g, '&amp;')}"></iframe>`);
      });
      framer.listen(0, '127.0.0.1');
      await once(framer, 'listening');
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        // Another origin (localhost, not 127.0.0.1) frames the consent page.
        await page.goto(`http://localhost:${(framer.address() as AddressInfo).port}/`);
        const frame = page.frames().find((candidate) => candidate !== page.mainFrame());
        const buttons =
          frame === undefined
            ? 0
            : await frame
                .getByRole('button', { name: 'Approve' })
                .count()
                .catch(() => 0);
        assert.equal(buttons, 0, 'the consent page must not render inside a frame');
      } finally {
        await context.close();
        framer.closeAllConnections();
        await new Promise<void>((done) => framer.close(() => done()));
      }
    });
  },
);
