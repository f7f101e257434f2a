/**
 * Several processes of one client sharing one refresh token (Claude Code
 * does this) and refreshing at different times, with the broker's default
 * settings: the immediately previous refresh token yields its successor for
 * as long as the successor is unused; once it was used, presenting the old
 * token again is a reuse and revokes the family (RFC 9700 §4.14.2).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OAuthHarness, type RegisteredTestClient, signedInTokens } from '../support/brokers.js';

describe('sibling processes refreshing one refresh token', () => {
  let harness: OAuthHarness;
  let client: RegisteredTestClient;
  before(async () => {
    harness = await OAuthHarness.start();
    client = await harness.register();
  });
  after(async () => {
    await harness.close();
  });

  const refresh = (refreshToken: string) =>
    harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: refreshToken });

  it('one refreshes, the other a minute later with the same token: both keep working, on one successor', async () => {
    const shared = await signedInTokens(harness, client);
    const first = await refresh(shared.refreshToken);
    assert.equal(first.status, 200);
    harness.clockOffsetMs += 60_000;
    try {
      const second = await refresh(shared.refreshToken);
      assert.equal(second.status, 200, JSON.stringify(second.body));
      assert.equal(second.body.refresh_token, first.body.refresh_token, 'both processes now hold the successor');
      assert.equal((await harness.mcp(first.body.access_token as string)).status, 200);
      assert.equal((await harness.mcp(second.body.access_token as string)).status, 200);
      // Either process refreshing the successor carries the family on.
      const next = await refresh(first.body.refresh_token as string);
      assert.equal(next.status, 200);
      assert.equal((await harness.mcp(next.body.access_token as string)).status, 200);
    } finally {
      harness.clockOffsetMs -= 60_000;
    }
  });

  it('a sibling that comes back after the issued access token expired gets the successor refreshed on its behalf, once', async () => {
    const shared = await signedInTokens(harness, client);
    const first = await refresh(shared.refreshToken);
    harness.clockOffsetMs += 2 * 3_600_000;
    try {
      assert.equal((await harness.mcp(first.body.access_token as string)).status, 401, 'the first access token has expired');
      const late = await refresh(shared.refreshToken);
      assert.equal(late.status, 200, JSON.stringify(late.body));
      assert.notEqual(late.body.refresh_token, first.body.refresh_token, 'the successor was refreshed for it');
      assert.ok((late.body.expires_in as number) > 3000);
      assert.equal((await harness.mcp(late.body.access_token as string)).status, 200);
      // The other process, holding the successor, catches up with the same pair: one family, one token.
      const other = await refresh(first.body.refresh_token as string);
      assert.equal(other.status, 200, JSON.stringify(other.body));
      assert.equal(other.body.refresh_token, late.body.refresh_token);
      // The first token has had its one extra hop: presented again, it is a reuse.
      const again = await refresh(shared.refreshToken);
      assert.equal(again.body.error, 'invalid_grant');
      assert.equal((await harness.mcp(late.body.access_token as string)).status, 401, 'the family is revoked');
    } finally {
      harness.clockOffsetMs -= 2 * 3_600_000;
    }
  });

  it('a thief keeping pace with the client is not told apart from a sibling; falling two rotations behind is', async () => {
    // The trade-off README "Sibling refreshes" documents, pinned so that a change to it is a decision.
    const shared = await signedInTokens(harness, client);
    let clientToken = shared.refreshToken;
    let thiefToken = shared.refreshToken;
    for (let round = 0; round < 3; round++) {
      const byClient = await refresh(clientToken);
      assert.equal(byClient.status, 200);
      const byThief = await refresh(thiefToken);
      assert.equal(byThief.status, 200, 'the previous token while its successor is unused');
      clientToken = byClient.body.refresh_token as string;
      thiefToken = byThief.body.refresh_token as string;
      assert.equal(thiefToken, clientToken);
    }
    const stale = shared.refreshToken;
    assert.equal((await refresh(stale)).body.error, 'invalid_grant', 'two rotations behind');
    assert.equal((await refresh(clientToken)).body.error, 'invalid_grant', 'and the family is revoked');
  });

  it('a third use of a token whose successor was already used revokes the family', async () => {
    const shared = await signedInTokens(harness, client);
    const first = await refresh(shared.refreshToken);
    const second = await refresh(first.body.refresh_token as string);
    assert.equal(second.status, 200);
    const stale = await refresh(shared.refreshToken);
    assert.equal(stale.status, 400);
    assert.equal(stale.body.error, 'invalid_grant');
    assert.equal(stale.body.access_token, undefined);
    assert.equal((await harness.mcp(second.body.access_token as string)).status, 401, 'the family is revoked');
    assert.equal((await refresh(second.body.refresh_token as string)).body.error, 'invalid_grant');
  });
});

describe('sibling tolerance switched off (BROKER_REFRESH_GRACE=0)', () => {
  it('the previous refresh token is a reuse at once, and revokes the family', async () => {
    const harness = await OAuthHarness.start({ refreshGraceMs: 0 });
    try {
      const client = await harness.register();
      const shared = await signedInTokens(harness, client);
      const refresh = (refreshToken: string) =>
        harness.token({ grant_type: 'refresh_token', client_id: client.clientId, refresh_token: refreshToken });
      const first = await refresh(shared.refreshToken);
      assert.equal(first.status, 200);
      assert.equal((await refresh(shared.refreshToken)).body.error, 'invalid_grant');
      assert.equal((await harness.mcp(first.body.access_token as string)).status, 401);
    } finally {
      await harness.close();
    }
  });
});
