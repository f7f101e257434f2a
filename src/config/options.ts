/**
 * The one table of settings. `loadConfig` takes each default from it, the
 * command line accepts exactly its flags, and `--help` prints it; the
 * README's configuration table is checked against it by a test.
 */
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

export const OPTIONS = [
  {
    name: 'forgejo-url',
    variable: 'FORGEJO_URL',
    value: 'url',
    defaultText: 'none (demo)',
    meaning: 'Base URL of the Forgejo instance.',
    alsoKnownAs: ['forgejo', 'forge'],
  },
  {
    name: 'forgejo-client-id',
    variable: 'FORGEJO_CLIENT_ID',
    value: 'id',
    defaultText: 'required with FORGEJO_URL',
    meaning: "The client id of the broker's OAuth2 application at Forgejo.",
    alsoKnownAs: ['client-id'],
  },
  {
    name: 'forgejo-client-secret',
    variable: 'FORGEJO_CLIENT_SECRET',
    value: 'secret',
    defaultText: 'required with FORGEJO_URL',
    meaning: 'Its client secret.',
    alsoKnownAs: ['client-secret', 'secret'],
  },
  {
    name: 'forgejo-scopes',
    variable: 'FORGEJO_SCOPES',
    value: 'scopes',
    defaultText: 'empty (full access)',
    meaning: 'Scope string asked of Forgejo on every login; never change it once users signed in.',
    alsoKnownAs: ['scopes', 'scope'],
  },
  {
    name: 'public-url',
    variable: 'BROKER_PUBLIC_URL',
    value: 'url',
    defaultText: 'http://<listen>',
    meaning: 'Public origin of the broker (no path): the OAuth issuer; <public>/mcp is the MCP URL.',
    alsoKnownAs: ['url', 'issuer', 'base-url', 'external-url'],
  },
  {
    name: 'listen',
    variable: 'BROKER_LISTEN',
    value: 'host:port',
    default: '127.0.0.1:8080',
    meaning: 'Address to listen on.',
    alsoKnownAs: ['port', 'host', 'bind', 'address', 'addr'],
  },
  {
    name: 'metrics-listen',
    variable: 'BROKER_METRICS_LISTEN',
    value: 'host:port',
    defaultText: 'none (/metrics on BROKER_LISTEN)',
    meaning: 'Serve /metrics on this address instead of the public one.',
    alsoKnownAs: ['metrics', 'metrics-port'],
  },
  {
    name: 'data-dir',
    variable: 'BROKER_DATA_DIR',
    value: 'path',
    default: './data',
    meaning: 'SQLite database and the generated encryption key.',
    alsoKnownAs: ['data', 'state-dir', 'dir'],
  },
  {
    name: 'database-url',
    variable: 'BROKER_DATABASE_URL',
    value: 'url',
    defaultText: 'none (SQLite in the data directory)',
    meaning: 'postgres:// URL: keep state in PostgreSQL, shared by replicas (needs BROKER_ENCRYPTION_KEY).',
    alsoKnownAs: ['database', 'db', 'postgres'],
  },
  {
    name: 'encryption-key',
    variable: 'BROKER_ENCRYPTION_KEY',
    value: 'key',
    defaultText: 'generated into <data>/encryption.key (mode 0600)',
    meaning: 'AES-256-GCM key for Forgejo tokens at rest (replicas derive their forwarding key from it): 32 bytes, hex or base64.',
    alsoKnownAs: ['key'],
  },
  {
    name: 'replica-url',
    variable: 'BROKER_REPLICA_URL',
    value: 'url',
    defaultText: 'none',
    meaning: "This replica's own base URL as the other replicas reach it (http(s), origin only), e.g. http://10.0.0.5:8080.",
    alsoKnownAs: ['advertise-url', 'internal-url', 'peer-url'],
  },
  {
    name: 'child-command',
    variable: 'BROKER_CHILD_COMMAND',
    value: 'command',
    default: 'forgejo-mcp --transport stdio',
    meaning: "The child's command line, split like a shell would, never run through one.",
    alsoKnownAs: ['command', 'forgejo-mcp', 'child'],
  },
  {
    name: 'child-env-allow',
    variable: 'BROKER_CHILD_ENV_ALLOW',
    value: 'names',
    defaultText: 'empty',
    meaning: 'Extra environment variable names passed to children (comma-separated).',
  },
  {
    name: 'upstream-command',
    variable: 'BROKER_UPSTREAM_COMMAND',
    value: 'command',
    defaultText: 'none (a child per session)',
    meaning:
      'Shared mode: one multi-tenant forgejo-mcp over HTTP, started by the broker; {port} is replaced by a free loopback port. Example: forgejo-mcp --transport http --http-port {port}.',
    alsoKnownAs: ['upstream'],
  },
  {
    name: 'upstream-processes',
    variable: 'BROKER_UPSTREAM_PROCESSES',
    value: 'count',
    default: '1',
    meaning: 'Shared mode: how many upstream processes BROKER_UPSTREAM_COMMAND runs; users are spread over them.',
  },
  {
    name: 'upstream-url',
    variable: 'BROKER_UPSTREAM_URL',
    value: 'url',
    defaultText: 'none',
    meaning: 'Shared mode with an upstream someone else runs (a sidecar): its MCP URL, e.g. http://127.0.0.1:8081/mcp.',
  },
  {
    name: 'shared-upstream',
    variable: 'BROKER_DEMO_SHARED_UPSTREAM',
    value: undefined,
    default: 'false',
    meaning: '`demo` only: run the stand-in forgejo-mcp as one shared HTTP upstream instead of a child per session.',
  },
  {
    name: 'max-sessions',
    variable: 'BROKER_MAX_SESSIONS',
    value: 'count',
    default: '500',
    meaning: 'Sessions at once; beyond it 503. 0: unlimited.',
  },
  {
    name: 'max-sessions-per-user',
    variable: 'BROKER_MAX_SESSIONS_PER_USER',
    value: 'count',
    default: '16',
    meaning: 'Sessions at once per user. 0: unlimited.',
  },
  {
    name: 'idle-timeout',
    variable: 'BROKER_IDLE_TIMEOUT',
    value: 'duration',
    default: '15m',
    meaning: 'A session unused this long is ended.',
  },
  {
    name: 'init-timeout',
    variable: 'BROKER_INIT_TIMEOUT',
    value: 'duration',
    default: '30s',
    meaning: 'A new session must be initialised and used again within this long.',
  },
  {
    name: 'reap-interval',
    variable: 'BROKER_REAP_INTERVAL',
    value: 'duration',
    default: '30s',
    meaning: 'How often idle sessions are looked for.',
  },
  {
    name: 'rotate-interval',
    variable: 'BROKER_ROTATE_INTERVAL',
    value: 'duration',
    default: '1m',
    meaning: 'How often Forgejo tokens are checked for refresh.',
  },
  {
    name: 'refresh-lead',
    variable: 'BROKER_REFRESH_LEAD',
    value: 'duration',
    default: '5m',
    meaning: 'Refresh a Forgejo token this long before it expires.',
  },
  {
    name: 'forgejo-refresh-timeout',
    variable: 'BROKER_FORGEJO_REFRESH_TIMEOUT',
    value: 'duration',
    default: '30s',
    meaning: 'How long a refresh at Forgejo may take.',
  },
  {
    name: 'request-timeout',
    variable: 'BROKER_REQUEST_TIMEOUT',
    value: 'duration',
    default: '5m',
    meaning: "Longest wait for a child's answer (progress restarts it).",
  },
  {
    name: 'drain-grace',
    variable: 'BROKER_DRAIN_GRACE',
    value: 'duration',
    default: '30s',
    meaning: 'After a token rotation, how long requests on the old child may take.',
  },
  {
    name: 'shutdown-grace',
    variable: 'BROKER_SHUTDOWN_GRACE',
    value: 'duration',
    default: '10s',
    meaning: 'On SIGTERM/SIGINT, how long in-flight requests may take.',
  },
  {
    name: 'child-stop-grace',
    variable: 'BROKER_CHILD_STOP_GRACE',
    value: 'duration',
    default: '3s',
    meaning: "Between closing a child's stdin, SIGTERM and SIGKILL.",
  },
  {
    name: 'max-body-bytes',
    variable: 'BROKER_MAX_BODY_BYTES',
    value: 'bytes',
    default: '4194304',
    meaning: 'Largest POST body on /mcp (413 beyond).',
  },
  {
    name: 'headers-timeout',
    variable: 'BROKER_HEADERS_TIMEOUT',
    value: 'duration',
    default: '10s',
    meaning: "A request's headers must arrive within this (408 beyond).",
  },
  {
    name: 'body-timeout',
    variable: 'BROKER_BODY_TIMEOUT',
    value: 'duration',
    default: '60s',
    meaning: 'The whole request must arrive within this (408 beyond); responses are not bounded.',
  },
  {
    name: 'allowed-origins',
    variable: 'BROKER_ALLOWED_ORIGINS',
    value: 'origins',
    defaultText: 'empty',
    meaning: "Browser origins besides the public URL's allowed on /mcp (comma-separated).",
  },
  {
    name: 'access-token-ttl',
    variable: 'BROKER_ACCESS_TOKEN_TTL',
    value: 'duration',
    default: '1h',
    meaning: 'Lifetime of broker access tokens.',
  },
  {
    name: 'refresh-token-ttl',
    variable: 'BROKER_REFRESH_TOKEN_TTL',
    value: 'duration',
    default: '720h',
    meaning: 'Lifetime of broker refresh tokens.',
  },
  {
    name: 'refresh-grace',
    variable: 'BROKER_REFRESH_GRACE',
    value: 'duration',
    defaultText: 'the refresh token lifetime',
    meaning: 'How long a rotated refresh token still yields its unused successor. 0: strict reuse detection.',
  },
  {
    name: 'unused-client-ttl',
    variable: 'BROKER_UNUSED_CLIENT_TTL',
    value: 'duration',
    default: '24h',
    meaning: 'Registered clients that never signed in are removed after this.',
  },
  {
    name: 'cimd-allow-private',
    variable: 'BROKER_CIMD_ALLOW_PRIVATE',
    value: undefined,
    default: 'false',
    meaning: 'Development only: fetch client metadata documents from private addresses and over http.',
  },
  {
    name: 'cimd',
    variable: 'BROKER_CIMD',
    value: 'on|off',
    default: 'on',
    meaning: 'Advertise and accept Client ID Metadata Documents; off: clients register instead.',
  },
  {
    name: 'max-unused-clients',
    variable: 'BROKER_MAX_UNUSED_CLIENTS',
    value: 'count',
    default: '10000',
    meaning: 'Registered clients that never signed in, at most (429 beyond). 0: no limit.',
  },
  {
    name: 'rate-limit',
    variable: 'BROKER_RATE_LIMIT',
    value: 'count',
    default: '60',
    meaning: 'Requests per minute per client address on each authorization endpoint group; each of N live replicas enforces 1/N.',
  },
  {
    name: 'trusted-proxies',
    variable: 'BROKER_TRUSTED_PROXIES',
    value: 'addresses',
    defaultText: 'empty',
    meaning: 'Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the client.',
    alsoKnownAs: ['proxies', 'trust-proxy'],
  },
  {
    name: 'audit',
    variable: 'BROKER_AUDIT',
    value: 'on|off',
    default: 'on',
    meaning: "Record every tools/call, sign-in, consent, revocation and refresh failure in the store's audit log.",
  },
  {
    name: 'audit-arguments',
    variable: 'BROKER_AUDIT_ARGUMENTS',
    value: undefined,
    default: 'false',
    meaning: "Keep tool calls' arguments in the audit log (values of secret-looking keys redacted); otherwise only their SHA-256.",
  },
  {
    name: 'audit-retention',
    variable: 'BROKER_AUDIT_RETENTION',
    value: 'duration',
    default: '90d',
    meaning: 'Audit records older than this are deleted, in the background.',
  },
  {
    name: 'tools-allow',
    variable: 'BROKER_TOOLS_ALLOW',
    value: 'globs',
    defaultText: 'every tool',
    meaning: 'Only tools matching one of these comma-separated globs (* and ?) are listed and callable.',
  },
  {
    name: 'tools-deny',
    variable: 'BROKER_TOOLS_DENY',
    value: 'globs',
    defaultText: 'none',
    meaning: 'Tools matching one of these globs are hidden and refused; deny wins over allow.',
  },
  {
    name: 'tools-preset',
    variable: 'BROKER_TOOLS_PRESET',
    value: 'preset',
    defaultText: 'none',
    meaning: "read-only: only forgejo-mcp's read tools (get_*, list_*, search_* and the like, an exact list).",
  },
  {
    name: 'policy-file',
    variable: 'BROKER_POLICY_FILE',
    value: 'path',
    defaultText: 'none',
    meaning: 'JSON file of per-user and per-team tool rules; checked at start, reloaded on SIGHUP.',
  },
  {
    name: 'policy-applies-to',
    variable: 'BROKER_POLICY_APPLIES_TO',
    value: 'kinds',
    default: 'tools',
    meaning: 'What the allow and deny globs filter: tools, and also prompts (by name) and resources (by URI) when listed.',
  },
  {
    name: 'log-level',
    variable: 'BROKER_LOG_LEVEL',
    value: 'level',
    default: 'info',
    meaning: 'trace, debug, info, warn, error, fatal or silent.',
    alsoKnownAs: ['log', 'loglevel', 'level'],
  },
] as const satisfies readonly OptionSpec[];

export type Variable = (typeof OPTIONS)[number]['variable'];

const BY_VARIABLE: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((option: OptionSpec) => [option.variable, option]));

export function optionOf(variable: Variable): OptionSpec {
  return BY_VARIABLE.get(variable) as OptionSpec;
}

/** The default as the README and `--help` show it. */
export function shownDefault(option: OptionSpec): string {
  return option.default ?? option.defaultText ?? '';
}
