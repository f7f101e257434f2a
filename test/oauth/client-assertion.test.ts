/**
 * private_key_jwt for clients whose metadata document publishes keys
 * (ChatGPT's does): an assertion signed with a published key authenticates
 * the client; anything else is invalid_client, and nothing is issued.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { CLIENT_REDIRECT, ClientMetadataServer, consentFields, pkce, TestBrowser } from '../support/oauth.js';
import { authorizeUrl, OAuthHarness } from '../support/brokers.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

interface TestKey {
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function testKey(kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

describe('private_key_jwt client authentication', () => {
  let harness: OAuthHarness;
  let host: ClientMetadataServer;
  let clientId: string;
  let published: TestKey;
  let refreshToken: string;
  /** Key rotation: what the client publishes next. */
  let rotateTo: (keys: JWK[]) => void;

  /** A signed assertion; `claims` override the good ones. */
  const assertion = async (
    key: TestKey,
    claims: { iss?: string; sub?: string; aud?: string; exp?: string | number; jti?: string } = {},
  ): Promise<string> =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: key.jwk.kid })
      .setIssuer(claims.iss ?? clientId)
      .setSubject(claims.sub ?? clientId)
      .setAudience(claims.aud ?? harness.url(OAUTH_PATHS.token))
      .setIssuedAt()
      .setExpirationTime(claims.exp ?? '2m')
      .setJti(claims.jti ?? randomUUID())
      .sign(key.privateKey);

  const refreshWith = (params: Record<string, string>) =>
    harness.token({ grant_type: 'refresh_token', refresh_token: refreshToken, ...params });
  const refreshAsserted = async (signed: string) =>
    refreshWith({ client_id: clientId, client_assertion_type: ASSERTION_TYPE, client_assertion: signed });

  before(async () => {
    harness = await OAuthHarness.start();
    published = await testKey('k1');
    let keys = [published.jwk];
    host = await ClientMetadataServer.start(() => ({}), 'http');
    const jwksUri = host.publish('/jwks.json', () => ({ keys }));
    clientId = host.publish('/client.json', (url) => ({
      client_id: url,
      client_name: 'Key Holder',
      redirect_uris: [CLIENT_REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'private_key_jwt',
      // Offering none as well does not make a client with published keys a public one.
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'],
      token_endpoint_auth_signing_alg: 'ES256',
      jwks_uri: jwksUri,
    }));
    rotateTo = (next) => {
      keys = next;
    };
    const browser = new TestBrowser();
    const { challenge, verifier } = await pkce();
    harness.forgejo.setAutoLogin('alice');
    const consent = await browser.follow(authorizeUrl(harness, clientId, challenge), CLIENT_REDIRECT);
    if (consent.kind !== 'page') assert.fail('expected the consent page');
    const done = await browser.follow(harness.url(OAUTH_PATHS.consent), CLIENT_REDIRECT, {
      form: { ...consentFields(consent.html), decision: 'approve' },
    });
    if (done.kind !== 'redirect') assert.fail('expected the redirect to the client');
    const tokens = await harness.token({
      grant_type: 'authorization_code',
      code: done.params.get('code') as string,
      redirect_uri: CLIENT_REDIRECT,
      code_verifier: verifier,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(published),
    });
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    refreshToken = tokens.body.refresh_token as string;
  });
  after(async () => {
    await host.close();
    await harness.close();
  });

  function refused(response: Awaited<ReturnType<OAuthHarness['token']>>, reason: RegExp): void {
    assert.equal(response.status, 401, JSON.stringify(response.body));
    assert.equal(response.body.error, 'invalid_client');
    assert.match(response.body.error_description as string, reason);
    assert.equal(response.body.access_token, undefined);
  }

  it('the metadata offers private_key_jwt and the algorithms it takes', async () => {
    const metadata = (await (await fetch(harness.url(OAUTH_PATHS.authorizationServerMetadata))).json()) as Record<string, string[]>;
    assert.ok(metadata.token_endpoint_auth_methods_supported?.includes('private_key_jwt'));
    assert.ok(metadata.token_endpoint_auth_signing_alg_values_supported?.includes('ES256'));
    assert.ok(!metadata.token_endpoint_auth_signing_alg_values_supported?.includes('HS256'));
  });

  it('refuses a client that declared private_key_jwt and published keys when it sends no assertion, though it offers none', async () => {
    refused(await refreshWith({ client_id: clientId }), /must use private_key_jwt/);
  });

  it('refuses an assertion signed by a key the client did not publish', async () => {
    const stranger = await testKey('k1');
    refused(await refreshAsserted(await assertion(stranger)), /client assertion refused/);
  });

  it('refuses wrong audience, issuer or subject, and an expired or half-hour assertion', async () => {
    refused(await refreshAsserted(await assertion(published, { aud: 'https://elsewhere.example/token' })), /refused/);
    refused(await refreshAsserted(await assertion(published, { iss: 'https://elsewhere.example/client.json' })), /refused/);
    refused(await refreshAsserted(await assertion(published, { sub: 'someone-else' })), /refused/);
    refused(await refreshAsserted(await assertion(published, { exp: Math.floor(Date.now() / 1000) - 120 })), /refused/);
    refused(await refreshAsserted(await assertion(published, { exp: '30m' })), /longer than ten minutes/);
  });

  it('refuses unsigned and HMAC assertions whatever they claim', async () => {
    const header = (alg: string) => Buffer.from(JSON.stringify({ alg, kid: 'k1' })).toString('base64url');
    const payload = Buffer.from(
      JSON.stringify({
        iss: clientId,
        sub: clientId,
        aud: harness.url(OAUTH_PATHS.token),
        exp: Math.floor(Date.now() / 1000) + 60,
        jti: randomUUID(),
      }),
    ).toString('base64url');
    refused(await refreshAsserted(`${header('none')}.${payload}.`), /refused/);
    const hmac = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(harness.url(OAUTH_PATHS.token))
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(JSON.stringify(published.jwk)));
    refused(await refreshAsserted(hmac), /refused/);
    refused(await refreshAsserted('not-a-jwt'), /refused/);
    // Without client_id the assertion must name the client; one that is no JWT names nobody.
    refused(await refreshWith({ client_assertion_type: ASSERTION_TYPE, client_assertion: 'not-a-jwt' }), /not a JWT/);
  });

  it('an assertion proves possession once: a replay is refused', async () => {
    const jti = randomUUID();
    const first = await refreshAsserted(await assertion(published, { jti }));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    refreshToken = first.body.refresh_token as string;
    refused(await refreshAsserted(await assertion(published, { jti })), /already used/);
  });

  it('without client_id, the assertion names the client (RFC 7523 §3)', async () => {
    const response = await refreshWith({ client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(published) });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    refreshToken = response.body.refresh_token as string;
  });

  it('follows a key rotation: an unknown kid fetches the key set again', async () => {
    const next = await testKey('k2');
    rotateTo([published.jwk, next.jwk]);
    // The key set was fetched moments ago; it is fetched again for an unknown kid once a minute has passed.
    harness.clockOffsetMs += 61_000;
    try {
      const rotated = await refreshAsserted(await assertion(next));
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
      refreshToken = rotated.body.refresh_token as string;
    } finally {
      harness.clockOffsetMs -= 61_000;
    }
  });
});
