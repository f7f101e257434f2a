import { unknownFlag } from '../config/command-line.js';
import { ConfigError } from '../config/config.js';
import { parseDuration } from '../config/duration.js';
import { OPTIONS, type OptionSpec } from '../config/options.js';

/** The flags the admin commands take besides the configuration's; each command says which of them it accepts. */
export type AdminFlag = 'json' | 'user' | 'client' | 'grant' | 'all' | 'older-than' | 'tool' | 'since' | 'limit';

/** Flags that take a value, and what it looks like (for errors and --help). */
export const VALUE_FLAGS: Readonly<Partial<Record<AdminFlag, string>>> = {
  user: 'login',
  client: 'id',
  grant: 'id',
  'older-than': 'duration',
  tool: 'glob',
  since: 'duration',
  limit: 'count',
};

const ADMIN_FLAGS = new Set<string>(['json', 'user', 'client', 'grant', 'all', 'older-than', 'tool', 'since', 'limit']);
const CONFIG_OPTIONS: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((option: OptionSpec) => [option.name, option]));

export interface AdminArguments {
  /** The admin flags given, by name (`true` for a switch). */
  readonly flags: ReadonlyMap<AdminFlag, string | true>;
  /** The configuration flags (`--data-dir x`, …), left for the command line parser `serve` uses. */
  readonly configArgs: readonly string[];
  readonly help: boolean;
}

/**
 * Reads `[--flag value | --flag=value | --switch] …` after `admin <command>`.
 * Admin flags the command does not take, a flag given twice, a missing
 * value and a stray word are ConfigErrors naming what is wrong; anything
 * else starting with `--` is a configuration flag, checked by the
 * command line parser `serve` uses.
 */
export function parseAdminArguments(command: string, argv: readonly string[], accepted: readonly AdminFlag[]): AdminArguments {
  const flags = new Map<AdminFlag, string | true>();
  const configArgs: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      throw new ConfigError('command line', `unexpected argument "${arg}" for admin ${command}; flags are written --name value`);
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!ADMIN_FLAGS.has(name)) {
      const option = CONFIG_OPTIONS.get(name);
      if (option === undefined) throw unknownFlag(arg.slice(0, eq === -1 ? undefined : eq));
      configArgs.push(arg);
      // A configuration flag's value travels with it.
      if (eq === -1 && option.value !== undefined && argv[i + 1] !== undefined) configArgs.push(argv[++i] as string);
      continue;
    }
    const flag = name as AdminFlag;
    if (!accepted.includes(flag)) {
      throw new ConfigError(`--${flag}`, `is not an option of admin ${command} (forgejo-mcp-broker admin ${command} --help)`);
    }
    if (flags.has(flag)) throw new ConfigError(`--${flag}`, 'is given twice');
    const wanted = VALUE_FLAGS[flag];
    if (wanted === undefined) {
      if (eq !== -1) throw new ConfigError(`--${flag}`, 'takes no value');
      flags.set(flag, true);
      continue;
    }
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '' || (eq === -1 && value.startsWith('--'))) {
      throw new ConfigError(`--${flag}`, `needs a value (${wanted}), as in --${flag} <${wanted}>`);
    }
    flags.set(flag, value);
  }
  return { flags, configArgs, help };
}

/** A duration flag's value in milliseconds (`30s`, `1h`, `0`). */
export function durationFlag(args: AdminArguments, flag: AdminFlag, fallbackMs: number): number {
  const text = args.flags.get(flag);
  if (text === undefined || text === true) return fallbackMs;
  const ms = text.trim() === '0' ? 0 : parseDuration(text);
  if (ms === undefined) throw new ConfigError(`--${flag}`, `"${text}" is not a duration (as 30s, 15m, 1h, 1h30m)`);
  return ms;
}

/** A value flag's text, undefined when not given. */
export function valueFlag(args: AdminArguments, flag: AdminFlag): string | undefined {
  const value = args.flags.get(flag);
  return value === true ? undefined : value;
}
