import { KeyedLock } from './keyed-lock.js';
import { credentialFromRow, userFromRow, type CredentialRow, type UserRow } from './rows.js';
import { sealForgejoTokens } from './sealed.js';
import type { SqliteConnection } from './sqlite-connection.js';
import type { ForgejoCredential, ForgejoCredentialRepository, ForgejoTokens, User, UserRepository } from './store.js';

/** Users and their Forgejo credentials. */
export function sqliteCredentialRepositories(
  connection: SqliteConnection,
  key: Buffer,
): { users: UserRepository; credentials: ForgejoCredentialRepository } {
  const refreshLock = new KeyedLock();

  const users: UserRepository = {
    find: (userId: string): Promise<User | undefined> =>
      connection.run(() => {
        const row = connection.stmt('SELECT user_id, forgejo_login FROM users WHERE user_id = ?').get(userId) as UserRow | undefined;
        return row === undefined ? undefined : userFromRow(row);
      }),
  };

  const credentials: ForgejoCredentialRepository = {
    find: (userId: string): Promise<ForgejoCredential | undefined> =>
      connection.run(() => {
        const row = connection.stmt('SELECT * FROM forgejo_credentials WHERE user_id = ?').get(userId) as CredentialRow | undefined;
        return row === undefined ? undefined : credentialFromRow(key, row);
      }),
    replaceAfterLogin: (user: User, tokens: ForgejoTokens, at: number): Promise<ForgejoCredential> =>
      connection.run(() => {
        const sealed = sealForgejoTokens(key, user.userId, tokens);
        const row = connection.db.transaction((): CredentialRow => {
          connection
            .stmt(
              `INSERT INTO users (user_id, forgejo_login, created_at, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET forgejo_login = excluded.forgejo_login, updated_at = excluded.updated_at`,
            )
            .run(user.userId, user.forgejoLogin, at, at);
          return connection
            .stmt(
              `INSERT INTO forgejo_credentials (user_id, sealed_tokens, generation, revoked_at, updated_at)
             VALUES (?, ?, 1, NULL, ?)
             ON CONFLICT (user_id) DO UPDATE SET sealed_tokens = excluded.sealed_tokens,
               generation = forgejo_credentials.generation + 1, revoked_at = NULL, refresh_started_at = NULL,
               refresh_refused_at = NULL, updated_at = excluded.updated_at
             RETURNING *`,
            )
            .get(user.userId, sealed, at) as CredentialRow;
        })();
        return credentialFromRow(key, row);
      }),
    storeRefreshed: (
      userId: string,
      expectedGeneration: number,
      tokens: ForgejoTokens,
      at: number,
    ): Promise<ForgejoCredential | undefined> =>
      connection.run(() => {
        const row = connection
          .stmt(
            `UPDATE forgejo_credentials SET sealed_tokens = ?, generation = generation + 1, refresh_started_at = NULL,
             refresh_refused_at = NULL, updated_at = ?
           WHERE user_id = ? AND generation = ? AND revoked_at IS NULL
           RETURNING *`,
          )
          .get(sealForgejoTokens(key, userId, tokens), at, userId, expectedGeneration) as CredentialRow | undefined;
        return row === undefined ? undefined : credentialFromRow(key, row);
      }),
    markRefreshStarted: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      connection.run(() => markCredential(connection, 'refresh_started_at', userId, expectedGeneration, at)),
    markRefreshRefused: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      connection.run(() => markCredential(connection, 'refresh_refused_at', userId, expectedGeneration, at)),
    endCredentialKeepingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      connection.run(() => endCredential(connection, userId, expectedGeneration, at)),
    endCredentialRevokingGrants: (userId: string, expectedGeneration: number, at: number): Promise<boolean> =>
      connection.run(() =>
        connection.db.transaction((): boolean => {
          if (!endCredential(connection, userId, expectedGeneration, at)) return false;
          connection.stmt('UPDATE grants SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL').run(at, userId);
          return true;
        })(),
      ),
    // One process owns the database file, so an in-process lock serialises every refresh.
    withRefreshLock: <T>(userId: string, work: () => Promise<T>): Promise<T> => refreshLock.run(userId, work),
  };

  return { users, credentials };
}

/** Sets one of the credential's time columns, compare-and-set on its generation; the generation stays (the tokens did not change). */
function markCredential(
  connection: SqliteConnection,
  column: 'refresh_started_at' | 'refresh_refused_at',
  userId: string,
  expectedGeneration: number,
  at: number,
): boolean {
  const result = connection
    .stmt(
      `UPDATE forgejo_credentials SET ${column} = ?, updated_at = ?
     WHERE user_id = ? AND generation = ? AND revoked_at IS NULL`,
    )
    .run(at, at, userId, expectedGeneration);
  return result.changes === 1;
}

/** Marks the credential dead, compare-and-set on its generation; true when this call ended it. */
function endCredential(connection: SqliteConnection, userId: string, expectedGeneration: number, at: number): boolean {
  const result = connection
    .stmt(
      `UPDATE forgejo_credentials SET revoked_at = ?, generation = generation + 1, updated_at = ?
     WHERE user_id = ? AND generation = ? AND revoked_at IS NULL`,
    )
    .run(at, at, userId, expectedGeneration);
  return result.changes === 1;
}
