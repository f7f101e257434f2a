import { ConfigError, loadConfig, type Env } from '../config/config.js';
import { parseCommandLine } from '../config/command-line.js';
import { errorMessage } from '../errors/errors.js';
import { createLogger } from '../log/logger.js';
import { parseAdminArguments } from './arguments.js';
import { audit } from './audit.js';
import { clients, grants, purgeClients, revoke, users, type AdminCommand } from './commands.js';
import { openAdminStore } from './open-store.js';
import { jsonDocument } from './render.js';

/** The admin commands, by name. */
export const ADMIN_COMMANDS: Readonly<Record<string, AdminCommand>> = {
  users,
  clients,
  grants,
  revoke,
  'purge-clients': purgeClients,
  audit,
};

export interface AdminOutput {
  write(text: string): void;
}

/** Exit statuses: 0 done, 1 it failed (unknown user, store unreachable), 2 the command line or configuration is wrong. */
export type AdminExit = 0 | 1 | 2;

/**
 * `forgejo-mcp-broker admin <command> [flags]`: opens the store `serve` would
 * open with the same configuration (flags and variables alike), runs one
 * command, closes it. No broker starts.
 */
export async function runAdmin(argv: readonly string[], env: Env, stdout: AdminOutput, stderr: AdminOutput): Promise<AdminExit> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    stderr.write(adminUsage());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    stdout.write(adminUsage());
    return 0;
  }
  const command = ADMIN_COMMANDS[name];
  if (command === undefined) {
    stderr.write(`forgejo-mcp-broker: unknown admin command "${name}": the commands are ${Object.keys(ADMIN_COMMANDS).join(', ')}\n`);
    return 2;
  }
  let config;
  let args;
  try {
    args = parseAdminArguments(name, rest, command.flags);
    if (args.help) {
      stdout.write(commandUsage(name, command));
      return 0;
    }
    const commandLine = parseCommandLine(args.configArgs, env);
    if (commandLine.action !== 'run') throw new ConfigError('command line', 'give --help or --version before admin, not after');
    config = loadConfig(commandLine.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    stderr.write(`forgejo-mcp-broker: ${error.message}\n`);
    return 2;
  }
  // Logs (a key file narrowed, a lost connection) go to stderr, so stdout stays the command's answer.
  const log = createLogger(config.logLevel, process.stderr);
  try {
    const store = await openAdminStore(config, log);
    try {
      const result = await command.run({ store, now: Date.now }, args);
      stdout.write(args.flags.has('json') ? jsonDocument(result.json) : result.text);
      return 0;
    } finally {
      await store.close();
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      stderr.write(`forgejo-mcp-broker: ${error.message}\n`);
      return 2;
    }
    stderr.write(`forgejo-mcp-broker admin ${name}: ${errorMessage(error)}\n`);
    return 1;
  }
}

/** `admin --help`. */
export function adminUsage(): string {
  const names = Object.keys(ADMIN_COMMANDS);
  const width = Math.max(...names.map((name) => name.length)) + 2;
  return [
    'Usage: forgejo-mcp-broker admin <command> [options]',
    '',
    "Reads and changes the broker's store without starting a broker, with the configuration",
    '`serve` uses: --data-dir / BROKER_DATA_DIR (SQLite), or --database-url / BROKER_DATABASE_URL',
    'with --encryption-key / BROKER_ENCRYPTION_KEY (PostgreSQL). Every command takes --json.',
    '',
    'Commands:',
    ...names.map((name) => `  ${name.padEnd(width)}${(ADMIN_COMMANDS[name] as AdminCommand).summary}`),
    '',
    'forgejo-mcp-broker admin <command> --help describes one command.',
    '',
  ].join('\n');
}

function commandUsage(name: string, command: AdminCommand): string {
  return [
    `Usage: forgejo-mcp-broker admin ${command.synopsis}`,
    '',
    command.summary,
    '',
    ...command.details,
    '--json  Print one JSON document instead of a table.',
    '',
    `Configuration flags (--data-dir, --database-url, --encryption-key, …) are those of serve; admin ${name} opens the store only.`,
    '',
  ].join('\n');
}
