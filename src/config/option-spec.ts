/** One setting: its flag, its variable, its default and what it means (options.ts holds the table). */
export interface OptionSpec {
  /** The flag, without its dashes: `--listen`. */
  readonly name: string;
  /** The environment variable the flag overrides. */
  readonly variable: string;
  /** What the value looks like, for `--help`; undefined for a switch, which needs no value. */
  readonly value: string | undefined;
  /** The value used when neither flag nor variable is set; undefined: none. */
  readonly default?: string;
  /** How `--help` and the README describe a default that is no literal value. */
  readonly defaultText?: string;
  readonly meaning: string;
  /** Names people reach for instead of this one (`--port`), so the error can point here. */
  readonly alsoKnownAs?: readonly string[];
}
