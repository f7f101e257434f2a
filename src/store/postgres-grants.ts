import type pg from 'pg';

import { withTransaction } from './pg-pool.js';
import { one } from './postgres-queries.js';
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
export function postgresGrantRepositories(pool: pg.Pool): { codes: AuthorizationCodeRepository; grants: GrantRepository } {
  const codes: AuthorizationCodeRepository = {
    create: async (code: AuthorizationCode): Promise<void> => {
      await pool.query(
        `INSERT INTO authorization_codes (${CODE_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        codeInsertValues(code),
      );
    },
    consume: (codeHash: string, now: number): Promise<CodeConsumption> =>
      withTransaction(pool, async (client): Promise<CodeConsumption> => {
        // FOR UPDATE: concurrent presentations of one code queue here, and each sees what the one before did.
        const row = await one<CodeRow>(client, 'SELECT * FROM authorization_codes WHERE code_hash = $1 FOR UPDATE', [codeHash]);
        if (row === undefined) return { status: 'unknown' };
        if (row.used_at !== null) {
          await client.query('UPDATE authorization_codes SET replayed_at = coalesce(replayed_at, $1) WHERE code_hash = $2', [
            now,
            codeHash,
          ]);
          return { status: 'replayed', grantId: row.grant_id };
        }
        if (row.expires_at <= now) return { status: 'unknown' };
        await client.query('UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2', [now, codeHash]);
        return { status: 'valid', code: codeFromRow(row) };
      }),
  };

  const grants: GrantRepository = {
    createFromCode: (codeHash: string, grant: Grant, tokens: TokenHashes): Promise<boolean> =>
      withTransaction(pool, async (client) => {
        // Claiming the code locks its row: a replay arriving now waits, then sees the grant to revoke.
        const claimed = await client.query(
          `UPDATE authorization_codes SET grant_id = $1
           WHERE code_hash = $2 AND used_at IS NOT NULL AND replayed_at IS NULL AND grant_id IS NULL`,
          [grant.grantId, codeHash],
        );
        if (claimed.rowCount !== 1) return false;
        await client.query(
          `INSERT INTO grants (grant_id, user_id, client_id, resource, scope, created_at, revoked_at, last_used_at)
           VALUES ($1, $2, $3, $4, $5, $6, NULL, $6)`,
          [grant.grantId, grant.userId, grant.clientId, grant.resource, grant.scope, grant.createdAt],
        );
        await insertTokens(client, grant.grantId, tokens);
        return true;
      }),
    findAccessToken: async (tokenHash: string): Promise<AccessTokenView | undefined> => {
      const row = await one<AccessRow>(
        pool,
        `SELECT a.token_hash, a.expires_at, a.revoked_at, ${GRANT_COLUMNS},
           u.forgejo_login, c.revoked_at AS credential_revoked_at
         FROM access_tokens a JOIN grants g ON g.grant_id = a.grant_id
         LEFT JOIN users u ON u.user_id = g.user_id
         LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
         WHERE a.token_hash = $1`,
        [tokenHash],
      );
      return row === undefined ? undefined : accessTokenFromRow(row);
    },
    findRefreshToken: async (tokenHash: string): Promise<RefreshTokenView | undefined> => {
      const row = await one<RefreshRow>(
        pool,
        `SELECT r.token_hash, r.expires_at, r.rotated_at, r.successor_sealed, r.successor_sealed_until,
           s.rotated_at AS successor_rotated_at, ${GRANT_COLUMNS}, c.revoked_at AS credential_revoked_at
         FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id
         LEFT JOIN refresh_tokens s ON s.token_hash = r.successor_hash
         LEFT JOIN forgejo_credentials c ON c.user_id = g.user_id
         WHERE r.token_hash = $1`,
        [tokenHash],
      );
      return row === undefined ? undefined : refreshTokenFromRow(row);
    },
    rotateRefreshToken: (
      oldHash: string,
      tokens: TokenHashes,
      successor: { readonly sealed: string; readonly sealedUntil: number } | null,
      at: number,
    ): Promise<'rotated' | 'already_rotated'> =>
      withTransaction(pool, async (client): Promise<'rotated' | 'already_rotated'> => {
        // Compare-and-set on rotated_at: of two replicas exchanging the same token at once, the second
        // waits for the first's commit, re-checks, and finds it rotated.
        const old = await one<{ grant_id: string }>(
          client,
          `UPDATE refresh_tokens SET rotated_at = $1, successor_hash = $2, successor_sealed = $3, successor_sealed_until = $4
           WHERE token_hash = $5 AND rotated_at IS NULL
           RETURNING grant_id`,
          [at, tokens.refreshTokenHash ?? null, successor?.sealed ?? null, successor?.sealedUntil ?? null, oldHash],
        );
        if (old === undefined) return 'already_rotated';
        await insertTokens(client, old.grant_id, tokens);
        await client.query('UPDATE grants SET last_used_at = GREATEST(coalesce(last_used_at, 0), $1) WHERE grant_id = $2', [
          at,
          old.grant_id,
        ]);
        return 'rotated';
      }),
    revokeGrant: async (grantId: string, at: number): Promise<void> => {
      await pool.query('UPDATE grants SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL', [at, grantId]);
    },
    touch: async (grantId: string, at: number): Promise<void> => {
      await pool.query('UPDATE grants SET last_used_at = $1 WHERE grant_id = $2 AND (last_used_at IS NULL OR last_used_at < $1)', [
        at,
        grantId,
      ]);
    },
    revokeAccessToken: async (tokenHash: string, at: number): Promise<void> => {
      await pool.query('UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL', [at, tokenHash]);
    },
  };

  return { codes, grants };
}

async function insertTokens(client: pg.PoolClient, grantId: string, tokens: TokenHashes): Promise<void> {
  await client.query('INSERT INTO access_tokens (token_hash, grant_id, expires_at, revoked_at) VALUES ($1, $2, $3, NULL)', [
    tokens.accessTokenHash,
    grantId,
    tokens.accessExpiresAt,
  ]);
  if (tokens.refreshTokenHash !== undefined && tokens.refreshExpiresAt !== undefined) {
    await client.query('INSERT INTO refresh_tokens (token_hash, grant_id, expires_at) VALUES ($1, $2, $3)', [
      tokens.refreshTokenHash,
      grantId,
      tokens.refreshExpiresAt,
    ]);
  }
}
