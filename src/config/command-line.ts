import { ConfigError, type Env } from './config.js';
import { OPTIONS, shownDefault, type OptionSpec } from './options.js';

type Command = 'serve' | 'demo';

/** What the command line asks for. */
export type CommandLine =
  | { readonly action: 'help' }
  | { readonly action: 'version' }
  /** Run a command with the environment the flags amended (flags win over variables). */
  | { readonly action: 'run'; readonly command: Command; readonly env: Env };

/** Flags that are not settings. */
const HELP_FLAGS = ['--help', '-h'];
const VERSION_FLAG = '--version';
const VERBOSE_FLAGS = ['--verbose', '-v'];
const SWITCH_WORDS = new Set(['true', 'false', 'yes', 'no', 'on', 'off', '1', '0']);

const BY_NAME: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((option: OptionSpec) => [option.name, option]));

/**
 * Reads `[serve|demo] [--name value | --name=value | --switch] ...`. Every
 * mistake is a ConfigError naming the flag: an unknown one (with the nearest
 * valid name), a missing value, a stray argument, and a flag npm kept for
 * itself because it came without `--`.
 */
export function parseCommandLine(argv: readonly string[], env: Env): CommandLine {
  const merged: Record<string, string | undefined> = { ...env };
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (HELP_FLAGS.includes(arg)) return { action: 'help' };
    if (arg === VERSION_FLAG) return { action: 'version' };
    if (VERBOSE_FLAGS.includes(arg)) {
      merged.BROKER_LOG_LEVEL = 'debug';
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const option = flag.startsWith('--') ? BY_NAME.get(flag.slice(2)) : undefined;
    if (option === undefined) throw unknownFlag(flag);
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (option.value === undefined) {
      // A switch stands alone, or takes a following true/false word.
      const next = argv[i + 1];
      if (next !== undefined && SWITCH_WORDS.has(next.toLowerCase())) value = argv[++i];
      else value = 'true';
    } else {
      value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) {
        throw new ConfigError(flag, `needs a value (${option.value}), as in ${flag} ${example(option)} or ${flag}=${example(option)}`);
      }
      i++;
    }
    merged[option.variable] = value;
  }
  swallowedByNpm(env);
  if (positional.length > 1) {
    throw new ConfigError(
      'command line',
      `unexpected argument "${positional[1] as string}" after the command "${positional[0] as string}"; flags are written --name value`,
    );
  }
  const command = positional[0] ?? (merged.FORGEJO_URL === undefined || merged.FORGEJO_URL.trim() === '' ? 'demo' : 'serve');
  if (command !== 'serve' && command !== 'demo') {
    throw new ConfigError(
      'command line',
      `unknown command "${command}": the commands are serve, demo and admin (forgejo-mcp-broker --help lists every option)`,
    );
  }
  return { action: 'run', command, env: merged };
}

/**
 * `npm start --listen x` without `--`: npm keeps `--listen` as its own
 * setting (npm_config_listen) and hands the broker only `x`, or nothing for
 * `--listen=x`. Either way the broker would start with other settings than asked.
 */
function swallowedByNpm(env: Env): void {
  if (env.npm_lifecycle_event === undefined) return;
  const kept = OPTIONS.find((option: OptionSpec) => env[`npm_config_${option.name.replaceAll('-', '_')}`] !== undefined);
  if (kept === undefined) return;
  throw new ConfigError(
    `--${kept.name}`,
    `npm took this flag for itself and the broker never saw it; put -- before the broker's flags: npm start -- --${kept.name} ${example(kept)}`,
  );
}

/** The error for a flag no table knows, with the nearest valid one. */
export function unknownFlag(flag: string): ConfigError {
  const nearest = nearestFlag(flag.replace(/^-+/, ''));
  const hint = nearest === undefined ? '' : `; did you mean ${nearest}?`;
  return new ConfigError(flag, `unknown option${hint} (forgejo-mcp-broker --help lists every option)`);
}

/**
 * The valid flag closest to a mistyped one: one people reach for under
 * another name (`--port` is `--listen`), one whose name holds it as a word
 * (`--scopes`), or a small edit away (`--lisen`). Undefined when nothing is close.
 */
function nearestFlag(typed: string): string | undefined {
  const wanted = typed.toLowerCase();
  const known = OPTIONS.find((option: OptionSpec) => option.alsoKnownAs?.includes(wanted));
  if (known !== undefined) return `--${known.name}`;
  const names = [...OPTIONS.map((option: OptionSpec) => option.name), 'help', 'version', 'verbose'];
  const wholeWord = names.find((name) => `-${name}-`.includes(`-${wanted}-`));
  if (wholeWord !== undefined) return `--${wholeWord}`;
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(wanted.length / 3)) + 1;
  for (const name of names) {
    const distance = editDistance(wanted, name);
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best === undefined ? undefined : `--${best}`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}

function example(option: OptionSpec): string {
  return option.default ?? `<${option.value ?? 'true'}>`;
}

/** `--help`: the commands, then every option of the table. */
export function usage(): string {
  const lines = [
    'Usage: forgejo-mcp-broker [serve|demo] [options]',
    '       forgejo-mcp-broker admin <command> [options]',
    '       npm start -- [serve|demo] [options]    (npm needs the -- to pass options on)',
    '',
    'Commands:',
    '  serve   Run the broker in front of the Forgejo at FORGEJO_URL (the default when it is set).',
    '  demo    Run the broker with an embedded Forgejo stand-in and stand-in forgejo-mcp',
    '          (the default when FORGEJO_URL is not set).',
    '  admin   List users, clients and grants, revoke access, purge unused clients, on the',
    '          store of this configuration (forgejo-mcp-broker admin --help).',
    '',
    'Options: each sets the environment variable named beside it, and wins over it.',
    'Write --name value or --name=value; durations as 500ms, 30s, 15m, 1h30m.',
    '',
  ];
  for (const option of OPTIONS as readonly OptionSpec[]) {
    const flag = option.value === undefined ? `--${option.name}` : `--${option.name} <${option.value}>`;
    lines.push(`  ${flag.padEnd(40)}${option.variable}`);
    const fallback = shownDefault(option);
    lines.push(`      ${option.meaning}${fallback === '' ? '' : ` [default: ${fallback}]`}`);
  }
  lines.push(
    '',
    'Other flags:',
    '  -h, --help                              Print this help.',
    '  --version                               Print the version.',
    '  -v, --verbose                           Log at debug level (BROKER_LOG_LEVEL=debug).',
    '',
  );
  return lines.join('\n');
}
