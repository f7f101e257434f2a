import { ConfigError } from '../config/config.js';
import { BrokerError } from '../errors/errors.js';
import type { RevocationOutcome, RevocationTarget } from '../store/admin-store.js';
import type { AuditRecord } from '../store/audit-records.js';
import type { Store } from '../store/store.js';
import { durationFlag, valueFlag, type AdminArguments, type AdminFlag } from './arguments.js';
import { jsonTime, shownTime, table } from './render.js';

/** What a command works with: the store `serve` uses, opened without a broker. */
export interface AdminContext {
  readonly store: Store;
  readonly now: () => number;
}

/** A command's answer, in both forms: `json` printed with --json, `text` otherwise. */
export interface AdminResult {
  readonly json: unknown;
  readonly text: string;
}

export interface AdminCommand {
  /** One line for `admin --help`. */
  readonly summary: string;
  /** The synopsis after `forgejo-mcp-broker admin `. */
  readonly synopsis: string;
  /** Further lines for `admin <command> --help`. */
  readonly details: readonly string[];
  /** The admin flags it takes (--json always among them). */
  readonly flags: readonly AdminFlag[];
  run(context: AdminContext, args: AdminArguments): Promise<AdminResult>;
}

/** A sign-in in progress must finish within the pending authorization's lifetime: registrations younger than this are spared. */
const PURGE_DEFAULT_AGE_MS = 3_600_000;

export const users: AdminCommand = {
  summary: 'List the users who signed in, with their Forgejo credential and grants.',
  synopsis: 'users [--json]',
  details: ['CREDENTIAL is alive, ended (Forgejo refused it, or it expired unrefreshed), or none.', ''],
  flags: ['json'],
  run: async ({ store }) => {
    const list = await store.admin.users();
    return {
      json: {
        users: list.map((user) => ({
          userId: user.userId,
          login: user.forgejoLogin,
          firstSignInAt: jsonTime(user.firstSignInAt),
          lastSignInAt: jsonTime(user.lastSignInAt),
          credential: user.credential,
          activeGrants: user.activeGrants,
          lastUsedAt: jsonTime(user.lastUsedAt),
        })),
      },
      text: table(
        ['LOGIN', 'USER ID', 'CREDENTIAL', 'GRANTS', 'LAST SIGN-IN', 'LAST USED'],
        list.map((user) => [
          user.forgejoLogin,
          user.userId,
          user.credential,
          String(user.activeGrants),
          shownTime(user.lastSignInAt),
          shownTime(user.lastUsedAt),
        ]),
        'No user has signed in.',
      ),
    };
  },
};

export const clients: AdminCommand = {
  summary: 'List the OAuth clients: registered ones, and metadata-document clients that hold grants.',
  synopsis: 'clients [--json]',
  details: ['A registered client without a first sign-in has never been used (see purge-clients).', ''],
  flags: ['json'],
  run: async ({ store }) => {
    const list = await store.admin.clients();
    return {
      json: {
        clients: list.map((client) => ({
          clientId: client.clientId,
          name: client.clientName,
          kind: client.kind,
          redirectUris: client.redirectUris,
          createdAt: jsonTime(client.createdAt),
          firstSignInAt: jsonTime(client.firstSignInAt),
          users: client.users,
          activeGrants: client.activeGrants,
          lastUsedAt: jsonTime(client.lastUsedAt),
        })),
      },
      text: table(
        ['CLIENT ID', 'NAME', 'KIND', 'USERS', 'GRANTS', 'REGISTERED', 'FIRST SIGN-IN', 'LAST USED'],
        list.map((client) => [
          client.clientId,
          client.clientName ?? '-',
          client.kind,
          String(client.users),
          String(client.activeGrants),
          shownTime(client.createdAt),
          shownTime(client.firstSignInAt),
          shownTime(client.lastUsedAt),
        ]),
        'No client is registered.',
      ),
    };
  },
};

export const grants: AdminCommand = {
  summary: 'List the grants (a user signed in from a client), newest first.',
  synopsis: 'grants [--user LOGIN] [--all] [--json]',
  details: ['--user LOGIN  Only this Forgejo user.', '--all         Revoked grants too.', ''],
  flags: ['json', 'user', 'all'],
  run: async ({ store }, args) => {
    const login = valueFlag(args, 'user');
    const user = login === undefined ? undefined : await requireUser(store, login);
    const list = await store.admin.grants({
      ...(user === undefined ? {} : { userId: user.userId }),
      includeRevoked: args.flags.has('all'),
    });
    return {
      json: {
        grants: list.map((grant) => ({
          grantId: grant.grantId,
          userId: grant.userId,
          login: grant.forgejoLogin,
          clientId: grant.clientId,
          clientName: grant.clientName,
          createdAt: jsonTime(grant.createdAt),
          lastUsedAt: jsonTime(grant.lastUsedAt),
          revokedAt: jsonTime(grant.revokedAt),
        })),
      },
      text: table(
        ['GRANT ID', 'LOGIN', 'CLIENT', 'CREATED', 'LAST USED', 'REVOKED'],
        list.map((grant) => [
          grant.grantId,
          grant.forgejoLogin ?? grant.userId,
          grant.clientName === null ? grant.clientId : `${grant.clientName} (${grant.clientId})`,
          shownTime(grant.createdAt),
          shownTime(grant.lastUsedAt),
          shownTime(grant.revokedAt),
        ]),
        user === undefined ? 'No grant.' : `No grant for ${user.forgejoLogin}.`,
      ),
    };
  },
};

export const revoke: AdminCommand = {
  summary: "End a user's, a client's or one grant's access, on every running broker within about a second.",
  synopsis: 'revoke (--user LOGIN | --client ID | --grant ID) [--json]',
  details: [
    '--user LOGIN  Every grant of the user, their approvals and broker sign-ins.',
    '--client ID   Every grant of the client, for every user, and its approvals.',
    '--grant ID    One grant (its approval stays).',
    '',
    'Running brokers (every replica on the store) refuse the revoked tokens and end the live',
    'sessions and children within about a second. The user',
    'may sign in again: to keep someone out, block the account at Forgejo.',
    '',
  ],
  flags: ['json', 'user', 'client', 'grant'],
  run: async ({ store, now }, args) => {
    const given = (['user', 'client', 'grant'] as const).filter((flag) => args.flags.has(flag));
    if (given.length !== 1) {
      throw new ConfigError('command line', 'admin revoke takes exactly one of --user LOGIN, --client ID, --grant ID');
    }
    const [target, what] = await revocationTarget(
      store,
      given[0] as 'user' | 'client' | 'grant',
      valueFlag(args, given[0] as AdminFlag) ?? '',
    );
    const outcome = await store.revocations.revoke(target, now());
    await store.audit.append([adminRevocationRecord(target, what, now())]);
    return { json: revocationJson(outcome, what), text: revocationText(outcome, what) };
  },
};

export const purgeClients: AdminCommand = {
  summary: 'Delete registered clients that never completed a sign-in.',
  synopsis: 'purge-clients [--older-than DURATION] [--json]',
  details: [
    '--older-than DURATION  Only registrations at least this old (default 1h, so that a',
    '                       sign-in in progress finishes); 0 for all of them.',
    '',
  ],
  flags: ['json', 'older-than'],
  run: async ({ store, now }, args) => {
    const age = durationFlag(args, 'older-than', PURGE_DEFAULT_AGE_MS);
    const purged = await store.admin.purgeUnusedClients(now() - age);
    return {
      json: { purged, count: purged.length },
      text:
        purged.length === 0
          ? 'No never-used registration to delete.\n'
          : `Deleted ${purged.length} never-used registration${purged.length === 1 ? '' : 's'}:\n${purged.map((id) => `  ${id}\n`).join('')}`,
    };
  },
};

async function requireUser(store: Store, login: string): Promise<{ userId: string; forgejoLogin: string }> {
  const user = await store.admin.findUserByLogin(login);
  if (user === undefined)
    throw new BrokerError('not_found', `no user "${login}" has signed in (forgejo-mcp-broker admin users lists them)`);
  return user;
}

async function revocationTarget(store: Store, flag: 'user' | 'client' | 'grant', value: string): Promise<[RevocationTarget, string]> {
  switch (flag) {
    case 'user': {
      const user = await requireUser(store, value);
      return [{ kind: 'user', userId: user.userId }, `user ${user.forgejoLogin} (id ${user.userId})`];
    }
    case 'client': {
      const known = (await store.admin.clients()).find((client) => client.clientId === value);
      if (known === undefined) throw new BrokerError('not_found', `no client "${value}" (forgejo-mcp-broker admin clients lists them)`);
      return [{ kind: 'client', clientId: value }, `client ${known.clientName === null ? value : `${known.clientName} (${value})`}`];
    }
    case 'grant': {
      const grant = await store.admin.findGrant(value);
      if (grant === undefined) throw new BrokerError('not_found', `no grant "${value}" (forgejo-mcp-broker admin grants --all lists them)`);
      return [{ kind: 'grant', grantId: value }, `grant ${value} of ${grant.forgejoLogin ?? grant.userId} for ${grant.clientId}`];
    }
  }
}

/** The audit log's line for a revocation made here (the brokers record those made through them). */
function adminRevocationRecord(target: RevocationTarget, what: string, at: number): AuditRecord {
  return {
    at,
    kind: 'revocation',
    userId: target.kind === 'user' ? target.userId : null,
    forgejoLogin: null,
    clientId: target.kind === 'client' ? target.clientId : null,
    clientName: null,
    era: null,
    sessionRef: null,
    tool: null,
    outcome: 'ok',
    errorCode: null,
    detail: `admin revoke: ${what}`,
    durationMs: null,
    requestBytes: null,
    responseBytes: null,
    argumentsSha256: null,
    arguments: null,
  };
}

function revocationJson(outcome: RevocationOutcome, what: string): unknown {
  const { revocation } = outcome;
  return {
    revoked: { ...revocation.target, description: what },
    revocationId: revocation.id,
    at: jsonTime(revocation.at),
    grants: outcome.grants,
    consents: outcome.consents,
    signIns: outcome.signIns,
    storedSessions: outcome.storedSessions,
  };
}

function revocationText(outcome: RevocationOutcome, what: string): string {
  const counted = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;
  return (
    `Revoked ${what}: ${counted(outcome.grants, 'grant')}, ${counted(outcome.consents, 'approval')}, ` +
    `${counted(outcome.signIns, 'sign-in')}, ${counted(outcome.storedSessions, 'stored session')}.\n` +
    'Their tokens answer 401 now; running brokers end the live sessions within about a second.\n'
  );
}
