import type { IncomingMessage, ServerResponse } from 'node:http';

import type { Grant, TokenHashes } from '../store/store.js';
import { sameResource } from './authorize.js';
import type { ResolvedClient } from './clients.js';
import type { OAuthContext } from './context.js';
import { OAuthError } from './errors.js';
import { readForm, sendJson, singleParam } from './http.js';
import {
  equalHashes,
  isCodeVerifier,
  openGracePair,
  randomToken,
  sealPairForGrace,
  sha256Hex,
  verifiesS256,
  type IssuedPair,
} from './tokens.js';

/**
 * The token endpoint (RFC 6749 §3.2, OAuth 2.1 §4.1.3 and §4.3) and the
 * revocation endpoint (RFC 7009). Every error is thrown as an OAuthError and
 * rendered by the caller.
 */
export class TokenEndpoint {
  readonly #context: OAuthContext;

  constructor(context: OAuthContext) {
    this.#context = context;
  }

  /** POST /oauth/token */
  async token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const grantType = singleParam(form, 'grant_type');
    const client = await this.#authenticateClient(req, form);
    switch (grantType) {
      case 'authorization_code':
        sendTokens(res, await this.#authorizationCodeGrant(form, client));
        return;
      case 'refresh_token':
        sendTokens(res, await this.#refreshTokenGrant(form, client));
        return;
      case undefined:
        throw new OAuthError('invalid_request', 'grant_type is required');
      default:
        throw new OAuthError('unsupported_grant_type', `grant_type ${grantType} is not supported`);
    }
  }

  /** POST /oauth/revoke: revoking an access token ends it; a refresh token ends its whole grant. */
  async revoke(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const client = await this.#authenticateClient(req, form);
    const token = singleParam(form, 'token');
    if (token === undefined) throw new OAuthError('invalid_request', 'token is required');
    const tokenHash = sha256Hex(token);
    const { grants } = this.#context.store;
    const now = this.#context.now();
    const access = await grants.findAccessToken(tokenHash);
    if (access !== undefined) {
      if (access.grant.clientId !== client.clientId) throw new OAuthError('invalid_request', 'token was issued to another client');
      await grants.revokeAccessToken(tokenHash, now);
    } else {
      const refresh = await grants.findRefreshToken(tokenHash);
      if (refresh !== undefined) {
        if (refresh.grant.clientId !== client.clientId) throw new OAuthError('invalid_request', 'token was issued to another client');
        await grants.revokeGrant(refresh.grant.grantId, now);
      }
    }
    // RFC 7009 §2.2: 200 whether or not the token was known.
    res.writeHead(200, { 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
  }

  async #authorizationCodeGrant(form: URLSearchParams, client: ResolvedClient): Promise<TokenResponse> {
    const code = singleParam(form, 'code');
    const redirectUri = singleParam(form, 'redirect_uri');
    const codeVerifier = singleParam(form, 'code_verifier');
    const resource = singleParam(form, 'resource');
    if (code === undefined) throw new OAuthError('invalid_request', 'code is required');
    if (redirectUri === undefined) throw new OAuthError('invalid_request', 'redirect_uri is required');
    if (codeVerifier === undefined) throw new OAuthError('invalid_request', 'code_verifier is required (PKCE)');

    const { store, now } = this.#context;
    const codeHash = sha256Hex(code);
    const consumption = await store.codes.consume(codeHash, now());
    if (consumption.status === 'unknown') throw new OAuthError('invalid_grant', 'authorization code is invalid or expired');
    if (consumption.status === 'replayed') {
      // OAuth 2.1 §4.1.3: a code used twice revokes what it produced.
      if (consumption.grantId !== null) await store.grants.revokeGrant(consumption.grantId, now());
      this.#context.logger.warn({ clientId: client.clientId, grantId: consumption.grantId }, 'authorization code replayed; grant revoked');
      throw new OAuthError('invalid_grant', 'authorization code was already used');
    }
    // The code is spent from here on: a failed check below burns it, so a verifier cannot be guessed at.
    const issued = consumption.code;
    if (issued.clientId !== client.clientId) throw new OAuthError('invalid_grant', 'authorization code was issued to another client');
    if (issued.redirectUri !== redirectUri) throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request');
    if (!isCodeVerifier(codeVerifier) || !verifiesS256(codeVerifier, issued.codeChallenge)) {
      throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge');
    }
    if (resource !== undefined && !sameResource(resource, issued.resource)) {
      throw new OAuthError('invalid_target', `resource must be ${issued.resource}`);
    }
    const credential = await store.credentials.find(issued.userId);
    if (credential === undefined || credential.revokedAt !== null) {
      throw new OAuthError('invalid_grant', 'the Forgejo sign-in has ended; sign in again');
    }

    const at = now();
    const grant: Grant = {
      grantId: randomToken(),
      userId: issued.userId,
      clientId: client.clientId,
      resource: issued.resource,
      scope: issued.scope,
      createdAt: at,
      revokedAt: null,
    };
    const pair = this.#newPair(client, at);
    if (!(await store.grants.createFromCode(codeHash, grant, pair.hashes))) {
      throw new OAuthError('invalid_grant', 'authorization code was already used');
    }
    return pair.response;
  }

  async #refreshTokenGrant(form: URLSearchParams, client: ResolvedClient): Promise<TokenResponse> {
    const refreshToken = singleParam(form, 'refresh_token');
    const resource = singleParam(form, 'resource');
    if (refreshToken === undefined) throw new OAuthError('invalid_request', 'refresh_token is required');
    const { store, now } = this.#context;
    const oldHash = sha256Hex(refreshToken);

    for (let attempt = 0; attempt < 2; attempt++) {
      const view = await store.grants.findRefreshToken(oldHash);
      const at = now();
      if (view === undefined || view.expiresAt <= at) throw new OAuthError('invalid_grant', 'refresh token is invalid or expired');
      if (view.grant.clientId !== client.clientId) throw new OAuthError('invalid_grant', 'refresh token was issued to another client');
      if (view.grant.revokedAt !== null) throw new OAuthError('invalid_grant', 'refresh token was revoked');
      if (view.credentialRevoked) throw new OAuthError('invalid_grant', 'the Forgejo sign-in has ended; sign in again');
      if (resource !== undefined && !sameResource(resource, view.grant.resource)) {
        throw new OAuthError('invalid_target', `resource must be ${view.grant.resource}`);
      }

      if (view.rotatedAt !== null) {
        // A client that lost the response to its refresh may retry once, briefly, and get the same pair.
        const withinGrace = at - view.rotatedAt <= this.#context.refreshGraceMs;
        if (withinGrace && view.successorSealed !== null && !view.successorRotated) {
          const pair = openGracePair(refreshToken, view.successorSealed);
          if (pair.accessExpiresAt > at) return tokenResponse(pair, at);
        }
        // Otherwise a rotated refresh token came back: someone else has a copy (OAuth 2.1 §4.3.1).
        await store.grants.revokeGrant(view.grant.grantId, at);
        this.#context.logger.warn({ clientId: client.clientId, grantId: view.grant.grantId }, 'refresh token reused; grant revoked');
        throw new OAuthError('invalid_grant', 'refresh token was already used; the grant is revoked');
      }

      const pair = this.#newPair(client, at, true);
      const successor =
        this.#context.refreshGraceMs > 0 && pair.issued !== undefined
          ? { sealed: sealPairForGrace(refreshToken, pair.issued), sealedUntil: at + this.#context.refreshGraceMs }
          : null;
      if ((await store.grants.rotateRefreshToken(oldHash, pair.hashes, successor, at)) === 'rotated') return pair.response;
      // Another request rotated it between our read and write: judge it again as a reuse.
    }
    throw new OAuthError('invalid_grant', 'refresh token was already used');
  }

  /** A fresh access token, and a refresh token when the client registered that grant (always when rotating). */
  #newPair(client: ResolvedClient, at: number, rotating = false): { hashes: TokenHashes; response: TokenResponse; issued?: IssuedPair } {
    const { lifetimes } = this.#context;
    const accessToken = randomToken('fmb_at_');
    const accessExpiresAt = at + lifetimes.accessTokenMs;
    if (!rotating && !client.grantTypes.includes('refresh_token')) {
      return {
        hashes: { accessTokenHash: sha256Hex(accessToken), accessExpiresAt },
        response: { access_token: accessToken, token_type: 'Bearer', expires_in: Math.floor(lifetimes.accessTokenMs / 1000) },
      };
    }
    const refreshToken = randomToken('fmb_rt_');
    const issued: IssuedPair = { accessToken, accessExpiresAt, refreshToken };
    return {
      hashes: {
        accessTokenHash: sha256Hex(accessToken),
        accessExpiresAt,
        refreshTokenHash: sha256Hex(refreshToken),
        refreshExpiresAt: at + lifetimes.refreshTokenMs,
      },
      response: tokenResponse(issued, at),
      issued,
    };
  }

  /**
   * Client authentication (RFC 6749 §2.3): HTTP Basic, secret in the body, or
   * none for public clients, exactly as the client registered; one method per
   * request.
   */
  async #authenticateClient(req: IncomingMessage, form: URLSearchParams): Promise<ResolvedClient> {
    const basic = parseBasic(req.headers.authorization);
    const bodyId = singleParam(form, 'client_id');
    const bodySecret = singleParam(form, 'client_secret');
    if (basic !== undefined && bodySecret !== undefined) {
      throw new OAuthError('invalid_request', 'use one client authentication method');
    }
    if (basic !== undefined && bodyId !== undefined && bodyId !== basic.clientId) {
      throw new OAuthError('invalid_request', 'client_id differs from the authenticated client');
    }
    const method = basic !== undefined ? 'client_secret_basic' : bodySecret !== undefined ? 'client_secret_post' : 'none';
    const clientId = basic?.clientId ?? bodyId;
    if (clientId === undefined) throw new OAuthError('invalid_client', 'client authentication failed: no client_id');
    let client: ResolvedClient;
    try {
      client = await this.#context.clients.resolve(clientId);
    } catch (error) {
      if (error instanceof OAuthError && error.code === 'invalid_client') {
        throw new OAuthError('invalid_client', `client authentication failed: ${error.message}`);
      }
      throw error;
    }
    if (client.tokenEndpointAuthMethod !== method) {
      throw new OAuthError('invalid_client', `client authentication failed: client must use ${client.tokenEndpointAuthMethod}`);
    }
    if (method !== 'none') {
      const secret = basic?.clientSecret ?? bodySecret ?? '';
      if (client.clientSecretHash === null || !equalHashes(sha256Hex(secret), client.clientSecretHash)) {
        throw new OAuthError('invalid_client', 'client authentication failed');
      }
    }
    return client;
  }
}

interface TokenResponse {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly refresh_token?: string;
}

/** No `scope` member: the broker has no scopes of its own (what a token may do is the Forgejo scope the operator fixed). */
function tokenResponse(pair: IssuedPair, at: number): TokenResponse {
  return {
    access_token: pair.accessToken,
    token_type: 'Bearer',
    expires_in: Math.max(0, Math.floor((pair.accessExpiresAt - at) / 1000)),
    refresh_token: pair.refreshToken,
  };
}

function sendTokens(res: ServerResponse, response: TokenResponse): void {
  sendJson(res, 200, response);
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before base64. */
function parseBasic(header: string | undefined): { clientId: string; clientSecret: string } | undefined {
  if (header === undefined || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new OAuthError('invalid_client', 'malformed Basic credentials');
  try {
    const decode = (value: string): string => decodeURIComponent(value.replace(/\+/g, ' '));
    return { clientId: decode(decoded.slice(0, colon)), clientSecret: decode(decoded.slice(colon + 1)) };
  } catch {
    throw new OAuthError('invalid_client', 'malformed Basic credentials');
  }
}
