import { readFile } from 'node:fs/promises';
import { ConfigError } from '../config/config.js';
import { TOOL_PRESETS, type ToolPreset } from '../config/governance.js';
import { errorMessage } from '../errors/errors.js';
import type { RuleSpec } from './rules.js';

/**
 * BROKER_POLICY_FILE, JSON:
 *
 *   {
 *     "default": { "preset": "read-only" },
 *     "rules": [
 *       { "name": "maintainers", "teams": ["acme/maintainers"], "users": ["alice"], "allow": ["*"] }
 *     ]
 *   }
 *
 * A user gets the first rule naming their login (`users`) or one of their
 * Forgejo teams (`teams`, as `org/team`), else `default` (absent: nothing
 * more than the variables). A rule has `allow`, `deny` (glob lists) and
 * `preset`, as the variables do; it narrows what they allow, never widens it.
 */
export interface PolicyFile {
  readonly defaultRule: RuleSpec | undefined;
  readonly rules: readonly MatchedRule[];
}

export interface MatchedRule extends RuleSpec {
  readonly name: string;
  /** Forgejo logins, compared case-insensitively (as Forgejo does). */
  readonly users: readonly string[];
  /** `org/team`, case-insensitively. */
  readonly teams: readonly string[];
}

const VARIABLE = 'BROKER_POLICY_FILE';
const RULE_KEYS = new Set(['allow', 'deny', 'preset']);
const MATCHED_KEYS = new Set([...RULE_KEYS, 'name', 'users', 'teams']);

/** Reads and checks the file; every problem is a ConfigError naming the file and the place in it. */
export async function loadPolicyFile(path: string): Promise<PolicyFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(VARIABLE, `cannot read ${path}: ${errorMessage(error)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(VARIABLE, `${path} is not JSON: ${errorMessage(error)}`);
  }
  return parsePolicyFile(json, path);
}

export function parsePolicyFile(json: unknown, path: string): PolicyFile {
  const fail = (where: string, message: string): never => {
    throw new ConfigError(VARIABLE, `${path}: ${where} ${message}`);
  };
  if (!isObject(json)) return fail('the file', 'must hold a JSON object with "default" and/or "rules"');
  for (const key of Object.keys(json)) if (key !== 'default' && key !== 'rules') fail(`"${key}"`, 'is not a known key (default, rules)');
  const defaultRule = json.default === undefined ? undefined : ruleSpec(json.default, '"default"', 'policy file default', RULE_KEYS, fail);
  const rulesJson = json.rules ?? [];
  if (!Array.isArray(rulesJson)) return fail('"rules"', 'must be a list');
  const names = new Set<string>();
  const rules = rulesJson.map((entry: unknown, index): MatchedRule => {
    const where = `rules[${index}]`;
    if (!isObject(entry)) return fail(where, 'must be an object');
    const name = entry.name;
    if (typeof name !== 'string' || name.trim() === '') return fail(`${where}.name`, 'must be a non-empty string');
    if (names.has(name)) fail(`${where}.name`, `"${name}" is used by an earlier rule`);
    names.add(name);
    const users = stringList(entry.users, `${where}.users`, fail) ?? [];
    const teams = stringList(entry.teams, `${where}.teams`, fail) ?? [];
    for (const team of teams) if (!/^[^/\s]+\/[^/\s]+$/.test(team)) fail(`${where}.teams`, `"${team}" is not org/team`);
    if (users.length === 0 && teams.length === 0) fail(where, 'names no users and no teams: it would apply to nobody');
    const spec = ruleSpec(entry, where, `policy file rule "${name}"`, MATCHED_KEYS, fail);
    return { ...spec, name, users: users.map((u) => u.toLowerCase()), teams: teams.map((t) => t.toLowerCase()) };
  });
  return { defaultRule, rules };
}

function ruleSpec(
  json: unknown,
  where: string,
  source: string,
  keys: ReadonlySet<string>,
  fail: (where: string, message: string) => never,
): RuleSpec {
  if (!isObject(json)) return fail(where, 'must be an object');
  for (const key of Object.keys(json)) if (!keys.has(key)) fail(`${where}.${key}`, `is not a known key (${[...keys].join(', ')})`);
  const preset = json.preset;
  if (preset !== undefined && !(typeof preset === 'string' && (TOOL_PRESETS as readonly string[]).includes(preset)))
    fail(`${where}.preset`, `must be one of ${TOOL_PRESETS.join(', ')}`);
  return {
    source,
    allow: stringList(json.allow, `${where}.allow`, fail),
    deny: stringList(json.deny, `${where}.deny`, fail),
    preset: preset as ToolPreset | undefined,
  };
}

function stringList(value: unknown, where: string, fail: (where: string, message: string) => never): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.trim() !== ''))
    return fail(where, 'must be a list of non-empty strings');
  return value as string[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
