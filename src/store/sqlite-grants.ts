import {
  CODE_INSERT_COLUMNS,
  GRANT_COLUMNS,
  accessTokenFromRow,
  codeFromRow,
  codeInsertValues,
  refreshTokenFromRow,
  type AccessRow,
  type CodeRow,
  type RefreshRow,
} from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import type {
  AccessTokenView,
  AuthorizationCode,
  AuthorizationCodeRepository,
  CodeConsumption,
  Grant,
  GrantRepository,
  RefreshTokenView,
  TokenHashes,
} from './store.js';

/** Authorization codes, and the grants and tokens they become. */
export function sqliteGrantRepositories(connection: SqliteConnection): { codes: AuthorizationCodeRepository; grants: GrantRepository } {
  const codes: AuthorizationCodeRepository = {
    create: (code: AuthorizationCode): Promise<void> =>
      connection.run(() => {
        connection
          .stmt(`INSERT INTO authorization_codes (${CODE_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...codeInsertValues(code));
      }),
    consume: (codeHash: string, now: number): Promise<CodeConsumption> =>
      connection.run(() => {
        const result = connection.db.transaction((): CodeConsumption => {
          const row = connection.stmt('SELECT * FROM authorization_codes WHERE code_hash = ?').get(codeHash) as CodeRow | undefined;
          if (row === undefined) return { status: 'unknown' };
          if (row.used_at !== null) {
            connection.stmt('UPDATE authorization_codes SET replayed_at = coalesce(replayed_at, ?) WHERE code_hash = ?').run(now, codeHash);
            return { status: 'replayed', grantId: row.grant_id };
          }
          if (row.expires_at <= now) return { status: 'unknown' };
          connection.stmt('UPDATE authorization_codes SET used_at = ? WHERE code_hash = ?').run(now, codeHash);
          return { status: 'valid', code: codeFromRow(row) };
        })();
        return result;
      }),
  };

  const grants: GrantRepository = {
    createFromCode: (codeHash: string, grant: Grant, tokens: TokenHashes): Promise<boolean> =>
      connection.run(() => {
        const created = connection.db.transaction((): boolean => {
          const claimed = connection
            .stmt(
              `UPDATE authorization_codes SET grant_id = ?
             WHERE code_hash = ? AND used_at IS NOT NULL AND replayed_at IS NULL AND grant_id IS NULL`,
            )
            .run(grant.grantId, codeHash);
          if (claimed.changes === 0) return false;
          connection
            .stmt(
              `INSERT INTO grants (grant_id, user_id, client_id, resource, scope, created_at, revoked_at, last_used_at)
             VALUES (?, ?, ?, ?, ?, ?, NULL, ?)`,
            )
            .run(grant.grantId, grant.userId, grant.clientId, grant.resource, grant.scope, grant.createdAt, grant.createdAt);
          insertTokens(connection, grant.grantId, tokens);
          return true;
        })();
        return created;
      }),
    findAccessToken: (tokenHash: string): Promise<AccessTokenView | undefined> =>
      connection.run(() => {
        const row = connection
          .stmt(
            `SELECT a.token_hash, a.expires_at, a.revoked_at, ${GRANT_COLUMNS},
             u.forgejo_login, c.revoked_at AS credential_revoked_at
           FROM access_tokens a JOIN grants g ON g.grant_id = a.grant_id
           LEFT JOIN users u ON u.user_id = g.user_id
           LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
           WHERE a.token_hash = ?`,
          )
          .get(tokenHash) as AccessRow | undefined;
        return row === undefined ? undefined : accessTokenFromRow(row);
      }),
    findRefreshToken: (tokenHash: string): Promise<RefreshTokenView | undefined> =>
      connection.run(() => {
        const row = connection
          .stmt(
            `SELECT r.token_hash, r.expires_at, r.rotated_at, r.successor_sealed, r.successor_sealed_until,
             s.rotated_at AS successor_rotated_at, ${GRANT_COLUMNS}, c.revoked_at AS credential_revoked_at
           FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id
           LEFT JOIN refresh_tokens s ON s.token_hash = r.successor_hash
           LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
           WHERE r.token_hash = ?`,
          )
          .get(tokenHash) as RefreshRow | undefined;
        return row === undefined ? undefined : refreshTokenFromRow(row);
      }),
    rotateRefreshToken: (
      oldHash: string,
      tokens: TokenHashes,
      successor: { readonly sealed: string; readonly sealedUntil: number } | null,
      at: number,
    ): Promise<'rotated' | 'already_rotated'> =>
      connection.run(() => {
        const outcome = connection.db.transaction((): 'rotated' | 'already_rotated' => {
          const old = connection
            .stmt(
              `UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?, successor_sealed = ?, successor_sealed_until = ?
             WHERE token_hash = ? AND rotated_at IS NULL
             RETURNING grant_id`,
            )
            .get(at, tokens.refreshTokenHash ?? null, successor?.sealed ?? null, successor?.sealedUntil ?? null, oldHash) as
            { grant_id: string } | undefined;
          if (old === undefined) return 'already_rotated';
          insertTokens(connection, old.grant_id, tokens);
          connection.stmt('UPDATE grants SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE grant_id = ?').run(at, old.grant_id);
          return 'rotated';
        })();
        return outcome;
      }),
    revokeGrant: (grantId: string, at: number): Promise<void> =>
      connection.run(() => {
        connection.stmt('UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL').run(at, grantId);
      }),
    touch: (grantId: string, at: number): Promise<void> =>
      connection.run(() => {
        connection
          .stmt('UPDATE grants SET last_used_at = ? WHERE grant_id = ? AND (last_used_at IS NULL OR last_used_at < ?)')
          .run(at, grantId, at);
      }),
    revokeAccessToken: (tokenHash: string, at: number): Promise<void> =>
      connection.run(() => {
        connection.stmt('UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL').run(at, tokenHash);
      }),
  };

  return { codes, grants };
}

function insertTokens(connection: SqliteConnection, grantId: string, tokens: TokenHashes): void {
  connection
    .stmt('INSERT INTO access_tokens (token_hash, grant_id, expires_at, revoked_at) VALUES (?, ?, ?, NULL)')
    .run(tokens.accessTokenHash, grantId, tokens.accessExpiresAt);
  if (tokens.refreshTokenHash !== undefined && tokens.refreshExpiresAt !== undefined) {
    connection
      .stmt('INSERT INTO refresh_tokens (token_hash, grant_id, expires_at) VALUES (?, ?, ?)')
      .run(tokens.refreshTokenHash, grantId, tokens.refreshExpiresAt);
  }
}
