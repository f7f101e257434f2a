/**
 * One sign-in and one `tools/call` from the command line, for checks that
 * run outside the test runner (deploy/check.sh signs in through nginx and
 * Caddy with it): the MCP SDK client and a person at a browser, as in the
 * end-to-end tests.
 *
 *   node dist/test/support/sign-in-once.js <mcp-url> <login> <password>
 *
 * Prints get_me's answer as JSON and exits 0; exits 1 with the reason
 * otherwise. Trusts extra certificates through NODE_EXTRA_CA_CERTS, as Node does.
 */
import { disconnect, E2EOAuthProvider, getMe, signInWithSdk } from './mcp-clients.js';
import { TestBrowser } from './oauth.js';

const [mcpUrl, login, password] = process.argv.slice(2);
if (mcpUrl === undefined || login === undefined || password === undefined) {
  process.stderr.write('usage: sign-in-once.js <mcp-url> <login> <password>\n');
  process.exit(2);
}
try {
  const user = { id: 0, login, password, fullName: login, email: `${login}@example.test` };
  const connected = await signInWithSdk(new URL(mcpUrl), new E2EOAuthProvider({ clientName: 'sign-in-once' }), new TestBrowser(), user);
  process.stdout.write(`${JSON.stringify(await getMe(connected.client))}\n`);
  await disconnect(connected);
} catch (error) {
  process.stderr.write(`sign-in-once: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
}
