import path from 'node:path';
import { parse as parseShellWords } from 'shell-quote';
import { LOG_LEVELS, type LogLevel } from '../log/logger.js';
import { parseAddressRange, type AddressRange } from '../oauth/client-address.js';
import { parseEncryptionKey } from '../store/encryption-key.js';
import type { Variable } from './options.js';
import { ConfigError, count, duration, flag, list, onOff, optional, read, setting, type Env } from './values.js';
import { auditConfig, policyConfig, type AuditConfig, type PolicyConfig } from './governance.js';
import { exposureWarnings, type ConfigWarning } from './warnings.js';

export type { ConfigWarning } from './warnings.js';
export { ConfigError, type Env } from './values.js';

/** The broker's whole configuration, parsed and validated once at start. */
export interface Config {
  /** Forgejo base URL; undefined runs nothing but `demo` (which starts its own stand-in). */
  readonly forgejoUrl: URL | undefined;
  /** Public base URL of the broker (no trailing slash); the OAuth issuer and `/mcp` resource derive from it. */
  readonly publicUrl: URL;
  readonly listen: ListenAddress;
  /** BROKER_METRICS_LISTEN: `/metrics` on a listener of its own, and then not on the public one. */
  readonly metricsListen: ListenAddress | undefined;
  readonly dataDir: string;
  /** PostgreSQL store shared by replicas (`postgres://…`); undefined: SQLite in `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** BROKER_REPLICA_URL: where the other replicas reach this one (an origin); undefined: nobody forwards to it. */
  readonly replicaUrl: URL | undefined;
  /** Origins besides the public URL's own allowed to call `/mcp` from a browser. */
  readonly allowedOrigins: readonly string[];
  /** argv of the child, split like a shell would, never run through one. */
  readonly childCommand: readonly string[];
  /** Extra environment variable names passed through to children (and to upstream processes). */
  readonly childEnvAllow: readonly string[];
  /** Where MCP traffic goes: a child per channel (stdio), or a shared multi-tenant forgejo-mcp over HTTP. */
  readonly upstream: UpstreamConfig;
  /** `demo --shared-upstream`: the demo's stand-in forgejo-mcp runs as one shared HTTP upstream. */
  readonly demoSharedUpstream: boolean;
  readonly maxSessions: number;
  readonly maxSessionsPerUser: number;
  readonly idleTimeoutMs: number;
  /** A new session that does not follow its initialize with another request within this long is ended. */
  readonly initTimeoutMs: number;
  readonly reapIntervalMs: number;
  readonly rotateIntervalMs: number;
  readonly refreshLeadMs: number;
  readonly requestTimeoutMs: number;
  readonly shutdownGraceMs: number;
  /** After a token rotation, how long requests still running on the old child may take. */
  readonly drainGraceMs: number;
  readonly childStopGraceMs: number;
  readonly maxBodyBytes: number;
  /** A request's headers must have arrived this long after it started; then 408 and the connection closes. */
  readonly headersTimeoutMs: number;
  /** The same for the whole request, body included (never the response: SSE streams are not cut). */
  readonly bodyTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly signIn: SignInConfig;
  readonly audit: AuditConfig;
  readonly policy: PolicyConfig;
  /** Settings that work but are probably not what the operator meant; logged at start. */
  readonly warnings: readonly ConfigWarning[];
}

/**
 * `stdio`: a `forgejo-mcp --transport stdio` child per channel, holding the
 * user's token. `command`: the broker runs forgejo-mcp's multi-tenant HTTP
 * mode itself (`{port}` in the argv is replaced). `url`: someone else runs it.
 */
export type UpstreamConfig =
  | { readonly kind: 'stdio' }
  | { readonly kind: 'command'; readonly command: readonly string[]; readonly processes: number }
  | { readonly kind: 'url'; readonly url: URL };

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** The OAuth side: the broker's application at Forgejo and its own token policy. */
export interface SignInConfig {
  readonly forgejoClientId: string | undefined;
  readonly forgejoClientSecret: string | undefined;
  /** Asked of Forgejo on every login, always the same (Forgejo refuses a grant with another scope). */
  readonly forgejoScopes: string;
  /** BROKER_ENCRYPTION_KEY (32 bytes, given as hex or base64); absent: generated into `<dataDir>/encryption.key`. */
  readonly encryptionKey: Buffer | undefined;
  readonly accessTokenTtlMs: number;
  readonly refreshTokenTtlMs: number;
  /**
   * How long a rotated refresh token still yields its successor while the
   * successor is unused (a lost response, a sibling process); 0 disables.
   */
  readonly refreshGraceMs: number;
  /** Registered clients that never completed a sign-in are removed after this long. */
  readonly unusedClientTtlMs: number;
  /** Development only: client metadata documents on loopback and private addresses, over http. */
  readonly cimdAllowPrivate: boolean;
  /** BROKER_CIMD: Client ID Metadata Documents advertised and accepted; off sends clients to registration. */
  readonly metadataDocuments: boolean;
  /** Registered clients that never completed a sign-in, at most; 0 for no limit. */
  readonly maxUnusedClients: number;
  /** Requests per minute per client address on each authorization endpoint group. */
  readonly rateLimitPerMinute: number;
  /** How long a refresh at Forgejo may take before its outcome counts as unknown. */
  readonly forgejoRefreshTimeoutMs: number;
  /** Reverse proxies whose X-Forwarded-For names the client to rate-limit; empty: the header is ignored. */
  readonly trustedProxies: readonly AddressRange[];
}

export function loadConfig(env: Env): Config {
  const listen = parseListen('BROKER_LISTEN', setting(env, 'BROKER_LISTEN') as string);
  const configuredPublicUrl = read(env, 'BROKER_PUBLIC_URL');
  const publicUrl = originUrl('BROKER_PUBLIC_URL', configuredPublicUrl ?? `http://${hostForUrl(listen.host)}:${listen.port}`);
  const forgejo = read(env, 'FORGEJO_URL');
  const metricsListen = read(env, 'BROKER_METRICS_LISTEN');
  return {
    forgejoUrl: forgejo === undefined ? undefined : httpUrl('FORGEJO_URL', forgejo),
    publicUrl,
    listen,
    metricsListen: metricsListen === undefined ? undefined : parseListen('BROKER_METRICS_LISTEN', metricsListen),
    dataDir: path.resolve(setting(env, 'BROKER_DATA_DIR') as string),
    databaseUrl: databaseUrl(env),
    replicaUrl: optional(env, 'BROKER_REPLICA_URL', originUrl),
    allowedOrigins: list(env, 'BROKER_ALLOWED_ORIGINS').map((origin) => httpUrl('BROKER_ALLOWED_ORIGINS', origin).origin),
    childCommand: splitCommand('BROKER_CHILD_COMMAND', setting(env, 'BROKER_CHILD_COMMAND') as string),
    upstream: upstreamConfig(env),
    demoSharedUpstream: flag(env, 'BROKER_DEMO_SHARED_UPSTREAM'),
    childEnvAllow: list(env, 'BROKER_CHILD_ENV_ALLOW'),
    maxSessions: count(env, 'BROKER_MAX_SESSIONS'),
    maxSessionsPerUser: count(env, 'BROKER_MAX_SESSIONS_PER_USER'),
    idleTimeoutMs: duration(env, 'BROKER_IDLE_TIMEOUT'),
    initTimeoutMs: duration(env, 'BROKER_INIT_TIMEOUT'),
    reapIntervalMs: duration(env, 'BROKER_REAP_INTERVAL'),
    rotateIntervalMs: duration(env, 'BROKER_ROTATE_INTERVAL'),
    refreshLeadMs: duration(env, 'BROKER_REFRESH_LEAD'),
    requestTimeoutMs: duration(env, 'BROKER_REQUEST_TIMEOUT'),
    shutdownGraceMs: duration(env, 'BROKER_SHUTDOWN_GRACE'),
    drainGraceMs: duration(env, 'BROKER_DRAIN_GRACE'),
    childStopGraceMs: duration(env, 'BROKER_CHILD_STOP_GRACE'),
    maxBodyBytes: count(env, 'BROKER_MAX_BODY_BYTES', 1),
    ...requestTimeouts(env),
    logLevel: logLevel(setting(env, 'BROKER_LOG_LEVEL') as string),
    signIn: signInConfig(env),
    audit: auditConfig(env),
    policy: policyConfig(env),
    warnings: exposureWarnings(listen, publicUrl, configuredPublicUrl !== undefined),
  };
}

function signInConfig(env: Env): SignInConfig {
  const refreshTokenTtlMs = duration(env, 'BROKER_REFRESH_TOKEN_TTL');
  return {
    forgejoClientId: read(env, 'FORGEJO_CLIENT_ID'),
    forgejoClientSecret: read(env, 'FORGEJO_CLIENT_SECRET'),
    forgejoScopes: env.FORGEJO_SCOPES?.trim() ?? '',
    encryptionKey: encryptionKey(env),
    accessTokenTtlMs: duration(env, 'BROKER_ACCESS_TOKEN_TTL'),
    refreshTokenTtlMs,
    // Unset: as long as a refresh token lives, so an unused successor is always handed to a sibling.
    refreshGraceMs: read(env, 'BROKER_REFRESH_GRACE') === undefined ? refreshTokenTtlMs : duration(env, 'BROKER_REFRESH_GRACE', true),
    unusedClientTtlMs: duration(env, 'BROKER_UNUSED_CLIENT_TTL'),
    cimdAllowPrivate: flag(env, 'BROKER_CIMD_ALLOW_PRIVATE'),
    metadataDocuments: onOff(env, 'BROKER_CIMD'),
    maxUnusedClients: count(env, 'BROKER_MAX_UNUSED_CLIENTS'),
    rateLimitPerMinute: count(env, 'BROKER_RATE_LIMIT', 1),
    forgejoRefreshTimeoutMs: duration(env, 'BROKER_FORGEJO_REFRESH_TIMEOUT'),
    trustedProxies: list(env, 'BROKER_TRUSTED_PROXIES').map((entry) => addressRange('BROKER_TRUSTED_PROXIES', entry)),
  };
}

/** Whether the configuration can sign users in at a real Forgejo (else only `demo` runs). */
export function requireForgejo(config: Config): { forgejoUrl: URL; clientId: string; clientSecret: string } {
  if (config.forgejoUrl === undefined) throw new ConfigError('FORGEJO_URL', 'is required (or run `forgejo-mcp-broker demo`)');
  if (config.signIn.forgejoClientId === undefined)
    throw new ConfigError('FORGEJO_CLIENT_ID', "is required: the client id of the broker's OAuth2 application at Forgejo");
  if (config.signIn.forgejoClientSecret === undefined)
    throw new ConfigError('FORGEJO_CLIENT_SECRET', "is required: the client secret of the broker's OAuth2 application at Forgejo");
  return { forgejoUrl: config.forgejoUrl, clientId: config.signIn.forgejoClientId, clientSecret: config.signIn.forgejoClientSecret };
}

/**
 * BROKER_DATABASE_URL, checked without ever echoing it (it may carry a
 * password). Replicas must all seal Forgejo tokens with one key, so the key
 * must be configured rather than generated into each replica's data directory.
 */
function databaseUrl(env: Env): string | undefined {
  const text = read(env, 'BROKER_DATABASE_URL');
  if (text === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError('BROKER_DATABASE_URL', 'is not a URL (expected postgres://user:password@host:5432/database)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError('BROKER_DATABASE_URL', `must be a postgres:// or postgresql:// URL, not ${url.protocol}//`);
  }
  if (read(env, 'BROKER_ENCRYPTION_KEY') === undefined) {
    throw new ConfigError(
      'BROKER_ENCRYPTION_KEY',
      'is required with BROKER_DATABASE_URL: every replica must seal Forgejo tokens with the same key',
    );
  }
  return text;
}

function encryptionKey(env: Env): Buffer | undefined {
  const text = read(env, 'BROKER_ENCRYPTION_KEY');
  if (text === undefined) return undefined;
  const key = parseEncryptionKey(text);
  if (key === undefined)
    throw new ConfigError('BROKER_ENCRYPTION_KEY', 'must be 32 bytes, as 64 hex digits or base64 (make one with: openssl rand -hex 32)');
  return key;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Node refuses a headers timeout longer than the whole request's: so does the broker, naming the variable. */
function requestTimeouts(env: Env): { headersTimeoutMs: number; bodyTimeoutMs: number } {
  const headersTimeoutMs = duration(env, 'BROKER_HEADERS_TIMEOUT');
  const bodyTimeoutMs = duration(env, 'BROKER_BODY_TIMEOUT');
  if (headersTimeoutMs > bodyTimeoutMs) {
    throw new ConfigError(
      'BROKER_HEADERS_TIMEOUT',
      `must not be longer than BROKER_BODY_TIMEOUT (${bodyTimeoutMs} ms), which bounds the whole request`,
    );
  }
  return { headersTimeoutMs, bodyTimeoutMs };
}

function addressRange(name: Variable, text: string): AddressRange {
  const range = parseAddressRange(text);
  if (range === undefined)
    throw new ConfigError(name, `"${text}" is not an IP address or CIDR network (for example 10.0.0.0/8 or fd00::/8)`);
  return range;
}

function httpUrl(name: string, text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(name, `"${text}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(name, `"${text}" must be an http or https URL`);
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new ConfigError(name, `"${text}" must not carry credentials, a query or a fragment`);
  }
  // One canonical form without a trailing slash, so derived URLs never double it.
  url.pathname = url.pathname.replace(/\/+$/, '');
  return url;
}

/**
 * An http(s) URL that is an origin only: the broker serves `/mcp`, `/oauth/…` and the
 * well-known documents at the root, and issuer, resource and redirect URIs derive from it.
 */
function originUrl(name: string, text: string): URL {
  const url = httpUrl(name, text);
  if (url.pathname !== '' && url.pathname !== '/') {
    throw new ConfigError(
      name,
      `"${text}" must be an origin without a path (the broker serves at the root, for example https://mcp.example.org)`,
    );
  }
  return url;
}

function parseListen(name: Variable, text: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    throw new ConfigError(name, `"${text}" is not host:port (for example 127.0.0.1:8080)`);
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

/** Operator-token flags make every user act as one account: a shared upstream never gets them. */
const OPERATOR_TOKEN_FLAGS = ['--allow-operator-token-fallback', '--token'];

function upstreamConfig(env: Env): UpstreamConfig {
  const command = read(env, 'BROKER_UPSTREAM_COMMAND');
  const url = read(env, 'BROKER_UPSTREAM_URL');
  if (command !== undefined && url !== undefined) {
    throw new ConfigError('BROKER_UPSTREAM_URL', 'is set together with BROKER_UPSTREAM_COMMAND: choose one upstream');
  }
  const processes = count(env, 'BROKER_UPSTREAM_PROCESSES', 1);
  if (url !== undefined) return { kind: 'url', url: httpUrl('BROKER_UPSTREAM_URL', url) };
  if (command === undefined) return { kind: 'stdio' };
  const argv = splitCommand('BROKER_UPSTREAM_COMMAND', command);
  if (!argv.some((word) => word.includes('{port}'))) {
    throw new ConfigError('BROKER_UPSTREAM_COMMAND', 'needs a {port} placeholder where the HTTP port goes (--http-port {port})');
  }
  const operatorFlag = argv.find((word) => OPERATOR_TOKEN_FLAGS.some((flag) => word === flag || word.startsWith(`${flag}=`)));
  if (operatorFlag !== undefined) {
    throw new ConfigError('BROKER_UPSTREAM_COMMAND', `${operatorFlag} would make every user act as one account; remove it`);
  }
  return { kind: 'command', command: argv, processes };
}

function splitCommand(name: Variable, text: string): string[] {
  // Variables are kept literally: the command is never run through a shell.
  const words = parseShellWords(text, (name) => `$${name}`);
  const argv: string[] = [];
  for (const word of words) {
    if (typeof word !== 'string') {
      throw new ConfigError(name, 'shell operators, globs and comments are not allowed; give a plain command line');
    }
    argv.push(word);
  }
  if (argv.length === 0 || argv[0] === '') throw new ConfigError(name, 'the program name is empty');
  return argv;
}

function logLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((candidate) => candidate === text.toLowerCase());
  if (level === undefined) throw new ConfigError('BROKER_LOG_LEVEL', `"${text}" is not one of ${LOG_LEVELS.join(', ')}`);
  return level;
}
