/** Sign-ins, consents and revocations at the OAuth server are reported for the audit log. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SecurityEvent } from '../../src/audit/security-events.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { OAuthHarness, signedInTokens } from '../support/brokers.js';

test('a sign-in reports the consent and the sign-in; a client revoking its refresh token reports the revocation', async (t) => {
  const events: SecurityEvent[] = [];
  const harness = await OAuthHarness.start({ securityEvents: (event) => events.push(event) });
  t.after(() => harness.close());
  const client = await harness.register();
  const { refreshToken } = await signedInTokens(harness, client, 'alice');
  assert.deepEqual(
    events.map((event) => [event.kind, event.clientId, event.detail]),
    [
      ['consent', client.clientId, 'client approved'],
      ['sign_in', client.clientId, 'authorization code issued'],
    ],
  );
  const userId = events[0]?.userId;
  assert.ok(userId !== null && userId !== undefined);
  const response = await fetch(harness.url(OAUTH_PATHS.revoke), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: refreshToken, client_id: client.clientId }).toString(),
  });
  assert.equal(response.status, 200);
  assert.deepEqual(events.at(-1), {
    kind: 'revocation',
    userId,
    clientId: client.clientId,
    detail: 'refresh token revoked by the client; grant ended',
  });
});
