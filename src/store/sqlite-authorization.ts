import {
  CLIENT_INSERT_COLUMNS,
  PENDING_INSERT_COLUMNS,
  clientFromRow,
  clientInsertValues,
  pendingFromRow,
  pendingInsertValues,
  upstreamStateFromRow,
  type ClientRow,
  type PendingRow,
  type UpstreamRow,
} from './rows.js';
import { sealCodeVerifier } from './sealed.js';
import { SQLITE_COLUMNS, type SqliteConnection } from './sqlite-connection.js';
import type {
  ClientRepository,
  ConsentRepository,
  PendingAuthorization,
  PendingAuthorizationChange,
  PendingAuthorizationRepository,
  RegisteredClient,
  SignInRepository,
  UpstreamState,
  UpstreamStateRepository,
} from './store.js';

/** The authorization flow up to the code: clients, consents, authorizations in progress, Forgejo round trips, sign-ins. */
export function sqliteAuthorizationRepositories(
  connection: SqliteConnection,
  key: Buffer,
): {
  clients: ClientRepository;
  consents: ConsentRepository;
  pendingAuthorizations: PendingAuthorizationRepository;
  upstreamStates: UpstreamStateRepository;
  signIns: SignInRepository;
} {
  const clients: ClientRepository = {
    create: (client: RegisteredClient): Promise<void> =>
      connection.run(() => {
        connection
          .stmt(`INSERT INTO clients (${CLIENT_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...clientInsertValues(client));
      }),
    find: (clientId: string): Promise<RegisteredClient | undefined> =>
      connection.run(() => {
        const row = connection.stmt('SELECT * FROM clients WHERE client_id = ?').get(clientId) as ClientRow<string> | undefined;
        return row === undefined ? undefined : clientFromRow(row, SQLITE_COLUMNS);
      }),
    markSignedIn: (clientId: string, at: number): Promise<void> =>
      connection.run(() => {
        connection.stmt('UPDATE clients SET first_sign_in_at = ? WHERE client_id = ? AND first_sign_in_at IS NULL').run(at, clientId);
      }),
    countUnused: (): Promise<number> =>
      connection.run(() => (connection.stmt('SELECT COUNT(*) AS n FROM clients WHERE first_sign_in_at IS NULL').get() as { n: number }).n),
  };

  const consents: ConsentRepository = {
    record: (userId: string, clientId: string, at: number): Promise<void> =>
      connection.run(() => {
        connection
          .stmt('INSERT INTO consents (user_id, client_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING')
          .run(userId, clientId, at);
      }),
    has: (userId: string, clientId: string): Promise<boolean> =>
      connection.run(() => {
        const row = connection.stmt('SELECT 1 FROM consents WHERE user_id = ? AND client_id = ?').get(userId, clientId);
        return row !== undefined;
      }),
  };

  const pendingAuthorizations: PendingAuthorizationRepository = {
    create: (pending: PendingAuthorization): Promise<void> =>
      connection.run(() => {
        connection
          .stmt(`INSERT INTO pending_authorizations (${PENDING_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...pendingInsertValues(pending, SQLITE_COLUMNS));
      }),
    find: (id: string, now: number): Promise<PendingAuthorization | undefined> =>
      connection.run(() => {
        const row = connection.stmt('SELECT * FROM pending_authorizations WHERE id = ? AND expires_at > ?').get(id, now) as
          PendingRow<number> | undefined;
        return row === undefined ? undefined : pendingFromRow(row, SQLITE_COLUMNS);
      }),
    update: (id: string, change: PendingAuthorizationChange): Promise<void> =>
      connection.run(() => {
        connection
          .stmt(
            `UPDATE pending_authorizations SET user_id = coalesce(?, user_id), approved = max(approved, ?),
             csrf_token_hash = coalesce(?, csrf_token_hash)
           WHERE id = ?`,
          )
          .run(change.userId ?? null, SQLITE_COLUMNS.writeFlag(change.approved === true), change.csrfTokenHash ?? null, id);
      }),
    take: (id: string, now: number): Promise<PendingAuthorization | undefined> =>
      connection.run(() => {
        const row = connection.stmt('DELETE FROM pending_authorizations WHERE id = ? RETURNING *').get(id) as
          PendingRow<number> | undefined;
        return row === undefined || row.expires_at <= now ? undefined : pendingFromRow(row, SQLITE_COLUMNS);
      }),
  };

  const upstreamStates: UpstreamStateRepository = {
    create: (state: UpstreamState): Promise<void> =>
      connection.run(() => {
        connection
          .stmt('INSERT INTO upstream_states (state_hash, pending_id, sealed_code_verifier, expires_at) VALUES (?, ?, ?, ?)')
          .run(state.stateHash, state.pendingId, sealCodeVerifier(key, state.stateHash, state.codeVerifier), state.expiresAt);
      }),
    take: (stateHash: string, now: number): Promise<UpstreamState | undefined> =>
      connection.run(() => {
        const row = connection.stmt('DELETE FROM upstream_states WHERE state_hash = ? RETURNING *').get(stateHash) as
          UpstreamRow | undefined;
        return row === undefined || row.expires_at <= now ? undefined : upstreamStateFromRow(key, row);
      }),
  };

  const signIns: SignInRepository = {
    create: (signIn: { tokenHash: string; userId: string; createdAt: number; expiresAt: number }): Promise<void> =>
      connection.run(() => {
        connection
          .stmt('INSERT INTO sign_ins (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
          .run(signIn.tokenHash, signIn.userId, signIn.createdAt, signIn.expiresAt);
      }),
    findUserId: (tokenHash: string, now: number): Promise<string | undefined> =>
      connection.run(() => {
        const row = connection.stmt('SELECT user_id FROM sign_ins WHERE token_hash = ? AND expires_at > ?').get(tokenHash, now) as
          { user_id: string } | undefined;
        return row?.user_id;
      }),
    delete: (tokenHash: string): Promise<void> =>
      connection.run(() => {
        connection.stmt('DELETE FROM sign_ins WHERE token_hash = ?').run(tokenHash);
      }),
  };

  return { clients, consents, pendingAuthorizations, upstreamStates, signIns };
}
