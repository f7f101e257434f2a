import { DEFAULT_REFRESH_TIMEOUT_MS, ForgejoClient } from '../forgejo/client.js';
import { ForgejoCredentialManager } from '../forgejo/credentials.js';
import { REVOCATION_POLL_MS, TOKEN_CACHE_ENTRIES } from '../config/defaults.js';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import { RevocationFollower } from '../revocation/follower.js';
import { LiveSessions } from '../revocation/live-sessions.js';
import { replicaForwardingKey } from '../replicas/secret.js';
import { loadEncryptionKey } from '../store/encryption-key.js';
import { DEFAULT_REFRESH_LEASE_MS, openPostgresStore } from '../store/postgres.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import type { RouteHandler } from '../http/route.js';
import type { BrokerAuthenticator } from './authenticator.js';
import { OAUTH_PATHS } from './context.js';
import { TokenCache } from './token-cache.js';
import { createOAuthServer, type OAuthServerOptions } from './server.js';

export interface BrokerAuthOptions extends Omit<OAuthServerOptions, 'store' | 'forgejo' | 'logins'> {
  /** FORGEJO_URL */
  readonly forgejoUrl: URL;
  /** FORGEJO_CLIENT_ID, FORGEJO_CLIENT_SECRET: the broker's application at Forgejo. */
  readonly forgejoClientId: string;
  readonly forgejoClientSecret: string;
  /** FORGEJO_SCOPES: the fixed scope string asked of Forgejo on every login. */
  readonly forgejoScopes: string;
  /** BROKER_DATA_DIR */
  readonly dataDir: string;
  /** BROKER_DATABASE_URL: the PostgreSQL store shared by replicas; absent: SQLite in `dataDir`. */
  readonly databaseUrl?: string;
  /** BROKER_ENCRYPTION_KEY, parsed; absent: `<dataDir>/encryption.key`. */
  readonly encryptionKey?: Buffer;
  /** Per request to Forgejo. Default 10 s. */
  readonly forgejoTimeoutMs?: number;
  /** BROKER_FORGEJO_REFRESH_TIMEOUT: per refresh at Forgejo. Default 30 s. */
  readonly forgejoRefreshTimeoutMs?: number;
  /** This broker's live sessions, bound to its fronts later: the Connections page lists them, revocations end them. */
  readonly sessions?: LiveSessions;
  /** How often the revocation log is read. Default REVOCATION_POLL_MS. */
  readonly revocationPollMs?: number;
  readonly logger: Logger;
}

/** Everything sign-in gives the rest of the broker. */
export interface BrokerAuth {
  /** The OAuth endpoints and metadata; mount before /mcp. */
  readonly routes: RouteHandler;
  readonly authenticator: BrokerAuthenticator;
  /** ForgejoCredentials for the rotator, with onCredentialChanged / onCredentialRevoked. */
  readonly credentials: ForgejoCredentialManager;
  readonly store: Store;
  /** The key replicas mark forwarded requests with, derived from the encryption key (which stays here). */
  readonly forwardingKey: Buffer;
  /** Follows the store's revocation log (start it once the broker serves); the Connections page revokes through it. */
  readonly revocations: RevocationFollower;
  /** For `/readyz`: whether the store answers. */
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

/** Opens the store, and wires the Forgejo client, the credential manager and the OAuth server. */
export async function openBrokerAuth(options: BrokerAuthOptions): Promise<BrokerAuth> {
  const key = await loadEncryptionKey(options.dataDir, options.encryptionKey, options.logger);
  const store =
    options.databaseUrl === undefined
      ? await openSqliteStore({ dataDir: options.dataDir, encryptionKey: key })
      : await openPostgresStore({
          connectionString: options.databaseUrl,
          encryptionKey: key,
          // A replica's lease on a user's refresh must outlast the refresh it covers.
          refreshLeaseMs: Math.max(DEFAULT_REFRESH_LEASE_MS, 2 * (options.forgejoRefreshTimeoutMs ?? DEFAULT_REFRESH_TIMEOUT_MS)),
          onIdleError: (error) =>
            options.logger.warn(
              { event: 'postgres_connection_lost', err: error.message },
              'PostgreSQL connection lost; reconnecting on demand',
            ),
        });
  const forgejo = new ForgejoClient({
    forgejoUrl: options.forgejoUrl,
    clientId: options.forgejoClientId,
    clientSecret: options.forgejoClientSecret,
    scopes: options.forgejoScopes,
    redirectUri: new URL(OAUTH_PATHS.callback, options.publicUrl).href,
    timeoutMs: options.forgejoTimeoutMs,
    refreshTimeoutMs: options.forgejoRefreshTimeoutMs,
    now: options.now,
  });
  const credentials = new ForgejoCredentialManager({ credentials: store.credentials, forgejo, logger: options.logger, now: options.now });
  const sessions = options.sessions ?? new LiveSessions();
  const intervalMs = options.revocationPollMs ?? REVOCATION_POLL_MS;
  // Trusted while the log is read: a few missed polls, and every request goes to the store again.
  const tokenCache = new TokenCache({ maxEntries: TOKEN_CACHE_ENTRIES, maxStalenessMs: 3 * intervalMs, now: options.now });
  const revocations = new RevocationFollower({
    revocations: store.revocations,
    end: (target, reason) => sessions.end(target, reason),
    log: options.logger,
    tokens: tokenCache,
    intervalMs,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  // An ended credential refuses the user's tokens from the store on; the log tells every replica's cache.
  credentials.onCredentialRevoked((userId) => {
    revocations
      .notice({ kind: 'credential', userId })
      .catch((error: unknown) =>
        options.logger.error(
          { event: 'credential_notice_failed', userId, err: errorMessage(error) },
          "could not log the ended credential: other replicas may accept the user's cached tokens until they expire",
        ),
      );
  });
  const server = createOAuthServer({
    ...options,
    store,
    forgejo,
    logins: credentials,
    liveSessions: sessions,
    revoke: (target) => revocations.revoke(target),
    notice: (notice) => revocations.notice(notice),
    tokenCache,
  });
  return {
    routes: server.routes,
    authenticator: server.authenticator,
    credentials,
    store,
    forwardingKey: replicaForwardingKey(key),
    revocations,
    ready: () => store.ready(),
    close: async () => {
      server.close();
      revocations.stop();
      credentials.close();
      await store.close();
    },
  };
}
