#!/usr/bin/env node
/**
 * forgejo-mcp-broker: the one entry point. Parses and validates the
 * configuration, then runs the broker (`serve`, when FORGEJO_URL is set) or
 * the self-contained `demo`.
 */
import { createBroker, stopOnSignals } from './app.js';
import { ConfigError, loadConfig, mergeFlags } from './config/config.js';
import { standinChildCommand, startDemo } from './demo.js';
import { errorMessage } from './errors/errors.js';
import { MCP_PATH } from './http/route.js';
import { createLogger } from './log/logger.js';

const USAGE = `Usage: forgejo-mcp-broker [serve|demo] [--name value ...]

  serve   Run the broker in front of the Forgejo at FORGEJO_URL (the default when it is set).
  demo    Run the broker with an embedded Forgejo stand-in and stand-in forgejo-mcp
          (the default when FORGEJO_URL is not set).

Every setting is an environment variable; a flag --some-name overrides
BROKER_SOME_NAME (or FORGEJO_*). See the README for the full table.
`;

async function main(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  const { env, positional } = mergeFlags(argv, process.env);
  const command = positional[0] ?? (env.FORGEJO_URL === undefined || env.FORGEJO_URL.trim() === '' ? 'demo' : 'serve');
  if (command !== 'serve' && command !== 'demo') throw new ConfigError('command', `unknown command "${command}"\n\n${USAGE}`);
  const demoEnv = command === 'demo' && env.BROKER_CHILD_COMMAND === undefined ? { ...env, BROKER_CHILD_COMMAND: standinChildCommand() } : env;
  const config = loadConfig(demoEnv);
  const log = createLogger(config.logLevel);
  if (command === 'serve') {
    const broker = await createBroker({ config, log });
    stopOnSignals(() => broker.stop(), log);
    return;
  }
  const demo = await startDemo(config, log, { keepDataDir: env.BROKER_DATA_DIR !== undefined });
  stopOnSignals(() => demo.stop(), log);
  process.stderr.write(
    [
      '',
      'forgejo-mcp-broker demo is running.',
      `  MCP server URL for your client: ${new URL(MCP_PATH, config.publicUrl).href}`,
      `  Forgejo stand-in:                ${demo.forgejo.url} (sign in as demo / demo, or alice / alice)`,
      '  Stop with Ctrl-C.',
      '',
    ].join('\n') + '\n',
  );
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`forgejo-mcp-broker: configuration error: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`forgejo-mcp-broker: ${errorMessage(error)}\n`);
  process.exit(1);
});
