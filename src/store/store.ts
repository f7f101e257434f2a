/**
 * The broker's persistent state, as an asynchronous repository interface.
 *
 * Callers depend only on these types; the SQLite module (one process, the
 * default) and the PostgreSQL module (several replicas on one database)
 * implement them with the same behaviour. Every method that must be atomic
 * (consuming a code, rotating a refresh token, swapping a credential) is one
 * method here, so each backend makes it one transaction.
 *
 * Secrets never appear in plain text at rest: broker tokens, codes, client
 * secrets and cookies are stored as SHA-256 hashes (hex) computed by the
 * caller; Forgejo tokens and PKCE verifiers are handed over in plain text and
 * sealed with AES-256-GCM by the store itself. Times are milliseconds since
 * the epoch.
 */
import type { AuditRepository } from './audit-records.js';
import type { AssertionReplayRepository } from './assertion-replays.js';

export type { AuditKind, AuditOutcome, AuditQuery, AuditRecord, AuditRepository, StoredAuditRecord } from './audit-records.js';

import type { AdminRepository, RevocationRepository } from './admin-store.js';

export type TokenEndpointAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post';

/** A client registered through RFC 7591 dynamic client registration. */
export interface RegisteredClient {
  readonly clientId: string;
  /** SHA-256 of the client secret; null for public clients. */
  readonly clientSecretHash: string | null;
  readonly tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  readonly redirectUris: readonly string[];
  readonly grantTypes: readonly string[];
  readonly clientName: string | null;
  readonly clientUri: string | null;
  readonly createdAt: number;
  /** When a user first completed a sign-in with this client; null while never. */
  readonly firstSignInAt: number | null;
}

export interface ClientRepository {
  create(client: RegisteredClient): Promise<void>;
  find(clientId: string): Promise<RegisteredClient | undefined>;
  /** Records the first completed sign-in; later calls change nothing. */
  markSignedIn(clientId: string, at: number): Promise<void>;
  /** Registered clients that never completed a sign-in (the registration cap counts them). */
  countUnused(): Promise<number>;
}

export interface User {
  /** The Forgejo user's numeric id, as a string. */
  readonly userId: string;
  readonly forgejoLogin: string;
}

export interface UserRepository {
  find(userId: string): Promise<User | undefined>;
}

/** The tokens Forgejo issued for one user. */
export interface ForgejoTokens {
  readonly accessToken: string;
  readonly refreshToken: string;
  /** Access token expiry. */
  readonly expiresAt: number;
}

export interface ForgejoCredential extends ForgejoTokens {
  readonly userId: string;
  /** Bumped on every change; compare-and-set guards refreshes against a newer login. */
  readonly generation: number;
  /**
   * Set when the credential ended: Forgejo refused its access token, or the
   * access token expired with no way to refresh it. A new login revives it
   * (and, after an expiry, the user's grants with it).
   */
  readonly revokedAt: number | null;
  /**
   * Set, durably, before a refresh is sent to Forgejo and cleared when its
   * answer is stored. Still set afterwards means the outcome is unknown (a
   * timeout, a lost connection, a broker killed mid-flight): Forgejo may
   * have spent the refresh token, so its refusal is no revocation.
   */
  readonly refreshStartedAt: number | null;
  /** Set when Forgejo refused the refresh token: the access token serves, unrefreshed, until it expires or is refused. */
  readonly refreshRefusedAt: number | null;
  readonly updatedAt: number;
}

export interface ForgejoCredentialRepository {
  find(userId: string): Promise<ForgejoCredential | undefined>;
  /** A fresh login: stores the user and replaces their credential unconditionally. */
  replaceAfterLogin(user: User, tokens: ForgejoTokens, at: number): Promise<ForgejoCredential>;
  /**
   * A refresh result: stored only if the credential is still at
   * `expectedGeneration`; undefined when a login replaced it meanwhile.
   */
  storeRefreshed(userId: string, expectedGeneration: number, tokens: ForgejoTokens, at: number): Promise<ForgejoCredential | undefined>;
  /**
   * Records, durably, that a refresh of the credential at `expectedGeneration`
   * is about to be sent. False (nothing recorded) when it moved on or ended.
   */
  markRefreshStarted(userId: string, expectedGeneration: number, at: number): Promise<boolean>;
  /** Records that Forgejo refused the refresh token of `expectedGeneration`. False when it moved on or ended. */
  markRefreshRefused(userId: string, expectedGeneration: number, at: number): Promise<boolean>;
  /**
   * Marks the credential dead if still at `expectedGeneration`, keeping the
   * user's grants: for an access token that expired with no way to refresh
   * it, which is no one withdrawing a client, so the grants' tokens work
   * again once a new login is stored. False when it moved on.
   */
  endCredentialKeepingGrants(userId: string, expectedGeneration: number, at: number): Promise<boolean>;
  /**
   * Marks the credential dead if still at `expectedGeneration`, and revokes
   * every grant of the user in the same transaction: for an access token
   * Forgejo refused before its expiry, that is the application's grant
   * revoked there, so no broker token of the user may revive with the next
   * login. Consents stay: a client authorizes again without consenting anew.
   * False (nothing revoked) when it moved on.
   */
  endCredentialRevokingGrants(userId: string, expectedGeneration: number, at: number): Promise<boolean>;
  /**
   * Runs `work` (read the credential, refresh it at Forgejo, store the result)
   * while holding the user's refresh lock, which every broker sharing this
   * store honours: Forgejo spends a refresh token once, so two replicas
   * refreshing the same user at once would have one of them refused and the
   * credential wrongly revoked. `work` should re-read the credential inside
   * the lock, since another holder may have refreshed it meanwhile.
   */
  withRefreshLock<T>(userId: string, work: () => Promise<T>): Promise<T>;
}

export interface ConsentRepository {
  record(userId: string, clientId: string, at: number): Promise<void>;
  has(userId: string, clientId: string): Promise<boolean>;
}

/** An authorization request that passed validation and waits for consent or login. */
export interface PendingAuthorization {
  /** Random handle carried by the consent form. */
  readonly id: string;
  readonly clientId: string;
  readonly redirectUri: string;
  readonly state: string | null;
  readonly codeChallenge: string;
  readonly resource: string;
  readonly scope: string | null;
  /** SHA-256 of the browser-binding cookie of the browser that started the request. */
  readonly browserBindingHash: string;
  /** SHA-256 of the consent form's CSRF token. */
  readonly csrfTokenHash: string;
  /** The user, once known from the sign-in cookie or the Forgejo callback. */
  readonly userId: string | null;
  /** True once the user pressed Approve on the consent page for this request. */
  readonly approved: boolean;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** What may change on a pending authorization; approval is never withdrawn. */
export interface PendingAuthorizationChange {
  readonly userId?: string;
  readonly approved?: boolean;
  readonly csrfTokenHash?: string;
}

export interface PendingAuthorizationRepository {
  create(pending: PendingAuthorization): Promise<void>;
  /** The request, unless unknown or expired. */
  find(id: string, now: number): Promise<PendingAuthorization | undefined>;
  update(id: string, change: PendingAuthorizationChange): Promise<void>;
  /** Removes and returns the request: whoever takes it finishes it, exactly once. */
  take(id: string, now: number): Promise<PendingAuthorization | undefined>;
}

/** The state of one redirect to Forgejo, created only after consent. */
export interface UpstreamState {
  readonly stateHash: string;
  readonly pendingId: string;
  readonly codeVerifier: string;
  readonly expiresAt: number;
}

export interface UpstreamStateRepository {
  create(state: UpstreamState): Promise<void>;
  /** Single use: removes and returns the state, unless unknown or expired. */
  take(stateHash: string, now: number): Promise<UpstreamState | undefined>;
}

export interface AuthorizationCode {
  readonly codeHash: string;
  readonly clientId: string;
  readonly userId: string;
  readonly redirectUri: string;
  readonly codeChallenge: string;
  readonly resource: string;
  readonly scope: string | null;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export type CodeConsumption =
  | { readonly status: 'valid'; readonly code: AuthorizationCode }
  /** Presented before: the grant it produced (if any) must be revoked. */
  | { readonly status: 'replayed'; readonly grantId: string | null }
  | { readonly status: 'unknown' };

export interface AuthorizationCodeRepository {
  create(code: AuthorizationCode): Promise<void>;
  /** Marks the code used, atomically; a second call reports a replay. */
  consume(codeHash: string, now: number): Promise<CodeConsumption>;
}

export interface Grant {
  readonly grantId: string;
  readonly userId: string;
  readonly clientId: string;
  readonly resource: string;
  readonly scope: string | null;
  readonly createdAt: number;
  readonly revokedAt: number | null;
}

export interface TokenHashes {
  readonly accessTokenHash: string;
  readonly accessExpiresAt: number;
  /** Absent when the client did not register the refresh_token grant. */
  readonly refreshTokenHash?: string;
  readonly refreshExpiresAt?: number;
}

/** An access token with everything needed to accept or refuse it. */
export interface AccessTokenView {
  readonly tokenHash: string;
  readonly expiresAt: number;
  readonly revokedAt: number | null;
  readonly grant: Grant;
  readonly forgejoLogin: string;
  readonly credentialRevoked: boolean;
}

export interface RefreshTokenView {
  readonly tokenHash: string;
  readonly expiresAt: number;
  readonly grant: Grant;
  /** Set once this refresh token was exchanged. */
  readonly rotatedAt: number | null;
  /**
   * The pair issued for it, sealed under a key derived from this refresh
   * token, kept only during the retry grace period.
   */
  readonly successorSealed: string | null;
  /** Whether the refresh token issued in exchange has itself been used. */
  readonly successorRotated: boolean;
  readonly credentialRevoked: boolean;
}

export interface GrantRepository {
  /**
   * Creates the grant and its first tokens for a consumed code, in one
   * transaction; false (and nothing stored) if a replay of the code was seen.
   */
  createFromCode(codeHash: string, grant: Grant, tokens: TokenHashes): Promise<boolean>;
  findAccessToken(tokenHash: string): Promise<AccessTokenView | undefined>;
  findRefreshToken(tokenHash: string): Promise<RefreshTokenView | undefined>;
  /**
   * Exchanges a refresh token: marks it rotated and stores the new pair, if
   * nobody rotated it first. `successorSealed` is kept until `sealedUntil`.
   */
  rotateRefreshToken(
    oldHash: string,
    tokens: TokenHashes,
    successor: { readonly sealed: string; readonly sealedUntil: number } | null,
    at: number,
  ): Promise<'rotated' | 'already_rotated'>;
  revokeGrant(grantId: string, at: number): Promise<void>;
  /** Moves the grant's last use forward (never back); callers do it at most about once a minute per grant. */
  touch(grantId: string, at: number): Promise<void>;
  revokeAccessToken(tokenHash: string, at: number): Promise<void>;
}

export interface SignIn {
  readonly tokenHash: string;
  readonly userId: string;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** Broker sign-in sessions behind the sign-in cookie. */
export interface SignInRepository {
  create(signIn: SignIn): Promise<void>;
  /** The signed-in user, unless unknown or expired. */
  findUserId(tokenHash: string, now: number): Promise<string | undefined>;
  delete(tokenHash: string): Promise<void>;
}

/**
 * A legacy-era session in shared mode, as another broker process (a restart,
 * another replica) needs it to carry the session on without the client
 * re-initialising: the session is state, not a process. Keyed by the SHA-256
 * of the session id (computed by the caller), as tokens are.
 */
export interface StoredLegacySession {
  readonly sessionIdHash: string;
  readonly userId: string;
  readonly forgejoLogin: string;
  /** The OAuth grant the session is bound to: only a bearer of that grant may use it. */
  readonly grantId: string;
  readonly clientId: string;
  /** The client's `initialize` params, JSON text, replayed to a new upstream session. */
  readonly initializeParams: string;
  /** The protocol version agreed at initialize. */
  readonly protocolVersion: string;
  readonly createdAt: number;
  /** When the session was last used, as recorded (coarsely: callers touch it at most about once a minute). */
  readonly lastUsedAt: number;
  /** The replica that carries the session now: the one that started it, then whichever claimed it when that one was gone. */
  readonly ownerReplica: string;
}

export interface LegacySessionRepository {
  /** Records a new session (or replaces the record of the same id). */
  save(session: StoredLegacySession): Promise<void>;
  find(sessionIdHash: string): Promise<StoredLegacySession | undefined>;
  /**
   * Makes `to` the session's owner if `from` still is (its owner is gone and
   * several replicas may try at once: exactly one wins). Returns whether this
   * call changed it.
   */
  claim(sessionIdHash: string, from: string, to: string): Promise<boolean>;
  /** Moves `lastUsedAt` forward (never back). */
  touch(sessionIdHash: string, at: number): Promise<void>;
  /** The session ended (DELETE, idle, a revoked credential): forgotten. Idempotent. */
  delete(sessionIdHash: string): Promise<void>;
  /** Every session of a user ended (their credential was revoked). Returns how many were deleted. */
  deleteOfUser(userId: string): Promise<number>;
  /** Forgets sessions unused since `before` (the idle timeout passed); returns how many. */
  deleteUnusedSince(before: number): Promise<number>;
}

/** A broker replica as it last announced itself (each heartbeats every few seconds while it runs). */
export interface StoredReplica {
  /** Random, chosen by the replica at start; a restarted process is a new replica. */
  readonly id: string;
  /** Its base URL as the other replicas reach it (BROKER_REPLICA_URL); null when not configured. */
  readonly url: string | null;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

export interface ReplicaRepository {
  /** Records that the replica is alive at `now` (inserting it the first time, updating its URL too). */
  heartbeat(replica: { readonly id: string; readonly url: string | null; readonly startedAt: number }, now: number): Promise<void>;
  /** The replicas whose last heartbeat is at or after `aliveSince`, ordered by id. */
  list(aliveSince: number): Promise<StoredReplica[]>;
  /** The replica stopped: forgotten. Idempotent. */
  remove(id: string): Promise<void>;
  /** Forgets replicas whose last heartbeat is before `before` (they died without stopping); returns how many. */
  removeGoneBefore(before: number): Promise<number>;
}

export interface PurgeResult {
  readonly rows: number;
  readonly unusedClients: number;
}

export interface Store {
  readonly clients: ClientRepository;
  readonly users: UserRepository;
  readonly credentials: ForgejoCredentialRepository;
  readonly consents: ConsentRepository;
  readonly pendingAuthorizations: PendingAuthorizationRepository;
  readonly upstreamStates: UpstreamStateRepository;
  readonly codes: AuthorizationCodeRepository;
  readonly grants: GrantRepository;
  readonly signIns: SignInRepository;
  readonly legacySessions: LegacySessionRepository;
  readonly replicas: ReplicaRepository;
  readonly audit: AuditRepository;
  readonly admin: AdminRepository;
  readonly revocations: RevocationRepository;
  /** Client assertions already used (their `jti`), for every replica. */
  readonly assertionReplays: AssertionReplayRepository;
  /**
   * Deletes what has expired and can no longer matter, and dynamically
   * registered clients created before `unusedClientsCreatedBefore` that never
   * completed a sign-in.
   */
  purge(now: number, unusedClientsCreatedBefore: number): Promise<PurgeResult>;
  /** Whether the store answers a trivial query now (for `/readyz`); never rejects. */
  ready(): Promise<boolean>;
  close(): Promise<void>;
}
