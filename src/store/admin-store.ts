/**
 * What the operator (`forgejo-mcp-broker admin …`) and the user's
 * Connections page read from the store, and the revocation log every broker
 * sharing the store follows. Both stores implement these with the same SQL
 * (`admin-queries.ts`). Times are milliseconds since the epoch.
 */

export interface UserSummary {
  readonly userId: string;
  readonly forgejoLogin: string;
  readonly firstSignInAt: number;
  /** The last Forgejo login stored for the user. */
  readonly lastSignInAt: number;
  /** `alive`, `ended` (Forgejo refused it, or it expired unrefreshable), or `none`. */
  readonly credential: 'alive' | 'ended' | 'none';
  /** Unrevoked grants. */
  readonly activeGrants: number;
  /** The latest use of any of the user's grants; null when never recorded. */
  readonly lastUsedAt: number | null;
}

export interface ClientSummary {
  readonly clientId: string;
  readonly clientName: string | null;
  /** `registered` (RFC 7591, a row of its own) or `metadata-document` (a client_id URL, known only through its grants). */
  readonly kind: 'registered' | 'metadata-document';
  /** Registered clients only; a metadata document's are fetched, not stored. */
  readonly redirectUris: readonly string[];
  readonly createdAt: number | null;
  readonly firstSignInAt: number | null;
  /** Distinct users with an unrevoked grant for the client. */
  readonly users: number;
  readonly activeGrants: number;
  readonly lastUsedAt: number | null;
}

export interface GrantSummary {
  readonly grantId: string;
  readonly userId: string;
  readonly forgejoLogin: string | null;
  readonly clientId: string;
  readonly clientName: string | null;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
}

/** One client a user approved, as the Connections page shows it. */
export interface Connection {
  readonly clientId: string;
  readonly approvedAt: number;
  /** The latest use of any grant of (user, client): a token issued or refreshed, or a request (recorded at most once a minute). */
  readonly lastUsedAt: number | null;
  readonly activeGrants: number;
}

/** A legacy session the store holds (shared mode), as the Connections page lists it. */
export interface StoredSessionSummary {
  readonly sessionIdHash: string;
  readonly clientId: string;
  readonly grantId: string;
  readonly createdAt: number;
  readonly lastUsedAt: number;
  readonly ownerReplica: string;
}

export interface AdminRepository {
  users(): Promise<UserSummary[]>;
  /** The user with this Forgejo login (case-insensitive, as Forgejo's logins are). */
  findUserByLogin(login: string): Promise<{ readonly userId: string; readonly forgejoLogin: string } | undefined>;
  clients(): Promise<ClientSummary[]>;
  /** Grants, newest first; unrevoked ones only unless `includeRevoked`. */
  grants(filter: { readonly userId?: string; readonly includeRevoked: boolean }): Promise<GrantSummary[]>;
  findGrant(grantId: string): Promise<GrantSummary | undefined>;
  /** The clients the user approved, in order of approval. */
  connections(userId: string): Promise<Connection[]>;
  storedSessionsOf(userId: string): Promise<StoredSessionSummary[]>;
  /** Deletes registered clients that never completed a sign-in, created at or before `createdAtOrBefore`; returns their ids. */
  purgeUnusedClients(createdAtOrBefore: number): Promise<string[]>;
}

/** What a revocation ends. `connection` is one user's approval of one client (the Connections page's Revoke). */
export type RevocationTarget =
  | { readonly kind: 'user'; readonly userId: string }
  | { readonly kind: 'client'; readonly clientId: string }
  | { readonly kind: 'grant'; readonly grantId: string }
  | { readonly kind: 'connection'; readonly userId: string; readonly clientId: string };

/** An entry of the revocation log. `id` grows with each entry. */
export interface Revocation {
  readonly id: number;
  readonly target: RevocationTarget;
  readonly at: number;
}

/**
 * What the log also carries, ending no grant or session of its own: a change
 * that makes tokens invalid, so every broker stops trusting the principals it
 * cached for them. `access_token`: one access token of the grant was revoked
 * (RFC 7009); the grant's cached tokens are dropped. `credential`: the user's
 * Forgejo credential ended; the user's cached tokens are dropped.
 */
export type TokenNotice =
  { readonly kind: 'access_token'; readonly grantId: string } | { readonly kind: 'credential'; readonly userId: string };

/** An entry of the log as a follower reads it: a revocation, or a notice. */
export interface LogEntry {
  readonly id: number;
  readonly target: RevocationTarget | TokenNotice;
  readonly at: number;
}

export interface RevocationOutcome {
  readonly revocation: Revocation;
  /** Grants revoked by this call (already revoked ones are not counted). */
  readonly grants: number;
  /** Approvals forgotten: the client asks for consent again. */
  readonly consents: number;
  /** Broker sign-ins ended (`user` only): the next authorization goes through the Forgejo login again. */
  readonly signIns: number;
  /** Shared mode's stored legacy sessions forgotten. */
  readonly storedSessions: number;
}

export interface RevocationRepository {
  /**
   * In one transaction: revokes the target's grants (their tokens answer 401
   * within a follower's poll on every broker), forgets approvals (`user`, `client`,
   * `connection`) and sign-ins (`user`) and stored sessions, and appends the
   * revocation to the log every broker follows to end live sessions.
   */
  revoke(target: RevocationTarget, at: number): Promise<RevocationOutcome>;
  /** Appends a notice to the log (the change it tells of is already stored); its id. */
  notice(notice: TokenNotice, at: number): Promise<number>;
  /** Log entries after `afterId`, oldest first, at most `limit`. */
  since(afterId: number, limit: number): Promise<LogEntry[]>;
  /** The newest entry's id; 0 for an empty log. */
  latestId(): Promise<number>;
}

/**
 * How long the revocation log keeps an entry: running brokers read it within
 * a second; one that starts later has no live session to end and begins at
 * the newest entry.
 */
export const REVOCATION_LOG_KEPT_MS = 24 * 3_600_000;
