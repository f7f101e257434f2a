import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import type { Browser } from 'playwright-core';
import { MCP_PATH } from '../../src/http/route.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { e2eUser, type SignedInTestBroker } from '../support/brokers.js';
import { skipIfMissing } from '../support/host.js';
import { CHROMIUM, launchChromium } from '../support/mcp-clients.js';
import { authorizationUrl, discoverBroker, pkce, registerClient } from '../support/oauth.js';
import { openLegacySession, tokenStatus, type SignedInUser } from '../admin/support.js';
import { forEachStore } from '../admin/support.js';

const ARTIFACTS = resolve('test-artifacts');

/**
 * The Connections page in a real browser (Debian's chromium, JavaScript off:
 * the page has none): reached from the consent page's link after a sign-in
 * made in that browser, it shows the client with its live session; the
 * keyboard alone reaches Revoke (Tab) and presses it (Enter), which ends the
 * session and the token. Screenshots go to test-artifacts/.
 */
describe(
  'Connections page in Chromium',
  { skip: skipIfMissing(existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed: apt-get install chromium`) },
  () => {
    forEachStore('keyboard', (store) => {
      let broker: SignedInTestBroker;
      let browser: Browser;
      let callbackServer: Server;
      let redirectUri: string;

      before(async () => {
        broker = await store.start(`connections-browser-${store.kind}`);
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
        await broker?.close();
      });

      it('lists the client signed in from this browser, and Tab then Enter on Revoke ends its session and token', async () => {
        const metadata = await discoverBroker(`${broker.url}${MCP_PATH}`);
        const client = await registerClient(metadata, 'Keyboard Client', [redirectUri]);
        const { verifier, challenge } = await pkce();
        const context = await browser.newContext({ javaScriptEnabled: false });
        let session: Client | undefined;
        try {
          const page = await context.newPage();
          await page.goto(authorizationUrl(metadata, client.clientId, redirectUri, challenge, 'keyboard-state'));
          const link = page.getByRole('link', { name: 'Connections' });
          assert.equal(
            await link.getAttribute('href'),
            `${broker.url}${OAUTH_PATHS.consents}`,
            'the consent page links to the Connections page',
          );
          await page.getByRole('button', { name: 'Approve', exact: true }).click();
          const user = e2eUser('erin');
          await page.fill('#user_name', user.login);
          await page.fill('#password', user.password);
          await page.getByRole('button', { name: 'Sign in' }).click();
          await page.waitForURL((url) => url.href.startsWith(redirectUri));
          const code = new URL(page.url()).searchParams.get('code');
          assert.ok(code);
          const tokens = (await (
            await fetch(metadata.tokenEndpoint, {
              method: 'POST',
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: new URLSearchParams({
                grant_type: 'authorization_code',
                client_id: client.clientId,
                code,
                redirect_uri: redirectUri,
                code_verifier: verifier,
                resource: metadata.resource,
              }).toString(),
            })
          ).json()) as { access_token: string };
          const erin = {
            login: 'erin',
            userId: String(user.id),
            clientId: client.clientId,
            accessToken: tokens.access_token,
          } as SignedInUser;
          session = await openLegacySession(broker, erin);

          const response = await page.goto(`${broker.url}${OAUTH_PATHS.consents}`);
          assert.equal(response?.status(), 200);
          assert.equal(await page.locator('h1').innerText(), 'Your connections');
          const region = page.getByRole('region', { name: 'Keyboard Client' });
          assert.match(await region.innerText(), /Live sessions\s+MCP session since .* UTC, last request .* UTC/);
          assert.match(await region.innerText(), new RegExp(`Returns to\\s+127\\.0\\.0\\.1:${new URL(redirectUri).port}`));
          await mkdir(ARTIFACTS, { recursive: true });
          await page.screenshot({ path: resolve(ARTIFACTS, `connections-${store.kind}.png`), fullPage: true });

          let focused: string | null = null;
          for (let presses = 0; presses < 10 && focused !== 'Revoke Keyboard Client'; presses++) {
            await page.keyboard.press('Tab');
            focused = await page.locator(':focus').getAttribute('aria-label');
          }
          assert.equal(focused, 'Revoke Keyboard Client', 'Tab reaches Revoke');
          await page.screenshot({ path: resolve(ARTIFACTS, `connections-${store.kind}-revoke-focused.png`), fullPage: true });
          await page.keyboard.press('Enter');
          await page.waitForURL((url) => url.searchParams.has('revoked'));
          assert.match(await page.getByRole('status').innerText(), /You revoked Keyboard Client/);
          await page.screenshot({ path: resolve(ARTIFACTS, `connections-${store.kind}-revoked.png`), fullPage: true });

          assert.equal(broker.broker.legacy.sessionIdsOf(erin.userId).length, 0, 'the session ended');
          assert.equal(await tokenStatus(broker, erin), 401, 'the token answers 401');
        } finally {
          await session?.close().catch(() => undefined);
          await context.close();
        }
      });
    });
  },
);
