import type {
  AdminRepository,
  ClientSummary,
  Connection,
  GrantSummary,
  LogEntry,
  RevocationOutcome,
  RevocationRepository,
  RevocationTarget,
  StoredSessionSummary,
  UserSummary,
} from './admin-store.js';

/** One SQL statement, `?` placeholders (the PostgreSQL executor numbers them). */
export interface SqlStatement {
  readonly sql: string;
  readonly params: readonly unknown[];
}

/**
 * The little the admin queries need of a database, so one SQL text serves
 * both stores: reads, and statements run in one transaction.
 */
export interface SqlExecutor {
  all<R>(statement: SqlStatement): Promise<R[]>;
  /** Runs the statements in one transaction; each one's changed rows, and the rows a RETURNING gave. */
  transaction(statements: readonly SqlStatement[]): Promise<{ changes: number; rows: unknown[] }[]>;
  /** A JSON list column as the database returns it (TEXT in SQLite, JSONB parsed in PostgreSQL). */
  readStringList(value: unknown, column: string): string[];
}

const q = (sql: string, ...params: unknown[]): SqlStatement => ({ sql, params });

interface UserRow {
  user_id: string;
  forgejo_login: string;
  created_at: number;
  updated_at: number;
  credential: 'alive' | 'ended' | 'none';
  active_grants: number;
  last_used_at: number | null;
}

interface ClientRow {
  client_id: string;
  kind: 'registered' | 'metadata-document';
  client_name: string | null;
  redirect_uris: unknown;
  created_at: number | null;
  first_sign_in_at: number | null;
  users: number;
  active_grants: number;
  last_used_at: number | null;
}

interface GrantRow {
  grant_id: string;
  user_id: string;
  forgejo_login: string | null;
  client_id: string;
  client_name: string | null;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

interface RevocationRow {
  id: number;
  kind: LogEntry['target']['kind'];
  user_id: string | null;
  client_id: string | null;
  grant_id: string | null;
  created_at: number;
}

const GRANT_SELECT = `SELECT g.grant_id, g.user_id, u.forgejo_login, g.client_id, cl.client_name, g.created_at, g.last_used_at, g.revoked_at
  FROM grants g LEFT JOIN users u ON u.user_id = g.user_id LEFT JOIN clients cl ON cl.client_id = g.client_id`;

/** The operator's and the Connections page's views, and the revocation log, over either store. */
export function adminRepositories(db: SqlExecutor): { admin: AdminRepository; revocations: RevocationRepository } {
  const admin: AdminRepository = {
    users: async (): Promise<UserSummary[]> =>
      (
        await db.all<UserRow>(
          q(`SELECT u.user_id, u.forgejo_login, u.created_at, u.updated_at,
               CASE WHEN c.user_id IS NULL THEN 'none' WHEN c.revoked_at IS NULL THEN 'alive' ELSE 'ended' END AS credential,
               (SELECT COUNT(*) FROM grants g WHERE g.user_id = u.user_id AND g.revoked_at IS NULL) AS active_grants,
               (SELECT MAX(g.last_used_at) FROM grants g WHERE g.user_id = u.user_id) AS last_used_at
             FROM users u LEFT JOIN forgejo_credentials c ON c.user_id = u.user_id
             ORDER BY u.forgejo_login, u.user_id`),
        )
      ).map((row) => ({
        userId: row.user_id,
        forgejoLogin: row.forgejo_login,
        firstSignInAt: row.created_at,
        lastSignInAt: row.updated_at,
        credential: row.credential,
        activeGrants: Number(row.active_grants),
        lastUsedAt: row.last_used_at,
      })),
    findUserByLogin: async (login) => {
      const [row] = await db.all<{ user_id: string; forgejo_login: string }>(
        q(
          'SELECT user_id, forgejo_login FROM users WHERE lower(forgejo_login) = lower(CAST(? AS TEXT)) ORDER BY updated_at DESC LIMIT 1',
          login,
        ),
      );
      return row === undefined ? undefined : { userId: row.user_id, forgejoLogin: row.forgejo_login };
    },
    clients: async (): Promise<ClientSummary[]> =>
      (
        await db.all<ClientRow>(
          q(`WITH known AS (SELECT client_id FROM clients UNION SELECT client_id FROM grants UNION SELECT client_id FROM consents)
             SELECT k.client_id, CASE WHEN cl.client_id IS NULL THEN 'metadata-document' ELSE 'registered' END AS kind,
               cl.client_name, cl.redirect_uris, cl.created_at, cl.first_sign_in_at,
               (SELECT COUNT(DISTINCT g.user_id) FROM grants g WHERE g.client_id = k.client_id AND g.revoked_at IS NULL) AS users,
               (SELECT COUNT(*) FROM grants g WHERE g.client_id = k.client_id AND g.revoked_at IS NULL) AS active_grants,
               (SELECT MAX(g.last_used_at) FROM grants g WHERE g.client_id = k.client_id) AS last_used_at
             FROM known k LEFT JOIN clients cl ON cl.client_id = k.client_id
             ORDER BY CASE WHEN cl.created_at IS NULL THEN 1 ELSE 0 END, cl.created_at, k.client_id`),
        )
      ).map((row) => ({
        clientId: row.client_id,
        clientName: row.client_name,
        kind: row.kind,
        redirectUris: row.redirect_uris === null ? [] : db.readStringList(row.redirect_uris, 'redirect_uris'),
        createdAt: row.created_at,
        firstSignInAt: row.first_sign_in_at,
        users: Number(row.users),
        activeGrants: Number(row.active_grants),
        lastUsedAt: row.last_used_at,
      })),
    grants: async (filter): Promise<GrantSummary[]> => {
      const conditions: string[] = [];
      const params: unknown[] = [];
      if (filter.userId !== undefined) {
        conditions.push('g.user_id = ?');
        params.push(filter.userId);
      }
      if (!filter.includeRevoked) conditions.push('g.revoked_at IS NULL');
      const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
      return (await db.all<GrantRow>(q(`${GRANT_SELECT} ${where} ORDER BY g.created_at DESC, g.grant_id`, ...params))).map(grantFromRow);
    },
    findGrant: async (grantId) => {
      const [row] = await db.all<GrantRow>(q(`${GRANT_SELECT} WHERE g.grant_id = ?`, grantId));
      return row === undefined ? undefined : grantFromRow(row);
    },
    connections: async (userId): Promise<Connection[]> =>
      (
        await db.all<{ client_id: string; approved_at: number; last_used_at: number | null; active_grants: number }>(
          q(
            `SELECT c.client_id, c.created_at AS approved_at,
               (SELECT MAX(g.last_used_at) FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id) AS last_used_at,
               (SELECT COUNT(*) FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id AND g.revoked_at IS NULL) AS active_grants
             FROM consents c WHERE c.user_id = ? ORDER BY c.created_at, c.client_id`,
            userId,
          ),
        )
      ).map((row) => ({
        clientId: row.client_id,
        approvedAt: row.approved_at,
        lastUsedAt: row.last_used_at,
        activeGrants: Number(row.active_grants),
      })),
    storedSessionsOf: async (userId): Promise<StoredSessionSummary[]> =>
      (
        await db.all<{
          session_id_hash: string;
          client_id: string;
          grant_id: string;
          created_at: number;
          last_used_at: number;
          owner_replica: string;
        }>(
          q(
            `SELECT session_id_hash, client_id, grant_id, created_at, last_used_at, owner_replica
             FROM legacy_sessions WHERE user_id = ? ORDER BY created_at, session_id_hash`,
            userId,
          ),
        )
      ).map((row) => ({
        sessionIdHash: row.session_id_hash,
        clientId: row.client_id,
        grantId: row.grant_id,
        createdAt: row.created_at,
        lastUsedAt: row.last_used_at,
        ownerReplica: row.owner_replica,
      })),
    purgeUnusedClients: async (createdAtOrBefore) => {
      const [deleted] = await db.transaction([
        q('DELETE FROM clients WHERE first_sign_in_at IS NULL AND created_at <= ? RETURNING client_id', createdAtOrBefore),
      ]);
      return ((deleted?.rows ?? []) as { client_id: string }[]).map((row) => row.client_id).sort();
    },
  };

  const revocations: RevocationRepository = {
    revoke: async (target, at): Promise<RevocationOutcome> => {
      const [where, params] = targetCondition(target);
      const none = q('SELECT 1 WHERE 1 = 0');
      const results = await db.transaction([
        q(`UPDATE grants SET revoked_at = ? WHERE ${where} AND revoked_at IS NULL`, at, ...params),
        // A revoked grant alone leaves the approval: the client may sign in again without asking. Anything wider asks again.
        target.kind === 'grant' ? none : q(`DELETE FROM consents WHERE ${where}`, ...params),
        target.kind === 'user' ? q('DELETE FROM sign_ins WHERE user_id = ?', target.userId) : none,
        q(`DELETE FROM legacy_sessions WHERE ${where}`, ...params),
        q(
          'INSERT INTO revocations (kind, user_id, client_id, grant_id, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id',
          target.kind,
          'userId' in target ? target.userId : null,
          'clientId' in target ? target.clientId : null,
          target.kind === 'grant' ? target.grantId : null,
          at,
        ),
      ]);
      const changes = (index: number): number => results[index]?.changes ?? 0;
      const id = Number((results[4]?.rows[0] as { id: number } | undefined)?.id);
      return {
        revocation: { id, target, at },
        grants: changes(0),
        consents: changes(1),
        signIns: changes(2),
        storedSessions: changes(3),
      };
    },
    notice: async (notice, at) => {
      const [inserted] = await db.transaction([
        q(
          'INSERT INTO revocations (kind, user_id, client_id, grant_id, created_at) VALUES (?, ?, NULL, ?, ?) RETURNING id',
          notice.kind,
          notice.kind === 'credential' ? notice.userId : null,
          notice.kind === 'access_token' ? notice.grantId : null,
          at,
        ),
      ]);
      return Number((inserted?.rows[0] as { id: number } | undefined)?.id);
    },
    since: async (afterId, limit): Promise<LogEntry[]> =>
      (
        await db.all<RevocationRow>(
          q('SELECT id, kind, user_id, client_id, grant_id, created_at FROM revocations WHERE id > ? ORDER BY id LIMIT ?', afterId, limit),
        )
      ).flatMap((row) => {
        const target = targetFromRow(row);
        return target === undefined ? [] : [{ id: Number(row.id), target, at: row.created_at }];
      }),
    latestId: async () => {
      const [row] = await db.all<{ id: number | null }>(q('SELECT MAX(id) AS id FROM revocations'));
      return Number(row?.id ?? 0);
    },
  };

  return { admin, revocations };
}

function grantFromRow(row: GrantRow): GrantSummary {
  return {
    grantId: row.grant_id,
    userId: row.user_id,
    forgejoLogin: row.forgejo_login,
    clientId: row.client_id,
    clientName: row.client_name,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

/** The rows a target names, in grants, consents and legacy_sessions alike (each has user_id, client_id, and grant_id where it applies). */
function targetCondition(target: RevocationTarget): [string, unknown[]] {
  switch (target.kind) {
    case 'user':
      return ['user_id = ?', [target.userId]];
    case 'client':
      return ['client_id = ?', [target.clientId]];
    case 'grant':
      return ['grant_id = ?', [target.grantId]];
    case 'connection':
      return ['user_id = ? AND client_id = ?', [target.userId, target.clientId]];
  }
}

/** Undefined for a row a newer broker wrote with a kind this one does not know: it is skipped. */
function targetFromRow(row: RevocationRow): LogEntry['target'] | undefined {
  if (row.kind === 'access_token' && row.grant_id !== null) return { kind: 'access_token', grantId: row.grant_id };
  if (row.kind === 'credential' && row.user_id !== null) return { kind: 'credential', userId: row.user_id };
  if (row.kind === 'user' && row.user_id !== null) return { kind: 'user', userId: row.user_id };
  if (row.kind === 'client' && row.client_id !== null) return { kind: 'client', clientId: row.client_id };
  if (row.kind === 'grant' && row.grant_id !== null) return { kind: 'grant', grantId: row.grant_id };
  if (row.kind === 'connection' && row.user_id !== null && row.client_id !== null)
    return { kind: 'connection', userId: row.user_id, clientId: row.client_id };
  return undefined;
}
