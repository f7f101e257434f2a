import type { PolicyKind, ToolPreset } from '../config/governance.js';
import { globMatcher } from './glob.js';
import { READ_ONLY_TOOLS } from './read-only.js';

/** One rule as configured: variables, or one entry of the policy file. */
export interface RuleSpec {
  /** How refusals name it: `BROKER_TOOLS_DENY`, `policy file rule "maintainers"`. */
  readonly source: string;
  /** Only names matching one of these; undefined: every name. */
  readonly allow?: readonly string[] | undefined;
  readonly deny?: readonly string[] | undefined;
  /** Tools only: the preset's names and no others. */
  readonly preset?: ToolPreset | undefined;
}

interface CompiledRule {
  readonly spec: RuleSpec;
  readonly allow: ((name: string) => boolean) | undefined;
  readonly deny: (name: string) => boolean;
}

/**
 * What one caller may use: every rule that applies to them, all of which must
 * let a name through (a deny anywhere wins). Kinds other than tools are
 * filtered only when the operator listed them in BROKER_POLICY_APPLIES_TO, and
 * only by allow and deny (a preset names tools).
 */
export class ToolFilter {
  readonly #rules: readonly CompiledRule[];
  readonly #kinds: ReadonlySet<PolicyKind>;

  constructor(rules: readonly RuleSpec[], kinds: readonly PolicyKind[]) {
    this.#rules = rules.map((spec) => ({
      spec,
      allow: spec.allow === undefined ? undefined : globMatcher(spec.allow),
      deny: globMatcher(spec.deny ?? []),
    }));
    this.#kinds = new Set(kinds);
  }

  /** Whether anything is filtered at all (the fronts skip the work otherwise). */
  get restricts(): boolean {
    return this.#rules.some((rule) => rule.allow !== undefined || rule.spec.preset !== undefined || (rule.spec.deny ?? []).length > 0);
  }

  /** Whether this kind of name is filtered. */
  filters(kind: PolicyKind): boolean {
    return this.#kinds.has(kind) && this.restricts;
  }

  /** The source of the rule that refuses the name, or undefined when it may be used. */
  refusedBy(kind: PolicyKind, name: string): string | undefined {
    if (!this.#kinds.has(kind)) return undefined;
    for (const rule of this.#rules) {
      if (rule.deny(name)) return rule.spec.source;
      if (rule.allow !== undefined && !rule.allow(name)) return rule.spec.source;
      if (kind === 'tools' && rule.spec.preset === 'read-only' && !READ_ONLY_TOOLS.has(name)) return rule.spec.source;
    }
    return undefined;
  }

  /** The rules in words, for the consent page: empty when every tool may be used. */
  describe(): string[] {
    const lines: string[] = [];
    for (const { spec } of this.#rules) {
      if (spec.preset === 'read-only') lines.push('Only tools that read (the read-only preset): nothing can be changed on the forge.');
      if (spec.allow !== undefined) lines.push(`Only tools matching ${spec.allow.join(', ')}.`);
      if ((spec.deny ?? []).length > 0) lines.push(`No tools matching ${(spec.deny ?? []).join(', ')}.`);
    }
    return lines;
  }
}
