/**
 * Each `forgejo-mcp-broker admin` command as the real executable on both
 * stores: what --json prints, what the tables say, and the exit status and
 * message of every kind of mistake.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { AuditEntry } from '../../src/admin/audit.js';
import { MCP_PATH } from '../../src/http/route.js';
import type { SignedInTestBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { CLIENT_REDIRECT, discoverBroker, registerClient } from '../support/oauth.js';
import { adminJson, forEachStore, runAdmin, signIn, type SignedInUser } from './support.js';

interface UsersDocument {
  users: { userId: string; login: string; credential: string; activeGrants: number; lastSignInAt: string; lastUsedAt: string | null }[];
}
interface ClientsDocument {
  clients: { clientId: string; name: string | null; kind: string; redirectUris: string[]; users: number; firstSignInAt: string | null }[];
}
interface GrantsDocument {
  grants: { grantId: string; login: string; clientId: string; clientName: string | null; createdAt: string; revokedAt: string | null }[];
}

forEachStore('admin commands', (store) => {
  let broker: SignedInTestBroker;
  let env: Record<string, string>;
  let erin: SignedInUser;
  let unusedClientId: string;

  before(async () => {
    broker = await store.start(`admin-commands-${store.kind}`);
    env = store.adminEnv(broker);
    erin = await signIn(broker, 'erin', 'Erin Tool');
    unusedClientId = (await registerClient(await discoverBroker(`${broker.url}${MCP_PATH}`), 'Never Used', [CLIENT_REDIRECT])).clientId;
  });

  after(() => broker?.close());

  it('users --json lists who signed in, with the credential, active grants and last use', async () => {
    const { users } = await adminJson<UsersDocument>(['users'], env);
    assert.equal(users.length, 1);
    const [user] = users;
    assert.equal(user?.login, 'erin');
    assert.equal(user?.userId, erin.userId);
    assert.equal(user?.credential, 'alive');
    assert.equal(user?.activeGrants, 1);
    assert.ok(user?.lastUsedAt !== null && !Number.isNaN(Date.parse(user?.lastUsedAt ?? '')), 'last used when the token was issued');
    const table = await runAdmin(['users'], env);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /^LOGIN\s+USER ID\s+CREDENTIAL/);
    assert.match(table.stdout, /\nerin\s+5\s+alive\s+1\s/);
  });

  it('clients --json lists registrations, used or not, with their users', async () => {
    const { clients } = await adminJson<ClientsDocument>(['clients'], env);
    const used = clients.find((client) => client.clientId === erin.clientId);
    const unused = clients.find((client) => client.clientId === unusedClientId);
    assert.equal(used?.name, 'Erin Tool');
    assert.equal(used?.kind, 'registered');
    assert.deepEqual(used?.redirectUris, [CLIENT_REDIRECT]);
    assert.equal(used?.users, 1);
    assert.notEqual(used?.firstSignInAt, null);
    assert.equal(unused?.name, 'Never Used');
    assert.equal(unused?.users, 0);
    assert.equal(unused?.firstSignInAt, null);
  });

  it('grants --json [--user LOGIN] lists grants with their client; an unknown login exits 1 saying so', async () => {
    const all = await adminJson<GrantsDocument>(['grants'], env);
    const mine = await adminJson<GrantsDocument>(['grants', '--user', 'ERIN'], env);
    assert.deepEqual(mine, all, 'logins match case-insensitively');
    assert.equal(mine.grants.length, 1);
    assert.equal(mine.grants[0]?.clientId, erin.clientId);
    assert.equal(mine.grants[0]?.clientName, 'Erin Tool');
    assert.equal(mine.grants[0]?.revokedAt, null);
    const nobody = await runAdmin(['grants', '--user', 'nobody'], env);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /no user "nobody" has signed in/);
  });

  it('audit --json [--user LOGIN] shows what the running broker recorded: the sign-in and the consent', async () => {
    await eventually(async () => {
      const kinds = new Set((await adminJson<AuditEntry[]>(['audit', '--user', 'erin'], env)).map((entry) => entry.kind));
      return kinds.has('sign_in') && kinds.has('consent');
    }, "erin's sign-in and consent in the audit log");
    assert.deepEqual(await adminJson<AuditEntry[]>(['audit', '--user', 'nobody'], env), []);
    const table = await runAdmin(['audit', '--limit', '1'], env);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /^TIME +USER +CLIENT/);
  });

  it('purge-clients removes only never-used registrations, and spares young ones by default', async () => {
    const spared = await adminJson<{ purged: string[]; count: number }>(['purge-clients'], env);
    assert.deepEqual(spared, { purged: [], count: 0 }, 'registered moments ago: a sign-in may be under way');
    const purged = await adminJson<{ purged: string[]; count: number }>(['purge-clients', '--older-than', '0'], env);
    assert.deepEqual(purged, { purged: [unusedClientId], count: 1 });
    const ids = (await adminJson<ClientsDocument>(['clients'], env)).clients.map((client) => client.clientId);
    assert.ok(ids.includes(erin.clientId), 'the used client stays');
    assert.ok(!ids.includes(unusedClientId));
  });

  it('revoke --grant ends one grant and keeps the approval; revoke --client ends the client for everyone and forgets approvals', async () => {
    const second = await signIn(broker, 'erin', 'Erin Second Tool', erin.agent);
    const [grant] = (await adminJson<GrantsDocument>(['grants', '--user', 'erin'], env)).grants.filter(
      (candidate) => candidate.clientId === erin.clientId,
    );
    assert.ok(grant);
    const byGrant = await adminJson<{ revoked: { kind: string; grantId: string }; grants: number; consents: number }>(
      ['revoke', '--grant', grant.grantId],
      env,
    );
    assert.equal(byGrant.revoked.kind, 'grant');
    assert.equal(byGrant.revoked.grantId, grant.grantId);
    assert.equal(byGrant.grants, 1);
    assert.equal(byGrant.consents, 0);
    const byClient = await adminJson<{ revoked: { kind: string; clientId: string }; grants: number; consents: number }>(
      ['revoke', '--client', second.clientId],
      env,
    );
    assert.deepEqual(
      [byClient.revoked.kind, byClient.revoked.clientId, byClient.grants, byClient.consents],
      ['client', second.clientId, 1, 1],
    );
    assert.deepEqual((await adminJson<GrantsDocument>(['grants'], env)).grants, [], 'no active grant left');
    const history = (await adminJson<GrantsDocument>(['grants', '--all'], env)).grants;
    assert.equal(history.length, 2);
    assert.ok(history.every((entry) => entry.revokedAt !== null));
    const text = await runAdmin(['revoke', '--grant', grant.grantId], env);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^Revoked grant .* 0 grants, 0 approvals/, 'revoking again changes nothing');
    const revocations = (await adminJson<AuditEntry[]>(['audit'], env)).filter((entry) => entry.detail?.startsWith('admin revoke: '));
    assert.deepEqual(
      revocations.map((entry) => [entry.kind, entry.clientId]).reverse(),
      [
        ['revocation', null],
        ['revocation', second.clientId],
        ['revocation', null],
      ],
      'each admin revoke is in the audit log',
    );
  });

  it('mistakes exit 2 (the command line) or 1 (nothing to act on) with a message saying what is wrong', async () => {
    const cases: [string[], number, RegExp][] = [
      [[], 2, /Usage: forgejo-mcp-broker admin <command>/],
      [['frob'], 2, /unknown admin command "frob": the commands are users, clients, grants, revoke, purge-clients/],
      [['revoke'], 2, /exactly one of --user LOGIN, --client ID, --grant ID/],
      [['revoke', '--user', 'erin', '--client', 'x'], 2, /exactly one of/],
      [['revoke', '--user'], 2, /--user: needs a value/],
      [['users', '--user', 'erin'], 2, /--user: is not an option of admin users/],
      [['users', 'extra'], 2, /unexpected argument "extra"/],
      [['users', '--lisen', 'x'], 2, /did you mean --listen\?/],
      [['purge-clients', '--older-than', 'soon'], 2, /"soon" is not a duration/],
      [['revoke', '--client', 'no-such-client'], 1, /no client "no-such-client"/],
      [['revoke', '--grant', 'no-such-grant'], 1, /no grant "no-such-grant"/],
    ];
    for (const [args, code, message] of cases) {
      const run = await runAdmin(args, env);
      assert.equal(run.code, code, `admin ${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, `admin ${args.join(' ')}`);
      assert.equal(run.stdout, '', `admin ${args.join(' ')} prints nothing on stdout`);
    }
    const help = await runAdmin(['revoke', '--help'], {});
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: forgejo-mcp-broker admin revoke \(--user LOGIN \| --client ID \| --grant ID\) \[--json\]/);
    const overview = await runAdmin(['--help'], {});
    assert.equal(overview.code, 0);
    for (const command of ['users', 'clients', 'grants', 'revoke', 'purge-clients'])
      assert.match(overview.stdout, new RegExp(`\\n  ${command} `));
  });
});

it('admin refuses a data directory without a broker database instead of creating one', async () => {
  const run = await runAdmin(['users'], { BROKER_DATA_DIR: '/nonexistent/broker-data' });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /no broker database at \/nonexistent\/broker-data\/broker\.db/);
});
