/**
 * `forgejo-mcp-broker admin revoke`, run as the real executable against the
 * store of a running broker: the broker learns it from the store and ends
 * the revoked user's live sessions of both eras within two seconds, their
 * tokens answer 401, and everyone else carries on.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import type { SignedInTestBroker } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { adminJson, forEachStore, modernRequest, openLegacySession, runAdmin, signIn, tokenStatus, type SignedInUser } from './support.js';

/** The bound the issue sets: a watchdog, not a measurement the test relies on. */
const REVOCATION_BOUND_MS = 2_000;

forEachStore('admin revoke on a running broker', (store) => {
  let broker: SignedInTestBroker;
  let carol: SignedInUser;
  let dave: SignedInUser;
  let carolSession: Client;
  let daveSession: Client;

  before(async () => {
    broker = await store.start(`admin-revoke-${store.kind}`);
    carol = await signIn(broker, 'carol', 'Carol Editor');
    dave = await signIn(broker, 'dave', 'Dave Editor');
    carolSession = await openLegacySession(broker, carol);
    daveSession = await openLegacySession(broker, dave);
    const modern = await modernRequest(broker, carol, 'tools/list');
    assert.equal(modern.status, 200);
    await modern.body?.cancel();
  });

  after(async () => {
    await carolSession?.close().catch(() => undefined);
    await daveSession?.close().catch(() => undefined);
    await broker?.close();
  });

  it("--user ends that user's legacy session and modern channel within 2 s, their tokens answer 401, others are unaffected", async (t) => {
    const { legacy, modern } = broker.broker;
    assert.equal(legacy.sessionIdsOf(carol.userId).length, 1);
    assert.equal(modern.sessionsOf(carol.userId).length, 1);
    assert.equal(await tokenStatus(broker, carol), 400, "carol's token works before (a request without a session id)");

    const run = await runAdmin(['revoke', '--user', 'carol', '--json'], store.adminEnv(broker));
    const revokedAt = Date.now();
    assert.equal(run.code, 0, run.stderr);
    const outcome = JSON.parse(run.stdout) as { revoked: { kind: string; userId: string }; grants: number; consents: number };
    assert.deepEqual({ kind: outcome.revoked.kind, userId: outcome.revoked.userId }, { kind: 'user', userId: carol.userId });
    assert.equal(outcome.grants, 1);
    assert.equal(outcome.consents, 1);

    // The broker's token cache learns it from the log as the sessions do: 401 within the same bound.
    await eventually(async () => (await tokenStatus(broker, carol)) === 401, "carol's token answers 401", REVOCATION_BOUND_MS);
    await eventually(
      () => legacy.sessionIdsOf(carol.userId).length === 0 && modern.sessionsOf(carol.userId).length === 0,
      "carol's live sessions end",
      REVOCATION_BOUND_MS,
    );
    t.diagnostic(`${store.kind}: from admin revoke's exit to carol's sessions ended: ${Date.now() - revokedAt} ms`);
    await assert.rejects(carolSession.listTools(), 'her session is gone');

    assert.equal(legacy.sessionIdsOf(dave.userId).length, 1, "dave's session stays");
    assert.ok((await daveSession.listTools()).tools.length > 0, "dave's session still serves");
    assert.equal(await tokenStatus(broker, dave), 400, "dave's token still works");
    const grants = await adminJson<{ grants: { login: string }[] }>(['grants'], store.adminEnv(broker));
    assert.deepEqual(
      grants.grants.map((grant) => grant.login),
      ['dave'],
    );
  });
});
