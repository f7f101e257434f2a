import type { IncomingMessage, ServerResponse } from 'node:http';

import { decodeJwt } from 'jose';

import type { Grant, RefreshTokenView, TokenHashes } from '../store/store.js';
import { CLIENT_ASSERTION_TYPE } from './client-assertion.js';
import type { ClientAuthMethod } from './client-metadata.js';
import type { ResolvedClient } from './clients.js';
import type { OAuthContext } from './context.js';
import { OAuthError } from './errors.js';
import { sendJson } from '../http/errors.js';
import { readForm, singleParam } from './http.js';
import { checkResource, sameResource } from './resource.js';
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

  /**
   * POST /oauth/revoke: revoking an access token ends it; a refresh token
   * ends its whole grant. Both go to the revocation log, as every grant
   * revocation here does, so every replica drops the token from its cache
   * (and, for a grant, ends its live sessions).
   */
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
      // Stored first: a failure to log it answers an error, and the client's retry logs it.
      await this.#context.revocations.notice({ kind: 'access_token', grantId: access.grant.grantId });
      this.#context.events({
        kind: 'revocation',
        userId: access.grant.userId,
        clientId: client.clientId,
        detail: 'access token revoked by the client',
      });
    } else {
      const refresh = await grants.findRefreshToken(tokenHash);
      if (refresh !== undefined) {
        if (refresh.grant.clientId !== client.clientId) throw new OAuthError('invalid_request', 'token was issued to another client');
        await this.#context.revocations.revoke({ kind: 'grant', grantId: refresh.grant.grantId });
        this.#context.events({
          kind: 'revocation',
          userId: refresh.grant.userId,
          clientId: client.clientId,
          detail: 'refresh token revoked by the client; grant ended',
        });
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
    if (code === undefined) throw new OAuthError('invalid_request', 'code is required');
    if (redirectUri === undefined) throw new OAuthError('invalid_request', 'redirect_uri is required');
    if (codeVerifier === undefined) throw new OAuthError('invalid_request', 'code_verifier is required (PKCE)');

    const { store, now } = this.#context;
    const codeHash = sha256Hex(code);
    const consumption = await store.codes.consume(codeHash, now());
    if (consumption.status === 'unknown') throw new OAuthError('invalid_grant', 'authorization code is invalid or expired');
    if (consumption.status === 'replayed') {
      // OAuth 2.1 §4.1.3: a code used twice revokes what it produced.
      if (consumption.grantId !== null) await this.#context.revocations.revoke({ kind: 'grant', grantId: consumption.grantId });
      this.#context.events({
        kind: 'revocation',
        userId: null,
        clientId: client.clientId,
        detail: 'authorization code replayed; grant revoked',
        failed: true,
      });
      this.#context.logger.warn(
        { event: 'authorization_code_replayed', clientId: client.clientId, grantId: consumption.grantId },
        'authorization code replayed; grant revoked',
      );
      throw new OAuthError('invalid_grant', 'authorization code was already used');
    }
    // The code is spent from here on: a failed check below burns it, so a verifier cannot be guessed at.
    const issued = consumption.code;
    if (issued.clientId !== client.clientId) throw new OAuthError('invalid_grant', 'authorization code was issued to another client');
    if (issued.redirectUri !== redirectUri) throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request');
    if (!isCodeVerifier(codeVerifier) || !verifiesS256(codeVerifier, issued.codeChallenge)) {
      throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge');
    }
    this.#checkStillServed(issued.resource);
    checkResource(form, issued.resource);
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
    const pair = this.#newPair(at);
    if (!(await store.grants.createFromCode(codeHash, grant, pair.hashes))) {
      throw new OAuthError('invalid_grant', 'authorization code was already used');
    }
    return pair.response;
  }

  async #refreshTokenGrant(form: URLSearchParams, client: ResolvedClient): Promise<TokenResponse> {
    const refreshToken = singleParam(form, 'refresh_token');
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
      this.#checkStillServed(view.grant.resource);
      checkResource(form, view.grant.resource);

      if (view.rotatedAt !== null) {
        const successor = await this.#unusedSuccessor(refreshToken, view, at);
        if (successor !== undefined) return successor;
        // A rotated refresh token came back after its successor was used: someone else has a copy (OAuth 2.1 §4.3.1).
        await this.#context.revocations.revoke({ kind: 'grant', grantId: view.grant.grantId });
        this.#context.events({
          kind: 'revocation',
          userId: view.grant.userId,
          clientId: client.clientId,
          detail: 'refresh token reused; grant revoked',
          failed: true,
        });
        this.#context.logger.warn(
          { event: 'refresh_token_reused', clientId: client.clientId, grantId: view.grant.grantId },
          'refresh token reused; grant revoked',
        );
        throw new OAuthError('invalid_grant', 'refresh token was already used; the grant is revoked');
      }

      const pair = this.#newPair(at);
      const successor =
        this.#context.refreshGraceMs > 0
          ? { sealed: sealPairForGrace(refreshToken, pair.issued), sealedUntil: at + this.#context.refreshGraceMs }
          : null;
      if ((await store.grants.rotateRefreshToken(oldHash, pair.hashes, successor, at)) === 'rotated') return pair.response;
      // Another request rotated it between our read and write: judge it again as a reuse.
    }
    throw new OAuthError('invalid_grant', 'refresh token was already used');
  }

  /**
   * The answer to the immediately previous refresh token while the one
   * issued for it has never been used: a response that was lost, or a
   * sibling process of the same client (Claude Code runs several that share
   * one refresh token and refresh at different times). The caller gets the
   * successor pair, so the processes converge on one token; when the access
   * token of that pair has run out, the successor is refreshed on the
   * caller's behalf, which spends the previous token for good. So a rotated
   * refresh token yields at most one more hop, and presenting it once its
   * successor was used revokes the family (RFC 9700 §4.14.2). The price: a
   * thief who always presents the previous token before its successor is
   * used looks exactly like a sibling; README "Sibling refreshes" says so,
   * and BROKER_REFRESH_GRACE bounds or (0) disables the tolerance.
   */
  async #unusedSuccessor(refreshToken: string, view: RefreshTokenView, at: number, onBehalf = true): Promise<TokenResponse | undefined> {
    if (view.rotatedAt === null || view.successorSealed === null || view.successorRotated) return undefined;
    if (at - view.rotatedAt > this.#context.refreshGraceMs) return undefined;
    const pair = openGracePair(refreshToken, view.successorSealed);
    if (pair.accessExpiresAt - at > MIN_REISSUED_ACCESS_MS) return tokenResponse(pair, at);
    if (!onBehalf) return undefined;
    const { store } = this.#context;
    const successorHash = sha256Hex(pair.refreshToken);
    const successor = await store.grants.findRefreshToken(successorHash);
    if (successor === undefined || successor.expiresAt <= at || successor.grant.revokedAt !== null) return undefined;
    const next = this.#newPair(at);
    const sealed = { sealed: sealPairForGrace(pair.refreshToken, next.issued), sealedUntil: at + this.#context.refreshGraceMs };
    if ((await store.grants.rotateRefreshToken(successorHash, next.hashes, sealed, at)) === 'rotated') return next.response;
    // A sibling did the same a moment ago: its answer, while still unused.
    const raced = await store.grants.findRefreshToken(successorHash);
    return raced === undefined ? undefined : this.#unusedSuccessor(pair.refreshToken, raced, at, false);
  }

  /** Tokens for a resource this broker no longer serves (BROKER_PUBLIC_URL changed) would only be refused at /mcp. */
  #checkStillServed(resource: string): void {
    if (!sameResource(resource, this.#context.resource)) {
      throw new OAuthError('invalid_grant', `this sign-in was for ${resource}, which is now ${this.#context.resource}; sign in again`);
    }
  }

  /** A fresh access token and refresh token: every client gets both (see GRANTED_GRANT_TYPES). */
  #newPair(at: number): { hashes: TokenHashes; response: TokenResponse; issued: IssuedPair } {
    const { lifetimes } = this.#context;
    const accessToken = randomToken('fmb_at_');
    const refreshToken = randomToken('fmb_rt_');
    const issued: IssuedPair = { accessToken, accessExpiresAt: at + lifetimes.accessTokenMs, refreshToken };
    return {
      hashes: {
        accessTokenHash: sha256Hex(accessToken),
        accessExpiresAt: issued.accessExpiresAt,
        refreshTokenHash: sha256Hex(refreshToken),
        refreshExpiresAt: at + lifetimes.refreshTokenMs,
      },
      response: tokenResponse(issued, at),
      issued,
    };
  }

  /**
   * Client authentication (RFC 6749 §2.3, RFC 7523 §2.2): HTTP Basic, the
   * secret in the body, a signed assertion, or none for public clients; one
   * method per request, and one the client may use. A confidential client
   * may send its secret either way.
   */
  async #authenticateClient(req: IncomingMessage, form: URLSearchParams): Promise<ResolvedClient> {
    const basic = parseBasic(req.headers.authorization);
    const bodyId = singleParam(form, 'client_id');
    const bodySecret = singleParam(form, 'client_secret');
    const assertion = singleParam(form, 'client_assertion');
    const assertionType = singleParam(form, 'client_assertion_type');
    if ([basic, bodySecret, assertion].filter((presented) => presented !== undefined).length > 1) {
      throw new OAuthError('invalid_request', 'use one client authentication method');
    }
    if (assertion !== undefined && assertionType !== CLIENT_ASSERTION_TYPE) {
      throw new OAuthError('invalid_request', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
    }
    // RFC 7523 §3: with an assertion, client_id may be left out; the assertion's subject names the client.
    const claimedId = basic?.clientId ?? bodyId ?? (assertion === undefined ? undefined : assertionSubject(assertion));
    if (basic !== undefined && bodyId !== undefined && bodyId !== basic.clientId) {
      throw new OAuthError('invalid_request', 'client_id differs from the authenticated client');
    }
    const method: ClientAuthMethod =
      basic !== undefined
        ? 'client_secret_basic'
        : bodySecret !== undefined
          ? 'client_secret_post'
          : assertion !== undefined
            ? 'private_key_jwt'
            : 'none';
    if (claimedId === undefined) throw new OAuthError('invalid_client', 'client authentication failed: no client_id');
    let client: ResolvedClient;
    try {
      client = await this.#context.clients.resolve(claimedId);
    } catch (error) {
      if (error instanceof OAuthError && error.code === 'invalid_client') {
        throw new OAuthError('invalid_client', `client authentication failed: ${error.message}`);
      }
      throw error;
    }
    if (!client.authMethods.includes(method)) {
      throw new OAuthError('invalid_client', `client authentication failed: client must use ${client.authMethods.join(' or ')}`);
    }
    if (method === 'private_key_jwt') {
      if (assertion === undefined || client.keys === null) throw new OAuthError('invalid_client', 'client authentication failed');
      await this.#context.assertions.verify(client.clientId, client.keys, client.signingAlg, assertion);
    } else if (method !== 'none') {
      const secret = basic?.clientSecret ?? bodySecret ?? '';
      if (client.clientSecretHash === null || !equalHashes(sha256Hex(secret), client.clientSecretHash)) {
        throw new OAuthError('invalid_client', 'client authentication failed');
      }
    }
    return client;
  }
}

/** Issued pairs whose access token has less left than this are not handed out again. */
const MIN_REISSUED_ACCESS_MS = 60_000;

/** The unverified `sub` of an assertion, only to find whose keys verify it. */
function assertionSubject(assertion: string): string | undefined {
  try {
    const { sub } = decodeJwt(assertion);
    return typeof sub === 'string' && sub !== '' ? sub : undefined;
  } catch {
    throw new OAuthError('invalid_client', 'client authentication failed: client_assertion is not a JWT');
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
