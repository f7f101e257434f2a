/**
 * The broker's OAuth 2.1 authorization server: metadata, registration,
 * authorization with consent and Forgejo login, token, revocation.
 *
 * Why our own small server and not panva's oidc-provider: the rules this
 * broker must prove are few but unusual. Consent has to happen on the broker
 * before the user is forwarded upstream; the login step is a trip to another
 * OAuth server (Forgejo), with its own state and PKCE; clients arrive through
 * Client ID Metadata Documents as well as RFC 7591; tokens are opaque and
 * stored only as hashes; and a lost refresh response gets a grace period.
 * Each of these is a custom interaction, adapter or policy in oidc-provider,
 * spread over its configuration, with an OIDC surface (ID tokens, JWKS,
 * sessions) the broker does not need. Here each rule is one visible function
 * on well-kept primitives: node:crypto for randomness, SHA-256 and
 * AES-256-GCM, and oauth4webapi for every request to Forgejo.
 */
import { NO_SECURITY_EVENTS, type SecurityEvents } from '../audit/security-events.js';
import { scopesInWords } from './scope-words.js';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { errorMessage } from '../errors/errors.js';
import { MCP_PATH, type RouteHandler } from '../http/route.js';
import type { Logger } from '../log/logger.js';
import type { RevocationTarget, TokenNotice } from '../store/admin-store.js';
import type { Store } from '../store/store.js';
import { BROKER_INFO } from '../version.js';
import { BrokerAuthenticator } from './authenticator.js';
import type { TokenCache } from './token-cache.js';
import { AuthorizationFlow } from './authorize.js';
import { DEFAULT_CIMD_OPTIONS, ClientMetadataDocuments, type CimdOptions } from './cimd.js';
import { ClientAssertionVerifier } from './client-assertion.js';
import { ClientDirectory } from './clients.js';
import { ConnectionsPage, type ConnectionSessions } from './connections.js';
import {
  OAUTH_PATHS,
  cookieNames,
  type ConsentTerms,
  type ForgejoLogin,
  type LoginSink,
  type OAuthContext,
  type OAuthLifetimes,
} from './context.js';
import { OAuthError } from './errors.js';
import { TrustedProxies, clientAddress, type AddressRange } from './client-address.js';
import { DEFAULT_LIFETIMES, DEFAULT_RATE_LIMIT } from '../config/defaults.js';
import { sendJson } from '../http/errors.js';
import { CORS_HEADERS, readJson, sendOAuthError } from './http.js';
import { authorizationServerMetadata, protectedResourceMetadata, protectedResourceMetadataPath } from './metadata.js';
import { renderMessagePage, sendPage } from './pages.js';
import { RateLimiter, type RateLimitOptions } from './rate-limit.js';
import { TokenEndpoint } from './token-endpoint.js';

export interface OAuthServerOptions {
  /** BROKER_PUBLIC_URL: the issuer; the protected resource is `<publicUrl>/mcp`. */
  readonly publicUrl: URL;
  readonly store: Store;
  readonly forgejo: ForgejoLogin;
  /** Receives each Forgejo login (ForgejoCredentialManager: stores it and tells the session layer). */
  readonly logins: LoginSink;
  readonly logger: Logger;
  readonly lifetimes?: Partial<OAuthLifetimes>;
  /** How long a rotated refresh token yields its unused successor. Default: the refresh token lifetime; 0 disables. */
  readonly refreshGraceMs?: number;
  /** Client ID Metadata Documents advertised and resolved (BROKER_CIMD). Default true. */
  readonly metadataDocuments?: boolean;
  /** Registered clients that never signed in, at most (BROKER_MAX_UNUSED_CLIENTS); 0 for no limit. Default 10,000. */
  readonly maxUnusedClients?: number;
  /** Registered clients that never completed a sign-in are removed after this long. Default 24 h. */
  readonly unusedClientTtlMs?: number;
  readonly cimd?: Partial<CimdOptions>;
  /** Per client address and endpoint group (authorization pages, token+revoke, registration). */
  readonly rateLimit?: RateLimitOptions;
  /** How many replicas share the rate limit now (each enforces its share). Default one. */
  readonly liveReplicas?: () => number;
  /** BROKER_TRUSTED_PROXIES: peers whose X-Forwarded-For names the client to rate-limit. Default none. */
  readonly trustedProxies?: readonly AddressRange[];
  /** This broker's live sessions, for the Connections page; absent (an OAuth server without a broker): none listed. */
  readonly liveSessions?: ConnectionSessions;
  /** How the Connections page revokes (the revocation follower, so live sessions end too); default: in the store only. */
  readonly revoke?: (target: RevocationTarget) => Promise<unknown>;
  /** How the token endpoints log a revoked access token (the revocation follower); default: in the store only. */
  readonly notice?: (notice: TokenNotice) => Promise<unknown>;
  /** Accepted tokens, for the authenticator; only where the revocation log is followed (it keeps the cache fresh). Default: none. */
  readonly tokenCache?: TokenCache;
  /** How often expired rows are purged. Default 10 min. */
  readonly sweepIntervalMs?: number;
  /** Sign-ins, consents and revocations, for the audit log. Default: none. */
  readonly securityEvents?: SecurityEvents;
  /** FORGEJO_SCOPES, for the consent page's words. Default: none (full access). */
  readonly forgejoScopes?: string;
  /** The tool policy in words for the consent page. Default: every tool. */
  readonly toolPolicyFor?: ConsentTerms['toolPolicyFor'];
  readonly now?: () => number;
}

export interface OAuthServer {
  /** Mount before /mcp. */
  readonly routes: RouteHandler;
  readonly authenticator: BrokerAuthenticator;
  /** Removes expired rows and unused clients now (also done periodically). */
  sweep(): Promise<void>;
  /** Stops the periodic sweep. */
  close(): void;
}

type Group = 'authorize' | 'token' | 'register';

/**
 * The 2025-03-26 spec's default endpoint paths, used by clients that skip
 * the metadata's URLs; each is the same endpoint as the path it maps to.
 */
const LEGACY_ROOT_PATHS = { authorize: '/authorize', token: '/token', register: '/register' } as const;
const LEGACY_ROOT_ALIASES: ReadonlyMap<string, string> = new Map([
  [LEGACY_ROOT_PATHS.authorize, OAUTH_PATHS.authorize],
  [LEGACY_ROOT_PATHS.token, OAUTH_PATHS.token],
  [LEGACY_ROOT_PATHS.register, OAUTH_PATHS.register],
]);

export function createOAuthServer(options: OAuthServerOptions): OAuthServer {
  const now = options.now ?? Date.now;
  const issuer = options.publicUrl.href.replace(/\/+$/, '');
  const resource = `${issuer}${MCP_PATH}`;
  const cimd: CimdOptions = {
    ...DEFAULT_CIMD_OPTIONS,
    userAgent: `${BROKER_INFO.name}/${BROKER_INFO.version} (+${issuer})`,
    ...options.cimd,
  };
  const lifetimes = { ...DEFAULT_LIFETIMES, ...options.lifetimes };
  const sweepIntervalMs = options.sweepIntervalMs ?? 10 * 60_000;
  const documents = new ClientMetadataDocuments(cimd, now, (clientId, reason) =>
    options.logger.warn(
      { event: 'client_metadata_stale', clientId, err: reason },
      'client metadata document could not be refreshed; using the last good copy',
    ),
  );
  const context: OAuthContext = {
    issuer,
    resource,
    resourceMetadataUrl: `${new URL(issuer).origin}${protectedResourceMetadataPath(MCP_PATH)}`,
    store: options.store,
    clients: new ClientDirectory(options.store.clients, documents, {
      metadataDocuments: options.metadataDocuments ?? true,
      allowPrivateNetwork: cimd.allowPrivateNetwork,
      maxUnusedClients: options.maxUnusedClients ?? 10_000,
      registrationRetryAfterS: Math.ceil(sweepIntervalMs / 1000),
    }),
    assertions: new ClientAssertionVerifier({
      cimd,
      // The issuer, as draft-ietf-oauth-rfc7523bis asks, and the token endpoint RFC 7523 §3 allows and clients still send.
      audiences: [issuer, `${issuer}${OAUTH_PATHS.token}`],
      replays: options.store.assertionReplays,
      now,
    }),
    forgejo: options.forgejo,
    logins: options.logins,
    logger: options.logger,
    now,
    lifetimes,
    refreshGraceMs: options.refreshGraceMs ?? lifetimes.refreshTokenMs,
    cookies: cookieNames(options.publicUrl),
    events: options.securityEvents ?? NO_SECURITY_EVENTS,
    consentTerms: {
      abilities: scopesInWords(options.forgejoScopes ?? ''),
      toolPolicyFor: options.toolPolicyFor ?? (() => Promise.resolve({ lines: [], mayDiffer: false })),
    },
    revocations: {
      revoke: options.revoke ?? ((target) => options.store.revocations.revoke(target, now())),
      notice: options.notice ?? ((notice) => options.store.revocations.notice(notice, now())),
    },
  };
  const flow = new AuthorizationFlow(context);
  const tokenEndpoint = new TokenEndpoint(context);
  const connections = new ConnectionsPage(context, {
    sessions: options.liveSessions ?? { of: () => [] },
    revoke: (target) => context.revocations.revoke(target),
  });
  const limiter = new RateLimiter(options.rateLimit ?? DEFAULT_RATE_LIMIT, now, options.liveReplicas);
  const trustedProxies = new TrustedProxies(options.trustedProxies ?? []);
  const unusedClientTtlMs = options.unusedClientTtlMs ?? 24 * 3_600_000;
  const logger = options.logger;

  const sweep = async (): Promise<void> => {
    const at = now();
    const result = await options.store.purge(at, at - unusedClientTtlMs);
    limiter.sweep();
    if (result.rows > 0 || result.unusedClients > 0) logger.debug({ event: 'oauth_store_purged', ...result }, 'OAuth store purged');
  };
  const timer = setInterval(() => {
    sweep().catch((error: unknown) =>
      logger.error({ event: 'oauth_store_purge_failed', err: errorMessage(error) }, 'OAuth store purge failed'),
    );
  }, sweepIntervalMs);
  timer.unref();

  /** Browser-facing endpoints answer a refused request with a page, API endpoints with JSON. */
  const limited = (req: IncomingMessage, res: ServerResponse, group: Group): boolean => {
    const retryAfter = limiter.take(`${group}:${clientAddress(req, trustedProxies)}`);
    if (retryAfter === undefined) return false;
    if (group === 'authorize') {
      sendPage(res, 429, renderMessagePage('Too many requests', 'Please wait a moment and try again.'), [], {
        'retry-after': String(retryAfter),
      });
    } else {
      sendOAuthError(res, new OAuthError('temporarily_unavailable', 'too many requests', { status: 429, retryAfter }), CORS_HEADERS);
    }
    return true;
  };

  /**
   * The JSON endpoints browser-based clients call (MCP Inspector in direct
   * mode): CORS on every answer, success or error. They take no cookies, so
   * any origin may read them.
   */
  const api = async (req: IncomingMessage, res: ServerResponse, work: () => Promise<void>): Promise<void> => {
    for (const [name, value] of Object.entries(CORS_HEADERS)) res.setHeader(name, value);
    try {
      await work();
    } catch (error) {
      // RFC 6749 §5.2: a client that tried HTTP Basic is told how to authenticate.
      const basic = /^basic /i.test(req.headers.authorization ?? '');
      const challenge: Record<string, string> = basic ? { 'www-authenticate': `Basic realm="${issuer}", charset="UTF-8"` } : {};
      const info = sendOAuthError(res, error, challenge);
      if (info.internal) logger.error({ event: 'oauth_endpoint_failed', err: errorMessage(error) }, 'OAuth endpoint failed');
    }
  };

  const routes: RouteHandler = async (req, res, url) => {
    const method = req.method ?? 'GET';
    // Claude.ai has been seen to ignore the metadata's endpoint URLs and use /authorize, /token and /register.
    const path = LEGACY_ROOT_ALIASES.get(url.pathname) ?? url.pathname;
    const publicEndpoint =
      path === OAUTH_PATHS.token ||
      path === OAUTH_PATHS.revoke ||
      path === OAUTH_PATHS.register ||
      path.startsWith(OAUTH_PATHS.authorizationServerMetadata) ||
      path.startsWith(OAUTH_PATHS.protectedResourceMetadata);
    if (method === 'OPTIONS' && publicEndpoint) {
      res.writeHead(204, CORS_HEADERS);
      res.end();
      return true;
    }
    switch (path) {
      case OAUTH_PATHS.authorizationServerMetadata:
        return onlyMethod(req, res, 'GET', () =>
          sendJson(res, 200, authorizationServerMetadata(context), { ...CORS_HEADERS, 'cache-control': 'max-age=300' }),
        );
      case OAUTH_PATHS.protectedResourceMetadata:
      case protectedResourceMetadataPath(MCP_PATH):
        return onlyMethod(req, res, 'GET', () =>
          sendJson(res, 200, protectedResourceMetadata(context), { ...CORS_HEADERS, 'cache-control': 'max-age=300' }),
        );
      case OAUTH_PATHS.authorize:
        return onlyMethod(req, res, 'GET', async () => {
          if (!limited(req, res, 'authorize')) await flow.authorize(req, res, url);
        });
      case OAUTH_PATHS.consent:
        return onlyMethod(req, res, 'POST', async () => {
          if (!limited(req, res, 'authorize')) await flow.decide(req, res);
        });
      case OAUTH_PATHS.callback:
        return onlyMethod(req, res, 'GET', async () => {
          if (!limited(req, res, 'authorize')) await flow.callback(req, res, url);
        });
      case OAUTH_PATHS.consents:
        if (limited(req, res, 'authorize')) return true;
        if (req.method === 'POST') {
          await connections.revoke(req, res);
          return true;
        }
        return onlyMethod(req, res, 'GET', () => connections.list(req, res, url));
      case OAUTH_PATHS.token:
        return onlyMethod(req, res, 'POST', async () => {
          if (!limited(req, res, 'token')) await api(req, res, () => tokenEndpoint.token(req, res));
        });
      case OAUTH_PATHS.revoke:
        return onlyMethod(req, res, 'POST', async () => {
          if (!limited(req, res, 'token')) await api(req, res, () => tokenEndpoint.revoke(req, res));
        });
      case OAUTH_PATHS.register:
        return onlyMethod(req, res, 'POST', async () => {
          if (limited(req, res, 'register')) return;
          await api(req, res, async () => sendJson(res, 201, await context.clients.register(await readJson(req), now())));
        });
      default:
        return false;
    }
  };

  return {
    routes,
    authenticator: new BrokerAuthenticator({
      grants: options.store.grants,
      logger,
      resource,
      resourceMetadataUrl: context.resourceMetadataUrl,
      ...(options.tokenCache === undefined ? {} : { cache: options.tokenCache }),
      now,
    }),
    sweep,
    close: () => clearInterval(timer),
  };
}

/** Runs `handle` for the one allowed method; any other is 405 with Allow. */
async function onlyMethod(
  req: IncomingMessage,
  res: ServerResponse,
  allowed: 'GET' | 'POST',
  handle: () => void | Promise<void>,
): Promise<boolean> {
  if (req.method !== allowed && !(allowed === 'GET' && req.method === 'HEAD')) {
    res.writeHead(405, { allow: allowed, 'content-length': 0 });
    res.end();
    return true;
  }
  await handle();
  return true;
}
