/** The audit log's and the tool policy's settings. */
import { ConfigError, duration, list, onOff, flag, read, type Env } from './values.js';

export interface AuditConfig {
  /** BROKER_AUDIT: tool calls and security events are recorded in the store. */
  readonly enabled: boolean;
  /** BROKER_AUDIT_ARGUMENTS: arguments kept (secrets redacted), not only their digest. */
  readonly storeArguments: boolean;
  readonly retentionMs: number;
}

/** What the allow and deny globs filter besides tools. */
export type PolicyKind = 'tools' | 'prompts' | 'resources';

export const TOOL_PRESETS = ['read-only'] as const;
export type ToolPreset = (typeof TOOL_PRESETS)[number];

export interface PolicyConfig {
  /** BROKER_TOOLS_ALLOW; undefined: every tool. */
  readonly allow: readonly string[] | undefined;
  readonly deny: readonly string[];
  readonly preset: ToolPreset | undefined;
  /** BROKER_POLICY_FILE: per-user and per-team rules, read at start and on SIGHUP. */
  readonly file: string | undefined;
  readonly appliesTo: readonly PolicyKind[];
}

export function auditConfig(env: Env): AuditConfig {
  return {
    enabled: onOff(env, 'BROKER_AUDIT'),
    storeArguments: flag(env, 'BROKER_AUDIT_ARGUMENTS'),
    retentionMs: duration(env, 'BROKER_AUDIT_RETENTION'),
  };
}

export function policyConfig(env: Env): PolicyConfig {
  const allow = list(env, 'BROKER_TOOLS_ALLOW');
  const preset = read(env, 'BROKER_TOOLS_PRESET');
  if (preset !== undefined && !(TOOL_PRESETS as readonly string[]).includes(preset)) {
    throw new ConfigError('BROKER_TOOLS_PRESET', `"${preset}" is not a preset (known: ${TOOL_PRESETS.join(', ')})`);
  }
  const appliesTo = list(env, 'BROKER_POLICY_APPLIES_TO');
  for (const kind of appliesTo) {
    if (kind !== 'tools' && kind !== 'prompts' && kind !== 'resources')
      throw new ConfigError('BROKER_POLICY_APPLIES_TO', `"${kind}" is not one of tools, prompts, resources`);
  }
  return {
    allow: allow.length === 0 ? undefined : allow,
    deny: list(env, 'BROKER_TOOLS_DENY'),
    preset: preset as ToolPreset | undefined,
    file: read(env, 'BROKER_POLICY_FILE'),
    appliesTo: appliesTo.length === 0 ? ['tools'] : (appliesTo as PolicyKind[]),
  };
}
