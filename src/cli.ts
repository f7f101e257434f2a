#!/usr/bin/env node
/**
 * forgejo-mcp-broker: the one entry point. Parses and validates the
 * command line and the configuration, then runs the broker (`serve`, when
 * FORGEJO_URL is set), the self-contained `demo`, or an `admin` command on the store.
 */
import { runAdmin } from './admin/cli.js';
import { createBroker, stopOnSignals } from './app.js';
import { reloadPolicyOnHangup } from './app/governance.js';
import { parseCommandLine, usage } from './config/command-line.js';
import { ConfigError, loadConfig } from './config/config.js';
import { standinChildCommand, startDemo } from './demo.js';
import { errorMessage } from './errors/errors.js';
import { MCP_PATH } from './http/route.js';
import { createLogger } from './log/logger.js';
import { BROKER_INFO } from './version.js';

async function main(argv: readonly string[]): Promise<void> {
  if (argv[0] === 'admin') {
    process.exitCode = await runAdmin(argv.slice(1), process.env, process.stdout, process.stderr);
    return;
  }
  const commandLine = parseCommandLine(argv, process.env);
  if (commandLine.action === 'help') {
    process.stdout.write(usage());
    return;
  }
  if (commandLine.action === 'version') {
    process.stdout.write(`${BROKER_INFO.name} ${BROKER_INFO.version}\n`);
    return;
  }
  const { command, env } = commandLine;
  const demoEnv =
    command === 'demo' && env.BROKER_CHILD_COMMAND === undefined
      ? { ...env, BROKER_CHILD_COMMAND: standinChildCommand({ testTools: false }) }
      : env;
  const config = loadConfig(demoEnv);
  const log = createLogger(config.logLevel);
  for (const warning of config.warnings)
    log.warn({ event: 'config_warning', variable: warning.variable }, `${warning.variable} ${warning.message}`);
  if (command === 'serve') {
    const broker = await createBroker({ config, log });
    stopOnSignals(() => broker.stop(), log);
    reloadPolicyOnHangup(broker.policy, log);
    return;
  }
  const demo = await startDemo(config, log, { keepDataDir: env.BROKER_DATA_DIR !== undefined });
  stopOnSignals(() => demo.stop(), log);
  process.stderr.write(
    [
      '',
      'forgejo-mcp-broker demo is running.',
      `  MCP server URL for your client: ${new URL(MCP_PATH, config.publicUrl).href}`,
      `  Client setup:                    ${config.publicUrl.href}`,
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
