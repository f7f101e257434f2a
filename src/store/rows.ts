import { openCodeVerifier, openForgejoTokens } from './sealed.js';
import type {
  AccessTokenView,
  AuthorizationCode,
  ForgejoCredential,
  Grant,
  PendingAuthorization,
  RefreshTokenView,
  RegisteredClient,
  StoredLegacySession,
  StoredReplica,
  TokenEndpointAuthMethod,
  UpstreamState,
  User,
} from './store.js';

/**
 * The rows both backends read and write, and their mapping to and from the
 * Store's types, in one place: the two schemas name and order their columns
 * alike. The SQL itself stays in each backend, in its dialect.
 *
 * Times and generations are numbers in both: SQLite INTEGERs natively,
 * PostgreSQL BIGINTs through the pool's INT8 parser (pg-pool.ts). The columns
 * whose type differs by dialect are type parameters, converted by the
 * backend's DialectColumns.
 */

/** How a backend's driver holds the columns typed differently in its dialect. */
export interface DialectColumns<Flag, List> {
  /** A boolean column as read: SQLite INTEGER 0/1, PostgreSQL BOOLEAN. */
  readonly readFlag: (value: Flag) => boolean;
  /** A boolean as the value bound to that column. */
  readonly writeFlag: (value: boolean) => Flag;
  /** A list of strings as read: SQLite TEXT holding JSON, PostgreSQL JSONB already parsed. Both take JSON text. */
  readonly readStringList: (value: List, column: string) => string[];
}

export interface ClientRow<List> {
  client_id: string;
  client_secret_hash: string | null;
  token_endpoint_auth_method: string;
  redirect_uris: List;
  grant_types: List;
  client_name: string | null;
  client_uri: string | null;
  created_at: number;
  first_sign_in_at: number | null;
}

export interface UserRow {
  user_id: string;
  forgejo_login: string;
}

export interface CredentialRow {
  user_id: string;
  sealed_tokens: string;
  generation: number;
  revoked_at: number | null;
  refresh_started_at: number | null;
  refresh_refused_at: number | null;
  updated_at: number;
}

export interface PendingRow<Flag> {
  id: string;
  client_id: string;
  redirect_uri: string;
  state: string | null;
  code_challenge: string;
  resource: string;
  scope: string | null;
  browser_binding_hash: string;
  csrf_token_hash: string;
  user_id: string | null;
  approved: Flag;
  created_at: number;
  expires_at: number;
}

export interface UpstreamRow {
  state_hash: string;
  pending_id: string;
  sealed_code_verifier: string;
  expires_at: number;
}

export interface CodeRow {
  code_hash: string;
  client_id: string;
  user_id: string;
  redirect_uri: string;
  code_challenge: string;
  resource: string;
  scope: string | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  grant_id: string | null;
}

export interface LegacySessionRow {
  session_id_hash: string;
  user_id: string;
  forgejo_login: string;
  grant_id: string;
  client_id: string;
  initialize_params: string;
  protocol_version: string;
  created_at: number;
  last_used_at: number;
  owner_replica: string;
}

export interface ReplicaRow {
  replica_id: string;
  url: string | null;
  started_at: number;
  heartbeat_at: number;
}

/** The grant's columns as GRANT_COLUMNS selects them beside a token's. */
export interface GrantColumns {
  grant_id: string;
  user_id: string;
  client_id: string;
  resource: string;
  scope: string | null;
  grant_created_at: number;
  grant_revoked_at: number | null;
}

export interface AccessRow extends GrantColumns {
  token_hash: string;
  expires_at: number;
  revoked_at: number | null;
  forgejo_login: string | null;
  credential_revoked_at: number | null;
}

export interface RefreshRow extends GrantColumns {
  token_hash: string;
  expires_at: number;
  rotated_at: number | null;
  successor_sealed: string | null;
  successor_sealed_until: number | null;
  successor_rotated_at: number | null;
  credential_revoked_at: number | null;
}

/** Select list (grants aliased `g`) yielding GrantColumns. */
export const GRANT_COLUMNS = `g.grant_id, g.user_id, g.client_id, g.resource, g.scope,
  g.created_at AS grant_created_at, g.revoked_at AS grant_revoked_at`;

/** The columns clientInsertValues fills, in its order. */
export const CLIENT_INSERT_COLUMNS = `client_id, client_secret_hash, token_endpoint_auth_method, redirect_uris,
  grant_types, client_name, client_uri, created_at, first_sign_in_at`;

export function clientInsertValues(client: RegisteredClient): unknown[] {
  return [
    client.clientId,
    client.clientSecretHash,
    client.tokenEndpointAuthMethod,
    JSON.stringify(client.redirectUris),
    JSON.stringify(client.grantTypes),
    client.clientName,
    client.clientUri,
    client.createdAt,
    client.firstSignInAt,
  ];
}

/** The columns pendingInsertValues fills, in its order. */
export const PENDING_INSERT_COLUMNS = `id, client_id, redirect_uri, state, code_challenge, resource, scope,
  browser_binding_hash, csrf_token_hash, user_id, approved, created_at, expires_at`;

export function pendingInsertValues<Flag, List>(pending: PendingAuthorization, dialect: DialectColumns<Flag, List>): unknown[] {
  return [
    pending.id,
    pending.clientId,
    pending.redirectUri,
    pending.state,
    pending.codeChallenge,
    pending.resource,
    pending.scope,
    pending.browserBindingHash,
    pending.csrfTokenHash,
    pending.userId,
    dialect.writeFlag(pending.approved),
    pending.createdAt,
    pending.expiresAt,
  ];
}

/** The columns codeInsertValues fills, in its order. */
export const CODE_INSERT_COLUMNS = `code_hash, client_id, user_id, redirect_uri, code_challenge, resource,
  scope, created_at, expires_at`;

export function codeInsertValues(code: AuthorizationCode): unknown[] {
  return [
    code.codeHash,
    code.clientId,
    code.userId,
    code.redirectUri,
    code.codeChallenge,
    code.resource,
    code.scope,
    code.createdAt,
    code.expiresAt,
  ];
}

/** The columns legacySessionInsertValues fills, in its order. */
export const LEGACY_SESSION_INSERT_COLUMNS = `session_id_hash, user_id, forgejo_login, grant_id, client_id, initialize_params,
  protocol_version, created_at, last_used_at, owner_replica`;

export function legacySessionInsertValues(session: StoredLegacySession): unknown[] {
  return [
    session.sessionIdHash,
    session.userId,
    session.forgejoLogin,
    session.grantId,
    session.clientId,
    session.initializeParams,
    session.protocolVersion,
    session.createdAt,
    session.lastUsedAt,
    session.ownerReplica,
  ];
}

export function clientFromRow<Flag, List>(row: ClientRow<List>, dialect: DialectColumns<Flag, List>): RegisteredClient {
  return {
    clientId: row.client_id,
    clientSecretHash: row.client_secret_hash,
    tokenEndpointAuthMethod: row.token_endpoint_auth_method as TokenEndpointAuthMethod,
    redirectUris: dialect.readStringList(row.redirect_uris, 'redirect_uris'),
    grantTypes: dialect.readStringList(row.grant_types, 'grant_types'),
    clientName: row.client_name,
    clientUri: row.client_uri,
    createdAt: row.created_at,
    firstSignInAt: row.first_sign_in_at,
  };
}

export function userFromRow(row: UserRow): User {
  return { userId: row.user_id, forgejoLogin: row.forgejo_login };
}

export function credentialFromRow(key: Buffer, row: CredentialRow): ForgejoCredential {
  return {
    userId: row.user_id,
    ...openForgejoTokens(key, row.user_id, row.sealed_tokens),
    generation: row.generation,
    revokedAt: row.revoked_at,
    refreshStartedAt: row.refresh_started_at,
    refreshRefusedAt: row.refresh_refused_at,
    updatedAt: row.updated_at,
  };
}

export function pendingFromRow<Flag, List>(row: PendingRow<Flag>, dialect: DialectColumns<Flag, List>): PendingAuthorization {
  return {
    id: row.id,
    clientId: row.client_id,
    redirectUri: row.redirect_uri,
    state: row.state,
    codeChallenge: row.code_challenge,
    resource: row.resource,
    scope: row.scope,
    browserBindingHash: row.browser_binding_hash,
    csrfTokenHash: row.csrf_token_hash,
    userId: row.user_id,
    approved: dialect.readFlag(row.approved),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

export function upstreamStateFromRow(key: Buffer, row: UpstreamRow): UpstreamState {
  return {
    stateHash: row.state_hash,
    pendingId: row.pending_id,
    codeVerifier: openCodeVerifier(key, row.state_hash, row.sealed_code_verifier),
    expiresAt: row.expires_at,
  };
}

export function codeFromRow(row: CodeRow): AuthorizationCode {
  return {
    codeHash: row.code_hash,
    clientId: row.client_id,
    userId: row.user_id,
    redirectUri: row.redirect_uri,
    codeChallenge: row.code_challenge,
    resource: row.resource,
    scope: row.scope,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

export function grantFromRow(row: GrantColumns): Grant {
  return {
    grantId: row.grant_id,
    userId: row.user_id,
    clientId: row.client_id,
    resource: row.resource,
    scope: row.scope,
    createdAt: row.grant_created_at,
    revokedAt: row.grant_revoked_at,
  };
}

export function accessTokenFromRow(row: AccessRow): AccessTokenView {
  return {
    tokenHash: row.token_hash,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    grant: grantFromRow(row),
    forgejoLogin: row.forgejo_login ?? '',
    // A user without a stored credential cannot be served either.
    credentialRevoked: row.forgejo_login === null || row.credential_revoked_at !== null,
  };
}

export function refreshTokenFromRow(row: RefreshRow): RefreshTokenView {
  return {
    tokenHash: row.token_hash,
    expiresAt: row.expires_at,
    grant: grantFromRow(row),
    rotatedAt: row.rotated_at,
    successorSealed: row.successor_sealed,
    successorRotated: row.successor_rotated_at !== null,
    credentialRevoked: row.credential_revoked_at !== null,
  };
}

export function legacySessionFromRow(row: LegacySessionRow): StoredLegacySession {
  return {
    sessionIdHash: row.session_id_hash,
    userId: row.user_id,
    forgejoLogin: row.forgejo_login,
    grantId: row.grant_id,
    clientId: row.client_id,
    initializeParams: row.initialize_params,
    protocolVersion: row.protocol_version,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    ownerReplica: row.owner_replica,
  };
}

export function replicaFromRow(row: ReplicaRow): StoredReplica {
  return { id: row.replica_id, url: row.url, startedAt: row.started_at, heartbeatAt: row.heartbeat_at };
}
