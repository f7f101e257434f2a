import * as oauth from 'oauth4webapi';

import { errorMessage } from '../errors/errors.js';
import type { ForgejoTokens } from '../store/store.js';
import { ForgejoError, type ForgejoErrorReason } from './errors.js';

/**
 * The broker as one confidential OAuth2 application of a Forgejo instance,
 * on oauth4webapi: discovery, authorization URL with S256 PKCE, code
 * exchange, refresh, and `GET /api/v1/user`. No token request is built by
 * hand here.
 */
export interface ForgejoClientOptions {
  /** FORGEJO_URL; the OIDC issuer. */
  readonly forgejoUrl: URL;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Always the same string: Forgejo refuses a grant whose scope string changed. */
  readonly scopes: string;
  /** `{BROKER_PUBLIC_URL}/oauth/callback`, as registered at Forgejo. */
  readonly redirectUri: string;
  /** Per HTTP request to Forgejo. Default 10 s. */
  readonly timeoutMs?: number;
  /**
   * For a refresh. Generous (default 30 s): giving up early does not stop
   * Forgejo from spending the refresh token, it only loses the new one.
   */
  readonly refreshTimeoutMs?: number;
  readonly now?: () => number;
}

export interface ForgejoUser {
  readonly id: number;
  readonly login: string;
  readonly fullName: string;
}

/** Lifetime assumed when Forgejo's token response has no `expires_in` (its default). */
const DEFAULT_EXPIRES_IN_SECONDS = 3600;
const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_REFRESH_TIMEOUT_MS = 30_000;

/**
 * Error codes with which Forgejo refuses a refresh token for good: `invalid_grant`
 * (grant deleted) and `unauthorized_client`, which Forgejo uses for a refresh
 * token that was superseded ("token was already used", also when the answer to
 * our own earlier refresh was lost) or expired ("unable to parse refresh token").
 * Only the refresh token is dead then: the access token may still be good.
 */
const REFUSED_REFRESH_ERRORS = new Set(['invalid_grant', 'unauthorized_client']);

/** What Forgejo says of an access token: `refused` only for a 401, `unknown` when it could not be asked. */
export type AccessTokenStatus = 'live' | 'refused' | 'unknown';

export class ForgejoClient {
  readonly #options: ForgejoClientOptions;
  readonly #issuer: URL;
  readonly #client: oauth.Client;
  readonly #clientAuth: oauth.ClientAuth;
  readonly #now: () => number;
  #metadata: Promise<oauth.AuthorizationServer> | undefined;

  constructor(options: ForgejoClientOptions) {
    this.#options = options;
    // Forgejo's issuer is its AppURL, which always ends with a slash.
    this.#issuer = new URL(options.forgejoUrl.href.endsWith('/') ? options.forgejoUrl.href : `${options.forgejoUrl.href}/`);
    this.#client = { client_id: options.clientId };
    // In the body rather than HTTP Basic: Forgejo does not URL-decode Basic credentials.
    this.#clientAuth = oauth.ClientSecretPost(options.clientSecret);
    this.#now = options.now ?? Date.now;
  }

  /** Forgejo's base URL, ending with a slash. */
  get baseUrl(): URL {
    return new URL(this.#issuer.href);
  }

  /**
   * The URL to send the user to. `codeChallenge` is the S256 challenge of a
   * verifier the caller keeps for `exchangeCode`.
   */
  async authorizationUrl(state: string, codeChallenge: string): Promise<URL> {
    const metadata = await this.#discover();
    if (metadata.authorization_endpoint === undefined) {
      throw new ForgejoError('bad_response', 'Forgejo metadata has no authorization_endpoint');
    }
    const url = new URL(metadata.authorization_endpoint);
    url.searchParams.set('client_id', this.#options.clientId);
    url.searchParams.set('redirect_uri', this.#options.redirectUri);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('scope', this.#options.scopes);
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', codeChallenge);
    url.searchParams.set('code_challenge_method', 'S256');
    return url;
  }

  /**
   * Validates Forgejo's redirect to the callback and exchanges its code.
   * Rejects with a ForgejoError: `access_denied` when the user refused at
   * Forgejo, `bad_callback` for any other error answer or a malformed
   * callback, `grant_refused` for a refused code, `unreachable` or
   * `bad_response` when Forgejo could not be asked.
   */
  async exchangeCode(callback: URLSearchParams, expectedState: string, codeVerifier: string): Promise<ForgejoTokens> {
    const metadata = await this.#discover();
    let parameters: URLSearchParams;
    try {
      parameters = oauth.validateAuthResponse(metadata, this.#client, callback, expectedState);
    } catch (error) {
      if (error instanceof oauth.AuthorizationResponseError) {
        // access_denied is the user's answer; anything else (such as Forgejo's "a grant exists with
        // different scope") is a failure of the forge or its configuration.
        const reason = error.error === 'access_denied' ? 'access_denied' : 'bad_callback';
        throw new ForgejoError(reason, `Forgejo answered the authorization with ${error.error}`, { cause: error });
      }
      throw new ForgejoError('bad_callback', `invalid callback from Forgejo: ${errorMessage(error)}`, { cause: error });
    }
    const started = this.#now();
    try {
      const response = await oauth.authorizationCodeGrantRequest(
        metadata,
        this.#client,
        this.#clientAuth,
        parameters,
        this.#options.redirectUri,
        codeVerifier,
        this.#requestOptions(),
      );
      return this.#tokens(await oauth.processAuthorizationCodeResponse(metadata, this.#client, response), started, undefined);
    } catch (error) {
      throw toForgejoError(error, 'code exchange', (code) => (code === 'invalid_grant' ? 'grant_refused' : 'bad_response'));
    }
  }

  /**
   * Refreshes a user's tokens. Rejects with ForgejoError `grant_refused` when Forgejo refused
   * the refresh token for good, `unreachable` or `bad_response` when the outcome is unknown or
   * may pass (network, timeouts, 5xx, a misconfigured application): Forgejo
   * may then have spent the refresh token all the same.
   */
  async refresh(refreshToken: string): Promise<ForgejoTokens> {
    const started = this.#now();
    try {
      const metadata = await this.#discover();
      const response = await oauth.refreshTokenGrantRequest(
        metadata,
        this.#client,
        this.#clientAuth,
        refreshToken,
        this.#requestOptions(this.#options.refreshTimeoutMs ?? DEFAULT_REFRESH_TIMEOUT_MS),
      );
      const result = await oauth.processRefreshTokenResponse(metadata, this.#client, response);
      return this.#tokens(result, started, refreshToken);
    } catch (error) {
      throw toForgejoError(error, 'refresh', (code, status) =>
        status < 500 && REFUSED_REFRESH_ERRORS.has(code) ? 'grant_refused' : 'bad_response',
      );
    }
  }

  /** `GET /api/v1/user` with the user's access token. */
  async currentUser(accessToken: string): Promise<ForgejoUser> {
    const response = await this.#getUser(accessToken);
    if (!response.ok) {
      await response.body?.cancel();
      throw new ForgejoError('bad_response', `GET /api/v1/user answered ${response.status}`);
    }
    const body: unknown = await response.json().catch(() => undefined);
    if (!isForgejoUserBody(body)) throw new ForgejoError('bad_response', 'GET /api/v1/user answered an unexpected body');
    return { id: body.id, login: body.login, fullName: typeof body.full_name === 'string' ? body.full_name : '' };
  }

  /**
   * Whether Forgejo still accepts an access token, asked with `GET /api/v1/user`.
   * Only a 401 is a refusal; a 403 (a token without `read:user`) is a token it knows.
   */
  async accessTokenStatus(accessToken: string): Promise<AccessTokenStatus> {
    let status: number;
    try {
      const response = await this.#getUser(accessToken);
      await response.body?.cancel();
      status = response.status;
    } catch (error) {
      // A 401 carrying a WWW-Authenticate challenge arrives as an error of oauth4webapi.
      const challenged =
        error instanceof ForgejoError && error.cause instanceof oauth.WWWAuthenticateChallengeError ? error.cause : undefined;
      if (challenged === undefined) return 'unknown';
      await challenged.response.body?.cancel();
      status = challenged.status;
    }
    if (status === 401) return 'refused';
    return status === 200 || status === 403 ? 'live' : 'unknown';
  }

  async #getUser(accessToken: string): Promise<Response> {
    try {
      return await oauth.protectedResourceRequest(
        accessToken,
        'GET',
        new URL('api/v1/user', this.#issuer),
        new Headers({ accept: 'application/json' }),
        null,
        this.#requestOptions(),
      );
    } catch (error) {
      throw new ForgejoError(failureReason(error), `GET /api/v1/user failed: ${errorMessage(error)}`, { cause: error });
    }
  }

  /** Discovery, once; a failure is not cached, so a Forgejo that was down is found later. */
  #discover(): Promise<oauth.AuthorizationServer> {
    this.#metadata ??= (async () => {
      try {
        const response = await oauth.discoveryRequest(this.#issuer, { algorithm: 'oidc', ...this.#requestOptions() });
        return await oauth.processDiscoveryResponse(this.#issuer, response);
      } catch (error) {
        this.#metadata = undefined;
        throw new ForgejoError(failureReason(error), `Forgejo discovery failed: ${errorMessage(error)}`, { cause: error });
      }
    })();
    return this.#metadata;
  }

  #requestOptions(timeoutMs = this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS): {
    signal: AbortSignal;
    [oauth.allowInsecureRequests]: boolean;
  } {
    return {
      signal: AbortSignal.timeout(timeoutMs),
      // Plain http only when the operator configured an http Forgejo (loopback development, tests).
      [oauth.allowInsecureRequests]: this.#issuer.protocol === 'http:',
    };
  }

  #tokens(response: oauth.TokenEndpointResponse, started: number, previousRefreshToken: string | undefined): ForgejoTokens {
    const refreshToken = response.refresh_token ?? previousRefreshToken;
    if (refreshToken === undefined) throw new ForgejoError('bad_response', 'Forgejo issued no refresh token');
    // Counted from before the request, so the stored expiry is never later than Forgejo's.
    const expiresIn = response.expires_in ?? DEFAULT_EXPIRES_IN_SECONDS;
    return { accessToken: response.access_token, refreshToken, expiresAt: started + expiresIn * 1000 };
  }
}

function isForgejoUserBody(value: unknown): value is { id: number; login: string; full_name?: unknown } {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return typeof record.id === 'number' && typeof record.login === 'string' && record.login !== '';
}

/** Maps an oauth4webapi failure to a ForgejoError; `classify` decides for OAuth error bodies. */
function toForgejoError(error: unknown, operation: string, classify: (code: string, status: number) => ForgejoErrorReason): ForgejoError {
  if (error instanceof ForgejoError) return error;
  if (error instanceof oauth.ResponseBodyError) {
    return new ForgejoError(classify(error.error, error.status), `Forgejo ${operation} refused: ${error.error}`, {
      cause: error,
    });
  }
  return new ForgejoError(failureReason(error), `Forgejo ${operation} failed: ${errorMessage(error)}`, { cause: error });
}

/** An answer oauth4webapi could not use, or none at all (network, timeout). */
function failureReason(error: unknown): ForgejoErrorReason {
  return error instanceof oauth.OperationProcessingError || error instanceof oauth.WWWAuthenticateChallengeError
    ? 'bad_response'
    : 'unreachable';
}
