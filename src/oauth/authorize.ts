import type { IncomingMessage, ServerResponse } from 'node:http';

import * as oauth from 'oauth4webapi';

import { errorMessage } from '../errors/errors.js';
import type { PendingAuthorization } from '../store/store.js';
import type { ResolvedClient } from './clients.js';
import { OAUTH_PATHS, type OAuthContext } from './context.js';
import { OAuthError, toOAuthError, toOAuthErrorResponse } from './errors.js';
import { parseCookies, readForm, redirect, serializeCookie, singleParam } from './http.js';
import { renderConsentPage, renderMessagePage, sendPage } from './pages.js';
import { describeRedirectTarget, isLoopbackRedirect, redirectUriMatches } from './redirect-uri.js';
import { checkResource } from './resource.js';
import { equalHashes, isS256Challenge, randomToken, sha256Hex } from './tokens.js';

/**
 * The authorization endpoint and what follows it: the consent page, the trip
 * to Forgejo, and the callback. The invariant every path keeps: a code for
 * (user, client) is issued only when that user approved that client, on this
 * broker's consent page, in the browser that started the request. Forgejo is
 * visited only after consent, so its automatic approval of the broker's one
 * application can never stand in for the user's consent to an MCP client.
 */
/** Refusals shown as a page to a browser that may not continue this request. */
const FORBIDDEN = { status: 403 };

export class AuthorizationFlow {
  readonly #context: OAuthContext;

  constructor(context: OAuthContext) {
    this.#context = context;
  }

  /** GET /oauth/authorize */
  async authorize(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const params = url.searchParams;
    // Until client and redirect URI are trusted, errors are shown, never redirected (no open redirector).
    let client: ResolvedClient;
    let redirectUri: string;
    try {
      const clientId = singleParam(params, 'client_id');
      if (clientId === undefined) throw new OAuthError('invalid_request', 'client_id is required');
      client = await this.#context.clients.resolve(clientId);
      const presented = singleParam(params, 'redirect_uri');
      if (presented === undefined) throw new OAuthError('invalid_request', 'redirect_uri is required');
      if (!client.redirectUris.some((registered) => redirectUriMatches(registered, presented))) {
        throw new OAuthError('invalid_request', 'redirect_uri is not registered for this client');
      }
      redirectUri = presented;
    } catch (error) {
      this.#errorPage(res, error);
      return;
    }

    let state: string | undefined;
    try {
      state = singleParam(params, 'state');
      const request = this.#validateRequest(params, client);
      const browser = this.#browserBinding(req);
      const signedInUser = await this.#signedInUser(req);
      const csrfToken = randomToken();
      const now = this.#context.now();
      const pending: PendingAuthorization = {
        id: randomToken(),
        clientId: client.clientId,
        redirectUri,
        state: state ?? null,
        codeChallenge: request.codeChallenge,
        resource: request.resource,
        scope: request.scope,
        browserBindingHash: sha256Hex(browser.value),
        csrfTokenHash: sha256Hex(csrfToken),
        userId: signedInUser ?? null,
        approved: false,
        createdAt: now,
        expiresAt: now + this.#context.lifetimes.pendingAuthorizationMs,
      };
      await this.#context.store.pendingAuthorizations.create(pending);
      if (browser.setCookie !== undefined) res.setHeader('set-cookie', browser.setCookie);
      await this.#proceed(res, pending, client, csrfToken);
    } catch (error) {
      this.#redirectError(res, redirectUri, state ?? null, error);
    }
  }

  /** POST /oauth/consent: the Approve or Deny button. */
  async decide(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let pending: PendingAuthorization;
    let client: ResolvedClient;
    let decision: string | undefined;
    try {
      if (!this.#sameOrigin(req)) throw new OAuthError('access_denied', 'the form was not sent from this site', FORBIDDEN);
      const form = await readForm(req);
      const requestId = singleParam(form, 'request');
      const csrf = singleParam(form, 'csrf');
      decision = singleParam(form, 'decision');
      const found =
        requestId === undefined ? undefined : await this.#context.store.pendingAuthorizations.find(requestId, this.#context.now());
      if (found === undefined)
        throw new OAuthError('invalid_request', 'this sign-in request has expired or was completed; start again from your application');
      // The browser-binding cookie and the form's CSRF token must both belong to this request.
      if (!this.#sameBrowser(req, found) || csrf === undefined || !equalHashes(sha256Hex(csrf), found.csrfTokenHash)) {
        throw new OAuthError('access_denied', 'this form does not belong to this browser; start again from your application', FORBIDDEN);
      }
      if ((await this.#signedInUser(req)) !== (found.userId ?? undefined)) {
        throw new OAuthError(
          'access_denied',
          'your sign-in changed while this page was open; start again from your application',
          FORBIDDEN,
        );
      }
      pending = found;
      client = await this.#context.clients.resolve(pending.clientId);
    } catch (error) {
      this.#errorPage(res, error);
      return;
    }

    try {
      if (decision === 'deny') {
        await this.#finishWithError(res, pending, new OAuthError('access_denied', 'the user denied access'));
        return;
      }
      if (decision !== 'approve') throw new OAuthError('invalid_request', 'decision must be approve or deny');
      await this.#context.store.pendingAuthorizations.update(pending.id, { approved: true });
      await this.#proceed(res, { ...pending, approved: true }, client, undefined);
    } catch (error) {
      await this.#finishWithError(res, pending, error);
    }
  }

  /** GET /oauth/callback: Forgejo sends the user back here. */
  async callback(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const state = singleParamOrUndefined(url.searchParams, 'state');
    const now = this.#context.now();
    const upstream = state === undefined ? undefined : await this.#context.store.upstreamStates.take(sha256Hex(state), now);
    const pending = upstream === undefined ? undefined : await this.#context.store.pendingAuthorizations.find(upstream.pendingId, now);
    if (state === undefined || upstream === undefined || pending === undefined) {
      this.#errorPage(
        res,
        new OAuthError('invalid_request', 'this sign-in has expired or was already completed; start again from your application'),
      );
      return;
    }
    // Only the browser that approved may finish: a callback URL pushed into another browser is refused.
    if (!this.#sameBrowser(req, pending)) {
      this.#errorPage(res, new OAuthError('access_denied', 'this sign-in was started in another browser', FORBIDDEN));
      return;
    }
    let client: ResolvedClient;
    try {
      client = await this.#context.clients.resolve(pending.clientId);
    } catch (error) {
      this.#errorPage(res, error);
      return;
    }
    try {
      const tokens = await this.#context.forgejo.exchangeCode(url.searchParams, state, upstream.codeVerifier);
      const forgejoUser = await this.#context.forgejo.currentUser(tokens.accessToken);
      const user = { userId: String(forgejoUser.id), forgejoLogin: forgejoUser.login };
      await this.#context.logins.storeLogin(user, tokens);
      res.setHeader('set-cookie', await this.#startSignIn(req, user.userId));
      await this.#context.store.pendingAuthorizations.update(pending.id, { userId: user.userId });
      this.#context.logger.info(
        { event: 'forgejo_sign_in', userId: user.userId, forgejoLogin: user.forgejoLogin, clientId: client.clientId },
        'Forgejo sign-in completed',
      );
      await this.#proceed(res, { ...pending, userId: user.userId }, client, undefined);
    } catch (error) {
      await this.#finishWithError(res, pending, error);
    }
  }

  /**
   * The next step for a request: issue the code, ask for consent, or send the
   * user to Forgejo. Consent is either remembered for (user, client) or given
   * on the page for this very request.
   */
  async #proceed(res: ServerResponse, pending: PendingAuthorization, client: ResolvedClient, csrfToken: string | undefined): Promise<void> {
    const { store } = this.#context;
    const userId = pending.userId;
    const credential = userId === null ? undefined : await store.credentials.find(userId);
    const live = credential !== undefined && credential.revokedAt === null;
    const remembered = userId !== null && (await store.consents.has(userId, client.clientId));
    if (userId !== null && live && (remembered || pending.approved)) {
      if (!remembered) {
        await store.consents.record(userId, client.clientId, this.#context.now());
        this.#context.events({ kind: 'consent', userId, clientId: client.clientId, detail: 'client approved' });
      }
      await this.#finishWithCode(res, pending);
      return;
    }
    if (!live && (pending.approved || remembered)) {
      await this.#redirectToForgejo(res, pending);
      return;
    }
    await this.#showConsent(res, pending, client, csrfToken);
  }

  async #showConsent(
    res: ServerResponse,
    pending: PendingAuthorization,
    client: ResolvedClient,
    csrfToken: string | undefined,
  ): Promise<void> {
    let token = csrfToken;
    if (token === undefined) {
      // Reached from the callback (a different user than expected): a fresh form token.
      token = randomToken();
      await this.#context.store.pendingAuthorizations.update(pending.id, { csrfTokenHash: sha256Hex(token) });
    }
    const user = pending.userId === null ? undefined : await this.#context.store.users.find(pending.userId);
    const policy = await this.#context.consentTerms.toolPolicyFor(user);
    const html = renderConsentPage({
      clientName: client.clientName,
      clientId: client.clientId,
      unverified: client.kind === 'registered',
      clientIdHost: client.kind === 'metadata_document' ? new URL(client.clientId).host : null,
      redirectTarget: describeRedirectTarget(pending.redirectUri),
      redirectIsLoopback: isLoopbackRedirect(pending.redirectUri),
      loopbackOnly: client.redirectUris.every(isLoopbackRedirect),
      forgeHost: this.#context.forgejo.baseUrl.host,
      signedInAs: user?.forgejoLogin ?? null,
      abilities: this.#context.consentTerms.abilities,
      toolPolicy: policy.lines,
      policyMayDiffer: policy.mayDiffer,
      requestId: pending.id,
      csrfToken: token,
      action: `${this.#context.issuer}${OAUTH_PATHS.consent}`,
      connectionsUrl: `${this.#context.issuer}${OAUTH_PATHS.consents}`,
    });
    sendPage(res, 200, html, [this.#context.forgejo.baseUrl.origin, formTarget(pending.redirectUri)]);
  }

  async #redirectToForgejo(res: ServerResponse, pending: PendingAuthorization): Promise<void> {
    const state = oauth.generateRandomState();
    const codeVerifier = oauth.generateRandomCodeVerifier();
    await this.#context.store.upstreamStates.create({
      stateHash: sha256Hex(state),
      pendingId: pending.id,
      codeVerifier,
      expiresAt: Math.min(pending.expiresAt, this.#context.now() + this.#context.lifetimes.pendingAuthorizationMs),
    });
    const target = await this.#context.forgejo.authorizationUrl(state, await oauth.calculatePKCECodeChallenge(codeVerifier));
    redirect(res, target.href);
  }

  async #finishWithCode(res: ServerResponse, pending: PendingAuthorization): Promise<void> {
    const { store, now } = this.#context;
    // Taking the request makes a double submit finish once.
    const taken = await store.pendingAuthorizations.take(pending.id, now());
    if (taken === undefined || pending.userId === null) {
      this.#errorPage(res, new OAuthError('invalid_request', 'this sign-in request was already completed'));
      return;
    }
    const code = randomToken('fmb_code_');
    const issuedAt = now();
    await store.codes.create({
      codeHash: sha256Hex(code),
      clientId: taken.clientId,
      userId: pending.userId,
      redirectUri: taken.redirectUri,
      codeChallenge: taken.codeChallenge,
      resource: taken.resource,
      scope: taken.scope,
      createdAt: issuedAt,
      expiresAt: issuedAt + this.#context.lifetimes.authorizationCodeMs,
    });
    await store.clients.markSignedIn(taken.clientId, issuedAt);
    this.#context.events({ kind: 'sign_in', userId: pending.userId, clientId: taken.clientId, detail: 'authorization code issued' });
    redirect(res, this.#authorizationResponse(taken.redirectUri, { code, state: taken.state }));
  }

  async #finishWithError(res: ServerResponse, pending: PendingAuthorization, error: unknown): Promise<void> {
    const taken = await this.#context.store.pendingAuthorizations.take(pending.id, this.#context.now()).catch(() => undefined);
    if (taken === undefined) {
      this.#errorPage(res, error);
      return;
    }
    this.#redirectError(res, taken.redirectUri, taken.state, error);
  }

  /** An error answer to the client, at its trusted redirect URI (RFC 6749 §4.1.2.1, with `iss` per RFC 9207). */
  #redirectError(res: ServerResponse, redirectUri: string, state: string | null, error: unknown): void {
    const oauthError = toOAuthError(error);
    this.#logIfInternal(oauthError);
    redirect(res, this.#authorizationResponse(redirectUri, { error: oauthError.code, error_description: oauthError.message, state }));
  }

  #authorizationResponse(redirectUri: string, values: Record<string, string | null>): string {
    const target = new URL(redirectUri);
    for (const [name, value] of Object.entries(values)) {
      if (value !== null) target.searchParams.set(name, value);
    }
    target.searchParams.set('iss', this.#context.issuer);
    return target.href;
  }

  #errorPage(res: ServerResponse, error: unknown): void {
    const oauthError = toOAuthError(error);
    this.#logIfInternal(oauthError);
    const response = toOAuthErrorResponse(oauthError);
    const html = renderMessagePage('Sign-in cannot continue', `${response.body.error_description} (${response.body.error})`);
    // invalid_client is 401 at the token endpoint; a browser has no client credentials to retry with.
    sendPage(res, response.status === 401 ? 400 : response.status, html, [], { ...response.headers });
  }

  #logIfInternal(error: OAuthError): void {
    if (error.code === 'server_error' || error.code === 'temporarily_unavailable') {
      this.#context.logger.error(
        { event: 'authorization_failed', code: error.code, err: errorMessage(error.cause ?? error) },
        'authorization failed',
      );
    }
  }

  /** Checks the parameters after the redirect URI is trusted; errors go back to the client. */
  #validateRequest(params: URLSearchParams, client: ResolvedClient): { codeChallenge: string; resource: string; scope: string | null } {
    const responseType = singleParam(params, 'response_type');
    if (responseType !== 'code') throw new OAuthError('unsupported_response_type', 'response_type must be code');
    if (!client.grantTypes.includes('authorization_code')) {
      throw new OAuthError('unauthorized_client', 'client is not registered for authorization_code');
    }
    const codeChallenge = singleParam(params, 'code_challenge');
    const method = singleParam(params, 'code_challenge_method');
    if (codeChallenge === undefined) throw new OAuthError('invalid_request', 'code_challenge is required (PKCE)');
    // An absent method means plain (RFC 7636 §4.3), which OAuth 2.1 and MCP do not allow.
    if (method !== 'S256') throw new OAuthError('invalid_request', 'code_challenge_method must be S256');
    if (!isS256Challenge(codeChallenge)) throw new OAuthError('invalid_request', 'code_challenge is not an S256 challenge');
    checkResource(params, this.#context.resource);
    return { codeChallenge, resource: this.#context.resource, scope: singleParam(params, 'scope') ?? null };
  }

  /** The browser-binding cookie, set now if the browser has none. */
  #browserBinding(req: IncomingMessage): { value: string; setCookie?: string } {
    const existing = parseCookies(req).get(this.#context.cookies.browser);
    if (existing !== undefined && /^[A-Za-z0-9_-]{43}$/.test(existing)) return { value: existing };
    const value = randomToken();
    return { value, setCookie: serializeCookie(this.#context.cookies.browser, value, { secure: this.#context.cookies.secure }) };
  }

  #sameBrowser(req: IncomingMessage, pending: PendingAuthorization): boolean {
    const cookie = parseCookies(req).get(this.#context.cookies.browser);
    return cookie !== undefined && equalHashes(sha256Hex(cookie), pending.browserBindingHash);
  }

  /** The form must come from the broker's own pages: Origin, where sent, is the broker's. */
  #sameOrigin(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null' && origin !== new URL(this.#context.issuer).origin) return false;
    return (
      req.headers['sec-fetch-site'] === undefined ||
      req.headers['sec-fetch-site'] === 'same-origin' ||
      req.headers['sec-fetch-site'] === 'none'
    );
  }

  async #signedInUser(req: IncomingMessage): Promise<string | undefined> {
    const cookie = parseCookies(req).get(this.#context.cookies.signIn);
    if (cookie === undefined) return undefined;
    return this.#context.store.signIns.findUserId(sha256Hex(cookie), this.#context.now());
  }

  /** A new sign-in for this browser, replacing the one it had. */
  async #startSignIn(req: IncomingMessage, userId: string): Promise<string[]> {
    const { store, now, lifetimes, cookies } = this.#context;
    const previous = parseCookies(req).get(cookies.signIn);
    if (previous !== undefined) await store.signIns.delete(sha256Hex(previous));
    const token = randomToken();
    const createdAt = now();
    await store.signIns.create({ tokenHash: sha256Hex(token), userId, createdAt, expiresAt: createdAt + lifetimes.signInMs });
    return [serializeCookie(cookies.signIn, token, { secure: cookies.secure, maxAge: Math.floor(lifetimes.signInMs / 1000) })];
  }
}

function singleParamOrUndefined(params: URLSearchParams, name: string): string | undefined {
  try {
    return singleParam(params, name);
  } catch {
    return undefined;
  }
}

/** The CSP form-action source that allows the redirect to this URI. */
function formTarget(redirectUri: string): string {
  const url = new URL(redirectUri);
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : url.protocol;
}
