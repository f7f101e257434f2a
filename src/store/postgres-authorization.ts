import type pg from 'pg';

import { one, POSTGRES_COLUMNS } from './postgres-queries.js';
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
import type {
  ClientRepository,
  ConsentRepository,
  PendingAuthorization,
  PendingAuthorizationChange,
  PendingAuthorizationRepository,
  RegisteredClient,
  SignIn,
  SignInRepository,
  UpstreamState,
  UpstreamStateRepository,
} from './store.js';

/** The authorization flow up to the code: clients, consents, authorizations in progress, Forgejo round trips, sign-ins. */
export function postgresAuthorizationRepositories(
  pool: pg.Pool,
  key: Buffer,
): {
  clients: ClientRepository;
  consents: ConsentRepository;
  pendingAuthorizations: PendingAuthorizationRepository;
  upstreamStates: UpstreamStateRepository;
  signIns: SignInRepository;
} {
  const clients: ClientRepository = {
    create: async (client: RegisteredClient): Promise<void> => {
      await pool.query(
        `INSERT INTO clients (${CLIENT_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        clientInsertValues(client),
      );
    },
    find: async (clientId: string): Promise<RegisteredClient | undefined> => {
      const row = await one<ClientRow<unknown>>(pool, 'SELECT * FROM clients WHERE client_id = $1', [clientId]);
      return row === undefined ? undefined : clientFromRow(row, POSTGRES_COLUMNS);
    },
    markSignedIn: async (clientId: string, at: number): Promise<void> => {
      await pool.query('UPDATE clients SET first_sign_in_at = $1 WHERE client_id = $2 AND first_sign_in_at IS NULL', [at, clientId]);
    },
    countUnused: async (): Promise<number> => {
      const row = await one<{ n: string }>(pool, 'SELECT COUNT(*) AS n FROM clients WHERE first_sign_in_at IS NULL', []);
      return Number(row?.n ?? 0);
    },
  };

  const consents: ConsentRepository = {
    record: async (userId: string, clientId: string, at: number): Promise<void> => {
      await pool.query('INSERT INTO consents (user_id, client_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
        userId,
        clientId,
        at,
      ]);
    },
    has: async (userId: string, clientId: string): Promise<boolean> => {
      const row = await one(pool, 'SELECT 1 FROM consents WHERE user_id = $1 AND client_id = $2', [userId, clientId]);
      return row !== undefined;
    },
  };

  const pendingAuthorizations: PendingAuthorizationRepository = {
    create: async (pending: PendingAuthorization): Promise<void> => {
      await pool.query(
        `INSERT INTO pending_authorizations (${PENDING_INSERT_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        pendingInsertValues(pending, POSTGRES_COLUMNS),
      );
    },
    find: async (id: string, now: number): Promise<PendingAuthorization | undefined> => {
      const row = await one<PendingRow<boolean>>(pool, 'SELECT * FROM pending_authorizations WHERE id = $1 AND expires_at > $2', [id, now]);
      return row === undefined ? undefined : pendingFromRow(row, POSTGRES_COLUMNS);
    },
    update: async (id: string, change: PendingAuthorizationChange): Promise<void> => {
      // Approval only ever goes from false to true, as in SQLite's max(approved, ?).
      await pool.query(
        `UPDATE pending_authorizations SET user_id = coalesce($1, user_id), approved = approved OR $2,
           csrf_token_hash = coalesce($3, csrf_token_hash)
         WHERE id = $4`,
        [change.userId ?? null, POSTGRES_COLUMNS.writeFlag(change.approved === true), change.csrfTokenHash ?? null, id],
      );
    },
    take: async (id: string, now: number): Promise<PendingAuthorization | undefined> => {
      // One DELETE … RETURNING: of concurrent takers, exactly one gets the row.
      const row = await one<PendingRow<boolean>>(pool, 'DELETE FROM pending_authorizations WHERE id = $1 RETURNING *', [id]);
      return row === undefined || row.expires_at <= now ? undefined : pendingFromRow(row, POSTGRES_COLUMNS);
    },
  };

  const upstreamStates: UpstreamStateRepository = {
    create: async (state: UpstreamState): Promise<void> => {
      await pool.query('INSERT INTO upstream_states (state_hash, pending_id, sealed_code_verifier, expires_at) VALUES ($1, $2, $3, $4)', [
        state.stateHash,
        state.pendingId,
        sealCodeVerifier(key, state.stateHash, state.codeVerifier),
        state.expiresAt,
      ]);
    },
    take: async (stateHash: string, now: number): Promise<UpstreamState | undefined> => {
      const row = await one<UpstreamRow>(pool, 'DELETE FROM upstream_states WHERE state_hash = $1 RETURNING *', [stateHash]);
      return row === undefined || row.expires_at <= now ? undefined : upstreamStateFromRow(key, row);
    },
  };

  const signIns: SignInRepository = {
    create: async (signIn: SignIn): Promise<void> => {
      await pool.query('INSERT INTO sign_ins (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)', [
        signIn.tokenHash,
        signIn.userId,
        signIn.createdAt,
        signIn.expiresAt,
      ]);
    },
    findUserId: async (tokenHash: string, now: number): Promise<string | undefined> => {
      const row = await one<{ user_id: string }>(pool, 'SELECT user_id FROM sign_ins WHERE token_hash = $1 AND expires_at > $2', [
        tokenHash,
        now,
      ]);
      return row?.user_id;
    },
    delete: async (tokenHash: string): Promise<void> => {
      await pool.query('DELETE FROM sign_ins WHERE token_hash = $1', [tokenHash]);
    },
  };

  return { clients, consents, pendingAuthorizations, upstreamStates, signIns };
}
