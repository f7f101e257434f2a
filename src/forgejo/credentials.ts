import type { ForgejoAccess, ForgejoCredentials } from '../auth/principal.js';
import { BrokerError, errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { ForgejoCredential, ForgejoCredentialRepository, ForgejoTokens, User } from '../store/store.js';
import type { AccessTokenStatus } from './client.js';
import { type ForgejoError, isForgejoError } from './errors.js';

/** What the credential manager needs from Forgejo. */
export interface ForgejoRefresher {
  /**
   * Rejects with ForgejoError `grant_refused` when Forgejo refused the refresh
   * token (dead; the access token may live on), any other rejection when the
   * outcome is unknown (Forgejo may have spent the refresh token all the same).
   */
  refresh(refreshToken: string): Promise<ForgejoTokens>;
  /** Whether Forgejo still accepts the access token (`GET /api/v1/user`). */
  accessTokenStatus(accessToken: string): Promise<AccessTokenStatus>;
}

export interface ForgejoCredentialManagerOptions {
  readonly credentials: ForgejoCredentialRepository;
  readonly forgejo: ForgejoRefresher;
  readonly logger: Logger;
  readonly now?: () => number;
  /** First delay after a refresh with an unknown outcome; doubled on each further one. Default 1 s. */
  readonly retryInitialDelayMs?: number;
  /** Upper bound of the retry delay. Default 60 s. */
  readonly retryMaxDelayMs?: number;
}

export type CredentialListener = (userId: string) => void;

/** How a credential ended: its access token refused by Forgejo before expiry, or expired with no way to refresh it. */
type CredentialEnd = 'refused' | 'expired';

/** How one refresh sent to Forgejo ended: new tokens, the refresh token refused, or no telling. */
export type RefreshOutcome = 'ok' | 'refused' | 'unknown';

export type RefreshOutcomeListener = (outcome: RefreshOutcome, userId: string) => void;

interface UserRefreshState {
  /** The refresh in flight for this user: every caller joins it. */
  inflight?: Promise<ForgejoAccess>;
  /** Consecutive refreshes with an unknown outcome. */
  failures: number;
  retryTimer?: NodeJS.Timeout;
}

/**
 * Forgejo credentials per user (Forgejo invalidates older refresh tokens, so
 * a credential belongs to the user, not to a session or grant).
 *
 * - Single flight: concurrent callers for one user share one refresh.
 * - "Refresh started" is stored, durably, before the refresh is sent; the
 *   newest refresh token is stored, durably, before anyone gets the new
 *   access token; a refresh never overwrites a newer login (generation check).
 * - An unknown outcome (timeout, cut connection, 5xx, or a start recorded by
 *   a broker that died before storing the answer) is no revocation: the
 *   current access token stays in use, and the refresh is retried in the
 *   background with exponential backoff. After the access token expired,
 *   callers get `unavailable` until a retry settles it.
 * - A refused refresh token is no revocation either (the refusal may be the
 *   echo of our own refresh whose answer was lost): it is recorded, and the
 *   access token serves, unrefreshed, while Forgejo accepts it. Whenever a
 *   fresher token is wanted it is checked with `GET /api/v1/user`.
 * - Only Forgejo refusing the access token (401), or its expiry with no way
 *   to refresh it, ends the credential: it is marked revoked,
 *   `onCredentialRevoked` fires, and callers get `credential_revoked`. A 401
 *   before the expiry is the application's grant revoked at Forgejo (by the
 *   user or an admin): every broker grant of the user is revoked with the
 *   credential, so a stolen broker refresh token does not revive with the
 *   user's next login. After an expiry the grants stay, for that login to
 *   revive.
 * - `onCredentialChanged` fires after every stored change (refresh or login),
 *   so the session layer can move the user's sessions onto the new token;
 *   `onRefreshOutcome` after every refresh sent to Forgejo.
 */
export class ForgejoCredentialManager implements ForgejoCredentials {
  readonly #credentials: ForgejoCredentialRepository;
  readonly #forgejo: ForgejoRefresher;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #retryInitialDelayMs: number;
  readonly #retryMaxDelayMs: number;
  readonly #users = new Map<string, UserRefreshState>();
  readonly #changedListeners = new Set<CredentialListener>();
  readonly #revokedListeners = new Set<CredentialListener>();
  readonly #outcomeListeners = new Set<RefreshOutcomeListener>();
  #closed = false;

  constructor(options: ForgejoCredentialManagerOptions) {
    this.#credentials = options.credentials;
    this.#forgejo = options.forgejo;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#retryInitialDelayMs = options.retryInitialDelayMs ?? 1000;
    this.#retryMaxDelayMs = options.retryMaxDelayMs ?? 60_000;
  }

  async access(userId: string, minValidityMs: number): Promise<ForgejoAccess> {
    const credential = await this.#live(userId);
    const now = this.#now();
    if (credential.expiresAt - now > minValidityMs) return toAccess(credential);
    const state = this.#state(userId);
    if (state.inflight !== undefined) return state.inflight;
    // Backing off after an unknown outcome: the old token is still good.
    if (state.retryTimer !== undefined && credential.expiresAt > now) return toAccess(credential);
    return this.#refresh(userId, credential.generation);
  }

  async refused(userId: string, accessToken: string): Promise<ForgejoAccess> {
    const credential = await this.#live(userId);
    // A rotation or a new login since: the newer token is the answer.
    if (credential.accessToken !== accessToken) return toAccess(credential);
    if ((await this.#forgejo.accessTokenStatus(accessToken)) !== 'refused') return toAccess(credential);
    // Refused before its expiry: the grant was revoked at Forgejo. After it: refresh, as any caller would.
    if (credential.expiresAt > this.#now()) return this.#end(credential, 'refused');
    return this.access(userId, 0);
  }

  /**
   * Stores the credential of a fresh Forgejo login, superseding the user's
   * previous one (Forgejo keeps one grant per user and application), and
   * notifies listeners.
   */
  async storeLogin(user: User, tokens: ForgejoTokens): Promise<void> {
    await this.#credentials.replaceAfterLogin(user, tokens, this.#now());
    const state = this.#users.get(user.userId);
    if (state !== undefined) {
      clearTimeout(state.retryTimer);
      state.retryTimer = undefined;
      state.failures = 0;
    }
    this.#emit(this.#changedListeners, user.userId);
  }

  /** Listens for a user's credential being replaced; returns the unsubscribe function. */
  onCredentialChanged(listener: CredentialListener): () => void {
    this.#changedListeners.add(listener);
    return () => this.#changedListeners.delete(listener);
  }

  /** Listens for a user's credential ending (Forgejo refused its access token, or it expired); returns the unsubscribe function. */
  onCredentialRevoked(listener: CredentialListener): () => void {
    this.#revokedListeners.add(listener);
    return () => this.#revokedListeners.delete(listener);
  }

  /** Listens for the outcome of every refresh sent to Forgejo; returns the unsubscribe function. */
  onRefreshOutcome(listener: RefreshOutcomeListener): () => void {
    this.#outcomeListeners.add(listener);
    return () => this.#outcomeListeners.delete(listener);
  }

  /** Stops background retries. Refreshes in flight finish. */
  close(): void {
    this.#closed = true;
    for (const state of this.#users.values()) clearTimeout(state.retryTimer);
    this.#users.clear();
  }

  async #live(userId: string): Promise<ForgejoCredential> {
    const credential = await this.#credentials.find(userId);
    if (credential === undefined || credential.revokedAt !== null) {
      throw new BrokerError('credential_revoked', 'no live Forgejo credential for this user: sign in again');
    }
    return credential;
  }

  #state(userId: string): UserRefreshState {
    let state = this.#users.get(userId);
    if (state === undefined) {
      state = { failures: 0 };
      this.#users.set(userId, state);
    }
    return state;
  }

  /** Refreshes the credential of the given generation, once per user at a time, across every replica of the store. */
  #refresh(userId: string, generation: number): Promise<ForgejoAccess> {
    const state = this.#state(userId);
    clearTimeout(state.retryTimer);
    state.retryTimer = undefined;
    const inflight = this.#credentials
      .withRefreshLock(userId, () => this.#refreshOnce(userId, state, generation))
      .finally(() => {
        state.inflight = undefined;
      });
    state.inflight = inflight;
    return inflight;
  }

  async #refreshOnce(userId: string, state: UserRefreshState, generation: number): Promise<ForgejoAccess> {
    const credential = await this.#live(userId);
    if (credential.generation !== generation) {
      // Another replica refreshed (or the user signed in again) while we waited for the lock: use its result.
      state.failures = 0;
      this.#emit(this.#changedListeners, userId);
      return toAccess(credential);
    }
    if (credential.refreshRefusedAt !== null) return this.#withoutRefresh(credential);
    // A start recorded before and never finished: its answer was lost, and Forgejo may have spent the refresh token.
    const afterLostAnswer = credential.refreshStartedAt !== null;
    if (!(await this.#credentials.markRefreshStarted(userId, generation, this.#now()))) {
      // A login replaced the credential since we read it (or it ended): the store has the newer state.
      return toAccess(await this.#live(userId));
    }
    let tokens: ForgejoTokens;
    try {
      tokens = await this.#forgejo.refresh(credential.refreshToken);
    } catch (error) {
      if (isForgejoError(error, 'grant_refused')) {
        this.#emitOutcome('refused', userId);
        return this.#afterRefusal(credential, state, error, afterLostAnswer);
      }
      this.#emitOutcome('unknown', userId);
      return this.#afterUnknownOutcome(credential, state, error);
    }
    this.#emitOutcome('ok', userId);
    const stored = await this.#credentials.storeRefreshed(userId, credential.generation, tokens, this.#now());
    state.failures = 0;
    if (stored === undefined) {
      // A login replaced the credential while we refreshed; it is newer than ours.
      return toAccess(await this.#live(userId));
    }
    this.#logger.info({ event: 'forgejo_credential_refreshed', userId }, 'Forgejo credential refreshed');
    this.#emit(this.#changedListeners, userId);
    return toAccess(stored);
  }

  async #afterRefusal(
    credential: ForgejoCredential,
    state: UserRefreshState,
    cause: ForgejoError,
    afterLostAnswer: boolean,
  ): Promise<ForgejoAccess> {
    const at = this.#now();
    if (!(await this.#credentials.markRefreshRefused(credential.userId, credential.generation, at))) {
      // A login superseded the refresh token we used while we refreshed: its credential is the live one.
      return toAccess(await this.#live(credential.userId));
    }
    state.failures = 0;
    this.#logger.warn(
      {
        event: 'forgejo_refresh_refused',
        userId: credential.userId,
        err: cause.message,
        afterLostAnswer,
        remainingMs: credential.expiresAt - at,
      },
      'Forgejo refused the refresh token; the access token serves until Forgejo refuses it or it expires',
    );
    return this.#withoutRefresh({ ...credential, refreshRefusedAt: at });
  }

  /** The refresh token is dead: the access token is all there is, for as long as Forgejo accepts it. */
  async #withoutRefresh(credential: ForgejoCredential): Promise<ForgejoAccess> {
    if (credential.expiresAt <= this.#now()) return this.#end(credential, 'expired');
    const status = await this.#forgejo.accessTokenStatus(credential.accessToken);
    if (status !== 'refused') return toAccess(credential);
    // A 401 that arrives once the token expired may be the expiry itself: only one before it is a revocation.
    return this.#end(credential, credential.expiresAt > this.#now() ? 'refused' : 'expired');
  }

  async #end(credential: ForgejoCredential, how: CredentialEnd): Promise<ForgejoAccess> {
    const { userId, generation } = credential;
    const ended =
      how === 'refused'
        ? await this.#credentials.endCredentialRevokingGrants(userId, generation, this.#now())
        : await this.#credentials.endCredentialKeepingGrants(userId, generation, this.#now());
    if (!ended) {
      // A login replaced the credential meanwhile: its credential is the live one.
      return toAccess(await this.#live(userId));
    }
    const reason = how === 'refused' ? 'Forgejo refused the access token' : 'the Forgejo access token expired and cannot be refreshed';
    this.#logger.warn(
      { event: 'forgejo_credential_ended', userId, how, grantsRevoked: how === 'refused' },
      'Forgejo credential ended; the user must sign in again',
    );
    this.#users.delete(userId);
    this.#emit(this.#revokedListeners, userId);
    throw new BrokerError('credential_revoked', `${reason}: sign in again`);
  }

  #afterUnknownOutcome(credential: ForgejoCredential, state: UserRefreshState, error: unknown): ForgejoAccess {
    state.failures += 1;
    const remaining = credential.expiresAt - this.#now();
    this.#logger.warn(
      {
        event: 'forgejo_refresh_outcome_unknown',
        userId: credential.userId,
        failures: state.failures,
        remainingMs: remaining,
        err: errorMessage(error),
      },
      'Forgejo refresh outcome unknown; the current access token serves; will retry',
    );
    if (remaining <= 0) {
      throw new BrokerError('unavailable', `Forgejo refresh failed and the token expired: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    if (!this.#closed) {
      const delay = Math.min(this.#retryInitialDelayMs * 2 ** (state.failures - 1), this.#retryMaxDelayMs, remaining);
      state.retryTimer = setTimeout(() => {
        state.retryTimer = undefined;
        this.#refresh(credential.userId, credential.generation).catch((retryError: unknown) => {
          this.#logger.debug(
            { event: 'forgejo_background_refresh_failed', userId: credential.userId, err: errorMessage(retryError) },
            'background refresh did not succeed',
          );
        });
      }, delay);
      state.retryTimer.unref();
    }
    return toAccess(credential);
  }

  #emitOutcome(outcome: RefreshOutcome, userId: string): void {
    for (const listener of this.#outcomeListeners) {
      try {
        listener(outcome, userId);
      } catch (error) {
        this.#logger.error({ event: 'credential_listener_failed', value: outcome, err: errorMessage(error) }, 'credential listener failed');
      }
    }
  }

  #emit<T>(listeners: Set<(value: T) => void>, value: T): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (error) {
        this.#logger.error({ event: 'credential_listener_failed', value, err: errorMessage(error) }, 'credential listener failed');
      }
    }
  }
}

function toAccess(credential: ForgejoCredential): ForgejoAccess {
  return { accessToken: credential.accessToken, expiresAt: credential.expiresAt };
}
