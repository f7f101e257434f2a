/** The reading of single settings, shared by every part of the configuration. */
import { parseDuration } from './duration.js';
import { optionOf, type Variable } from './options.js';

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

export function flag(env: Env, name: Variable): boolean {
  const text = setting(env, name)?.toLowerCase();
  if (text === undefined || text === 'false' || text === '0' || text === 'no') return false;
  if (text === 'true' || text === '1' || text === 'yes') return true;
  throw new ConfigError(name, `"${text}" is not true or false`);
}

export function onOff(env: Env, name: Variable): boolean {
  const text = setting(env, name)?.toLowerCase();
  if (text === 'on') return true;
  if (text === 'off') return false;
  return flag(env, name);
}

export function optional<T>(env: Env, name: Variable, parse: (name: Variable, text: string) => T): T | undefined {
  const text = read(env, name);
  return text === undefined ? undefined : parse(name, text);
}

export function read(env: Env, name: Variable): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** The configured value, else the table's default. */
export function setting(env: Env, name: Variable): string | undefined {
  return read(env, name) ?? optionOf(name).default;
}

export function list(env: Env, name: Variable): string[] {
  return (read(env, name) ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

export function duration(env: Env, name: Variable, zeroAllowed = false): number {
  const text = setting(env, name) ?? '';
  if (zeroAllowed && text === '0') return 0;
  const ms = parseDuration(text);
  if (ms === undefined || (ms <= 0 && !(zeroAllowed && ms === 0))) {
    throw new ConfigError(name, `"${text}" is not a duration (use forms like 500ms, 30s, 15m, 1h)`);
  }
  return ms;
}

export function count(env: Env, name: Variable, min = 0): number {
  const text = setting(env, name) ?? '';
  if (!/^\d+$/.test(text) || Number(text) < min || !Number.isSafeInteger(Number(text))) {
    throw new ConfigError(name, `"${text}" is not a whole number${min > 0 ? ` of at least ${min}` : ''}`);
  }
  return Number(text);
}
