/**
 * The client zoo: each MCP client people use, replayed against the
 * production broker with what it really sends (client-zoo-fixtures.ts):
 * discovery → registration or its metadata document → authorize → consent
 * → Forgejo login → token → tools/call → refresh → revoke. Every step is
 * taken the way that client takes it, from the URLs the broker's metadata
 * names, so a broker that refuses one of them fails here.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { E2EBroker, e2eUser } from '../support/brokers.js';
import { ClientMetadataServer, pkce, TestBrowser } from '../support/oauth.js';
import { approveAndSignIn, CLIENT_INFO, getMe } from '../support/mcp-clients.js';
import { ZOO, ZOO_WITHOUT_CIMD, type ZooClient } from './client-zoo-fixtures.js';

const INSPECTOR_ORIGIN = 'http://localhost:6274';
const USER = e2eUser('carol');

interface Discovered {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
  readonly registration_endpoint: string;
  readonly revocation_endpoint: string;
  readonly client_id_metadata_document_supported: boolean;
  readonly token_endpoint_auth_methods_supported: string[];
  readonly scopes_supported: string[];
}

/** The client's key for private_key_jwt; its public half is published beside its metadata document. */
interface SigningKey {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

class ZooRun {
  readonly #broker: E2EBroker;
  readonly #documents: ClientMetadataServer;
  readonly #key: SigningKey;
  readonly #jwksUri: string;
  #nextPort = 49_152;

  constructor(broker: E2EBroker, documents: ClientMetadataServer, key: SigningKey) {
    this.#broker = broker;
    this.#documents = documents;
    this.#key = key;
    this.#jwksUri = documents.publish('/chatgpt.com/oauth/jwks.json', () => ({ keys: [key.publicJwk] }));
  }

  /** A request as the client sends it: its Origin when it is a web page; CORS checked on every answer. */
  async #fetch(client: ZooClient, url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (client.origin !== undefined) headers.set('origin', client.origin);
    const response = await fetch(url, { ...init, headers });
    if (client.origin !== undefined) {
      const allowed = response.headers.get('access-control-allow-origin');
      assert.ok(
        allowed === '*' || allowed === client.origin,
        `${init.method ?? 'GET'} ${url} answered ${response.status} without CORS for ${client.origin}`,
      );
    }
    return response;
  }

  async run(client: ZooClient): Promise<void> {
    const mcpUrl = this.#broker.mcpUrl;
    // 1. The 401 challenge names the resource metadata; that names the authorization server.
    const challenge = await this.#fetch(client, mcpUrl.href, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: CLIENT_INFO },
      }),
    });
    assert.equal(challenge.status, 401);
    const resourceMetadataUrl = /resource_metadata="([^"]+)"/.exec(challenge.headers.get('www-authenticate') ?? '')?.[1];
    assert.ok(resourceMetadataUrl, 'the challenge names the resource metadata');
    const resourceMetadata = (await (await this.#fetch(client, resourceMetadataUrl)).json()) as {
      resource: string;
      authorization_servers: string[];
    };
    assert.equal(resourceMetadata.resource, mcpUrl.href);
    const issuer = resourceMetadata.authorization_servers[0] as string;
    const metadata = (await (await this.#fetch(client, `${issuer}/.well-known/oauth-authorization-server`)).json()) as Discovered;
    assert.equal(metadata.issuer, issuer);
    assert.deepEqual(metadata.scopes_supported, []);

    // 2. Who the client is: its metadata document where the server takes them, else a registration.
    const credentials = await this.#identify(client, metadata);

    // 3. The person at the browser: consent, then Forgejo's login; back at the client's redirect URI.
    const redirectUri = client.redirectUri.replace('{port}', String(this.#nextPort++));
    const { challenge: codeChallenge, verifier } = await pkce();
    const state = randomUUID();
    const authorization = new URL(metadata.authorization_endpoint);
    authorization.searchParams.set('response_type', 'code');
    authorization.searchParams.set('client_id', credentials.clientId);
    authorization.searchParams.set('redirect_uri', redirectUri);
    authorization.searchParams.set('code_challenge', codeChallenge);
    authorization.searchParams.set('code_challenge_method', 'S256');
    authorization.searchParams.set('state', state);
    if (client.scope !== undefined) authorization.searchParams.set('scope', client.scope);
    for (let i = 0; i < client.resourceCount; i++) authorization.searchParams.append('resource', resourceMetadata.resource);
    const signIn = await approveAndSignIn(new TestBrowser(), authorization, USER, redirectUri);
    const callback = signIn.callback;
    assert.equal(callback.get('error'), null, `authorization error: ${callback.get('error_description') ?? ''}`);
    assert.equal(callback.get('state'), state);
    assert.equal(callback.get('iss'), issuer, 'RFC 9207 iss on the authorization response');

    // 4. The code for tokens; every client gets a refresh token.
    const resource = Array.from({ length: client.resourceCount }, () => resourceMetadata.resource);
    const issued = await this.#token(
      client,
      metadata,
      credentials,
      {
        grant_type: 'authorization_code',
        code: callback.get('code') ?? '',
        redirect_uri: redirectUri,
        code_verifier: verifier,
      },
      resource,
    );
    assert.ok(issued.refresh_token, 'a refresh token is issued');

    // 5. A tool call as the user who signed in.
    assert.equal((await this.#getMe(client, issued.access_token)).login, USER.login);

    // 6. Refresh, and the new access token works.
    const refreshed = await this.#token(
      client,
      metadata,
      credentials,
      { grant_type: 'refresh_token', refresh_token: issued.refresh_token },
      resource,
    );
    assert.notEqual(refreshed.access_token, issued.access_token);
    assert.equal((await this.#getMe(client, refreshed.access_token)).login, USER.login);

    // 7. Revoking the refresh token ends the grant: neither token works any more.
    const revoked = await this.#fetch(client, metadata.revocation_endpoint, {
      method: 'POST',
      ...(await this.#authenticated(client, metadata, credentials, { token: refreshed.refresh_token, token_type_hint: 'refresh_token' })),
    });
    assert.equal(revoked.status, 200);
    const again = await this.#fetch(client, metadata.token_endpoint, {
      method: 'POST',
      ...(await this.#authenticated(client, metadata, credentials, {
        grant_type: 'refresh_token',
        refresh_token: refreshed.refresh_token,
      })),
    });
    assert.equal(again.status, 400);
    assert.equal(((await again.json()) as { error: string }).error, 'invalid_grant');
    const refused = await this.#fetch(client, mcpUrl.href, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${refreshed.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    assert.equal(refused.status, 401);
  }

  async #identify(client: ZooClient, metadata: Discovered): Promise<{ clientId: string; clientSecret?: string }> {
    if (client.document !== null && metadata.client_id_metadata_document_supported) {
      const document = client.document;
      const clientId = this.#documents.publish(document.path, (url) => document.body(url, this.#jwksUri));
      if (client.auth === 'private_key_jwt') assert.ok(metadata.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
      return { clientId };
    }
    assert.ok(client.registration, `${client.name} needs CIMD or a registration body`);
    const response = await this.#fetch(client, metadata.registration_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(client.registration),
    });
    const body = (await response.json()) as Record<string, unknown>;
    assert.equal(response.status, 201, JSON.stringify(body));
    // What was registered: the grant types the broker grants, the method asked for.
    assert.deepEqual(body.grant_types, ['authorization_code', 'refresh_token']);
    assert.equal(body.token_endpoint_auth_method, client.registration.token_endpoint_auth_method ?? 'client_secret_basic');
    return { clientId: body.client_id as string, ...(typeof body.client_secret === 'string' ? { clientSecret: body.client_secret } : {}) };
  }

  /** Form body and headers with the client's authentication applied. */
  async #authenticated(
    client: ZooClient,
    metadata: Discovered,
    credentials: { clientId: string; clientSecret?: string },
    params: Record<string, string>,
    resource: readonly string[] = [],
  ): Promise<{ headers: Record<string, string>; body: string }> {
    const form = new URLSearchParams(params);
    for (const value of resource) form.append('resource', value);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    switch (client.auth) {
      case 'none':
        form.set('client_id', credentials.clientId);
        break;
      case 'client_secret_post':
        form.set('client_id', credentials.clientId);
        form.set('client_secret', credentials.clientSecret ?? '');
        break;
      case 'client_secret_basic':
        headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(credentials.clientId)}:${encodeURIComponent(credentials.clientSecret ?? '')}`).toString('base64')}`;
        break;
      case 'private_key_jwt':
        form.set('client_id', credentials.clientId);
        form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
        form.set(
          'client_assertion',
          await new SignJWT({})
            .setProtectedHeader({ alg: 'RS256', kid: this.#key.publicJwk.kid })
            .setIssuer(credentials.clientId)
            .setSubject(credentials.clientId)
            .setAudience(metadata.token_endpoint)
            .setIssuedAt()
            .setExpirationTime('5m')
            .setJti(randomUUID())
            .sign(this.#key.privateKey),
        );
        break;
    }
    return { headers, body: form.toString() };
  }

  async #token(
    client: ZooClient,
    metadata: Discovered,
    credentials: { clientId: string; clientSecret?: string },
    params: Record<string, string>,
    resource: readonly string[],
  ): Promise<{ access_token: string; refresh_token: string }> {
    const response = await this.#fetch(client, metadata.token_endpoint, {
      method: 'POST',
      ...(await this.#authenticated(client, metadata, credentials, params, resource)),
    });
    const body = (await response.json()) as { access_token: string; refresh_token: string; token_type: string };
    assert.equal(response.status, 200, `${params.grant_type}: ${JSON.stringify(body)}`);
    assert.equal(body.token_type, 'Bearer');
    return body;
  }

  async #getMe(client: ZooClient, accessToken: string): Promise<{ login: string }> {
    const headers: Record<string, string> = { authorization: `Bearer ${accessToken}` };
    if (client.origin !== undefined) headers.origin = client.origin;
    const transport = new StreamableHTTPClientTransport(this.#broker.mcpUrl, { requestInit: { headers } });
    const mcp = new Client(CLIENT_INFO, { versionNegotiation: { mode: client.era === 'modern' ? 'auto' : 'legacy' } });
    await mcp.connect(transport);
    try {
      assert.equal(mcp.getProtocolEra(), client.era);
      return await getMe(mcp);
    } finally {
      await transport.terminateSession().catch(() => undefined);
      await mcp.close();
    }
  }
}

async function signingKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: 'zoo-2026', alg: 'RS256', use: 'sig' } };
}

describe('the client zoo: every client people use signs in, calls a tool, refreshes and revokes', () => {
  let broker: E2EBroker;
  let withoutCimd: E2EBroker;
  let documents: ClientMetadataServer;
  let key: SigningKey;

  before(async () => {
    documents = await ClientMetadataServer.start(
      (clientId) => ({ client_id: clientId, client_name: 'unused', redirect_uris: ['http://127.0.0.1/cb'] }),
      'http',
    );
    key = await signingKey();
    // The documented way to let MCP Inspector's page call /mcp, without allowing every origin.
    broker = await E2EBroker.start({ BROKER_ALLOWED_ORIGINS: INSPECTOR_ORIGIN });
    withoutCimd = await E2EBroker.start({ BROKER_CIMD: 'off' });
  });
  after(async () => {
    await broker.close();
    await withoutCimd.close();
    await documents.close();
  });

  for (const client of ZOO) {
    it(client.name, async () => {
      await new ZooRun(broker, documents, key).run(client);
    });
  }

  for (const client of ZOO_WITHOUT_CIMD) {
    it(`BROKER_CIMD=off: ${client.name}`, async () => {
      await new ZooRun(withoutCimd, documents, key).run(client);
    });
  }

  it('BROKER_CIMD=off: the metadata says so and a URL client_id is an unknown client', async () => {
    const metadata = (await (await fetch(`${withoutCimd.url}/.well-known/oauth-authorization-server`)).json()) as Discovered;
    assert.equal(metadata.client_id_metadata_document_supported, false);
    assert.ok(!metadata.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
    const clientId = documents.publish('/off/client.json', (url) => ({
      client_id: url,
      client_name: 'Off',
      redirect_uris: ['http://127.0.0.1/cb'],
    }));
    const response = await fetch(`${withoutCimd.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x', client_id: clientId }).toString(),
    });
    assert.equal(response.status, 401);
    assert.match(((await response.json()) as { error_description: string }).error_description, /unknown client/);
  });
});
