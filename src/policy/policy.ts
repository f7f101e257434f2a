import type { Principal } from '../auth/principal.js';
import type { PolicyConfig } from '../config/governance.js';
import type { Logger } from '../log/logger.js';
import { loadPolicyFile, type PolicyFile } from './policy-file.js';
import { ToolFilter, type RuleSpec } from './rules.js';
import type { TeamDirectory } from './teams.js';

/**
 * The tool policy: the variables' rules for everyone, and the policy file's
 * rule for each user (by login, or by Forgejo team). `filterFor` is what a
 * caller may use now; `reload` rereads the file (SIGHUP).
 */
export class ToolPolicy {
  readonly #base: readonly RuleSpec[];
  readonly #config: PolicyConfig;
  readonly #teams: TeamDirectory | undefined;
  readonly #log: Logger;
  #file: PolicyFile | undefined;
  /** Callers without a file rule share one filter. */
  #baseFilter: ToolFilter;
  #byRule = new Map<string, ToolFilter>();

  private constructor(config: PolicyConfig, file: PolicyFile | undefined, teams: TeamDirectory | undefined, log: Logger) {
    this.#config = config;
    this.#teams = teams;
    this.#log = log;
    this.#base = [
      ...(config.preset === undefined ? [] : [{ source: `BROKER_TOOLS_PRESET=${config.preset}`, preset: config.preset }]),
      ...(config.allow === undefined ? [] : [{ source: 'BROKER_TOOLS_ALLOW', allow: config.allow }]),
      ...(config.deny.length === 0 ? [] : [{ source: 'BROKER_TOOLS_DENY', deny: config.deny }]),
    ];
    this.#file = file;
    this.#baseFilter = this.#filter(file?.defaultRule);
  }

  /** The policy the configuration names; a bad policy file is a ConfigError. */
  static async open(config: PolicyConfig, teams: TeamDirectory | undefined, log: Logger): Promise<ToolPolicy> {
    const file = config.file === undefined ? undefined : await loadPolicyFile(config.file);
    return new ToolPolicy(config, file, teams, log);
  }

  /** Whether any rule restricts anything for anyone: without one, the fronts pass requests on untouched. */
  get restricts(): boolean {
    return this.#baseFilter.restricts || this.#byRule.size > 0 || (this.#file?.rules.length ?? 0) > 0;
  }

  /** What this caller may use now. Team rules ask Forgejo (cached briefly). */
  async filterFor(principal: Pick<Principal, 'userId' | 'forgejoLogin'>): Promise<ToolFilter> {
    const rule = await this.#ruleOf(principal);
    if (rule === undefined) return this.#baseFilter;
    let filter = this.#byRule.get(rule.name);
    if (filter === undefined) this.#byRule.set(rule.name, (filter = this.#filter(rule)));
    return filter;
  }

  /** Rereads the policy file; a file that does not pass the checks leaves the current policy in force and rejects. */
  async reload(): Promise<void> {
    if (this.#config.file === undefined) return;
    const file = await loadPolicyFile(this.#config.file);
    this.#file = file;
    this.#baseFilter = this.#filter(file.defaultRule);
    this.#byRule = new Map();
    this.#teams?.clear();
    this.#log.info({ event: 'policy_reloaded', rules: file.rules.length }, 'tool policy reloaded');
  }

  /** The policy for a user in words (the consent page); for a user not known yet, the one for everyone without a rule of their own. */
  async describeFor(user: Pick<Principal, 'userId' | 'forgejoLogin'> | undefined): Promise<{ lines: string[]; mayDiffer: boolean }> {
    if (user === undefined) return { lines: this.#baseFilter.describe(), mayDiffer: (this.#file?.rules.length ?? 0) > 0 };
    return { lines: (await this.filterFor(user)).describe(), mayDiffer: false };
  }

  async #ruleOf(principal: Pick<Principal, 'userId' | 'forgejoLogin'>): Promise<(RuleSpec & { name: string }) | undefined> {
    const rules = this.#file?.rules ?? [];
    if (rules.length === 0) return undefined;
    const login = principal.forgejoLogin.toLowerCase();
    let teams: ReadonlySet<string> | undefined;
    for (const rule of rules) {
      if (rule.users.includes(login)) return rule;
      if (rule.teams.length === 0 || this.#teams === undefined) continue;
      teams ??= await this.#teams.teamsOf(principal.userId);
      if (rule.teams.some((team) => teams?.has(team) === true)) return rule;
    }
    return undefined;
  }

  #filter(fileRule: RuleSpec | undefined): ToolFilter {
    return new ToolFilter(fileRule === undefined ? this.#base : [...this.#base, fileRule], this.#config.appliesTo);
  }
}
