import type { ForgejoAccess, ForgejoCredentials } from '../auth/principal.js';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { ForgejoCredential, ForgejoCredentialRepository, ForgejoTokens, User } from '../store/store.js';

/** What the credential manager needs from Forgejo. */
export interface ForgejoRefresher {
  /** Rejects with BrokerError `credential_revoked` (refused for good) or another kind (may pass). */
  refresh(refreshToken: string): Promise<ForgejoTokens>;
}

export interface ForgejoCredentialManagerOptions {
  readonly credentials: ForgejoCredentialRepository;
  readonly forgejo: ForgejoRefresher;
  readonly logger: Logger;
  readonly now?: () => number;
  /** First delay after a failed refresh; doubled on each further failure. Default 1 s. */
  readonly retryInitialDelayMs?: number;
  /** Upper bound of the retry delay. Default 60 s. */
  readonly retryMaxDelayMs?: number;
}

export type CredentialListener = (userId: string) => void;

interface UserRefreshState {
  /** The refresh in flight for this user: every caller joins it. */
  inflight?: Promise<ForgejoAccess>;
  /** Consecutive transient failures. */
  failures: number;
  retryTimer?: NodeJS.Timeout;
}

/**
 * Forgejo credentials per user (Forgejo invalidates older refresh tokens, so
 * a credential belongs to the user, not to a session or grant).
 *
 * - Single flight: concurrent callers for one user share one refresh.
 * - The newest refresh token is stored, durably, before anyone gets the new
 *   access token; a refresh never overwrites a newer login (generation check).
 * - A refusal from Forgejo marks the credential dead (and revokes the user's
 *   grants in the store), notifies `onCredentialRevoked`, and rejects with
 *   `credential_revoked`.
 * - A passing failure (network, 5xx) leaves the still-valid old token in use
 *   and retries in the background with exponential backoff until it works or
 *   the old token expires; after expiry callers get `unavailable`.
 * - `onCredentialChanged` fires after every stored change (refresh or login),
 *   so the session layer can move the user's sessions onto the new token.
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
    // Backing off after a passing failure: the old token is still good.
    if (state.retryTimer !== undefined && credential.expiresAt > now) return toAccess(credential);
    return this.#refresh(userId, credential.generation);
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

  /** Listens for a user's credential being refused by Forgejo; returns the unsubscribe function. */
  onCredentialRevoked(listener: CredentialListener): () => void {
    this.#revokedListeners.add(listener);
    return () => this.#revokedListeners.delete(listener);
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
    const inflight = this.#credentials.withRefreshLock(userId, () => this.#refreshOnce(userId, state, generation)).finally(() => {
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
    let tokens: ForgejoTokens;
    try {
      tokens = await this.#forgejo.refresh(credential.refreshToken);
    } catch (error) {
      if (isBrokerError(error, 'credential_revoked')) return this.#revoke(credential, error);
      return this.#afterPassingFailure(credential, state, error);
    }
    const stored = await this.#credentials.storeRefreshed(userId, credential.generation, tokens, this.#now());
    state.failures = 0;
    if (stored === undefined) {
      // A login replaced the credential while we refreshed; it is newer than ours.
      return toAccess(await this.#live(userId));
    }
    this.#logger.info({ userId }, 'Forgejo credential refreshed');
    this.#emit(this.#changedListeners, userId);
    return toAccess(stored);
  }

  async #revoke(credential: ForgejoCredential, cause: BrokerError): Promise<ForgejoAccess> {
    const revoked = await this.#credentials.markRevoked(credential.userId, credential.generation, this.#now());
    if (!revoked) {
      // A login superseded the refresh token we used while we refreshed: its credential is the live one.
      const current = await this.#live(credential.userId);
      return toAccess(current);
    }
    this.#logger.warn({ userId: credential.userId, reason: cause.message }, 'Forgejo refused the refresh: credential revoked');
    this.#users.delete(credential.userId);
    this.#emit(this.#revokedListeners, credential.userId);
    throw new BrokerError('credential_revoked', 'Forgejo refused the refresh token: sign in again', { cause });
  }

  #afterPassingFailure(credential: ForgejoCredential, state: UserRefreshState, error: unknown): ForgejoAccess {
    state.failures += 1;
    const remaining = credential.expiresAt - this.#now();
    this.#logger.warn(
      { userId: credential.userId, failures: state.failures, remainingMs: remaining, reason: errorMessage(error) },
      'Forgejo refresh failed; will retry',
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
          this.#logger.debug({ userId: credential.userId, reason: errorMessage(retryError) }, 'background refresh did not succeed');
        });
      }, delay);
      state.retryTimer.unref();
    }
    return toAccess(credential);
  }

  #emit(listeners: Set<CredentialListener>, userId: string): void {
    for (const listener of listeners) {
      try {
        listener(userId);
      } catch (error) {
        this.#logger.error({ userId, reason: errorMessage(error) }, 'credential listener failed');
      }
    }
  }
}

function toAccess(credential: ForgejoCredential): ForgejoAccess {
  return { accessToken: credential.accessToken, expiresAt: credential.expiresAt };
}
