/**
 * A broker in a process of its own, wired by the production `createBroker`
 * and `stopOnSignals`, with the core tests' injected authentication. Prints
 * one JSON line `{url, bearer}` when ready. Used to prove what happens when
 * the broker process is signalled or killed.
 */
import { createBroker, stopOnSignals } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/log/logger.js';
import { STANDIN_CHILD, TestAuthenticator, TestCredentials, randomToken } from './broker.js';
import { TestForge } from './forge.js';

const forge = await TestForge.start();
const config = loadConfig({
  BROKER_LISTEN: '127.0.0.1:0',
  FORGEJO_URL: forge.url,
  BROKER_CHILD_COMMAND: `'${process.execPath}' '${STANDIN_CHILD}' --transport stdio --test-tools`,
  BROKER_SHUTDOWN_GRACE: '10s',
  BROKER_LOG_LEVEL: 'warn',
});
const log = createLogger(config.logLevel, process.stderr);
const authenticator = new TestAuthenticator('http://127.0.0.1/.well-known/oauth-protected-resource/mcp');
const credentials = new TestCredentials();
const bearer = randomToken();
const forgejoToken = randomToken();
forge.addToken(forgejoToken, { id: 1, login: 'alice' });
credentials.set('1', { accessToken: forgejoToken, expiresAt: Date.now() + 3_600_000 });
authenticator.principals.set(bearer, { userId: '1', forgejoLogin: 'alice', clientId: 'c', tokenHash: 'h', grantId: 'g' });
const broker = await createBroker({ config, log, auth: { authenticator, credentials, routes: [] } });
stopOnSignals(async () => {
  await broker.stop();
  await forge.close();
}, log);
process.stdout.write(JSON.stringify({ url: broker.url, bearer }) + '\n');
