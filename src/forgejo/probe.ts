import * as oauth from 'oauth4webapi';

import type { Logger } from '../log/logger.js';

export interface ForgejoProbeOptions {
  /** FORGEJO_URL */
  readonly forgejoUrl: URL;
  readonly log: Logger;
  /** Between checks while Forgejo answers. Default 1 min. */
  readonly intervalMs?: number;
  /** Between checks while it does not. Default 5 s. */
  readonly retryMs?: number;
  /** Per request. Default 5 s. */
  readonly timeoutMs?: number;
}

/** A `/readyz` poll re-checks a failing Forgejo at most this often. */
const RECHECK_ON_DEMAND_MS = 1_000;

/**
 * Whether Forgejo answers what sign-in and the children need: its OAuth
 * discovery document (with the issuer FORGEJO_URL names) and
 * `/api/v1/version`, which forgejo-mcp fetches at start and dies without.
 * Checked at start and then periodically, so a wrong FORGEJO_URL shows at
 * once in the log and in `/readyz`, naming the URL and the system error,
 * instead of at the first sign-in.
 */
export class ForgejoProbe {
  readonly #options: ForgejoProbeOptions;
  readonly #issuer: URL;
  #failure: string | undefined = 'Forgejo has not been checked yet';
  #checking: Promise<void> | undefined;
  #checkedAt = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ForgejoProbeOptions) {
    this.#options = options;
    this.#issuer = new URL(options.forgejoUrl.href.endsWith('/') ? options.forgejoUrl.href : `${options.forgejoUrl.href}/`);
  }

  /** The first check; later ones follow on their own until `close`. */
  start(): Promise<void> {
    return this.check();
  }

  /** Why Forgejo is not usable, or undefined when it is. A failing Forgejo is asked again first. */
  async notReadyBecause(): Promise<string | undefined> {
    if (this.#failure !== undefined && Date.now() - this.#checkedAt >= RECHECK_ON_DEMAND_MS) await this.check();
    return this.#failure;
  }

  /** One check now (joined when one runs already). */
  check(): Promise<void> {
    this.#checking ??= this.#run().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #run(): Promise<void> {
    const failure = await this.#probe();
    this.#checkedAt = Date.now();
    const before = this.#failure;
    this.#failure = failure;
    if (failure !== undefined && failure !== before) {
      this.#options.log.warn(
        { event: 'forgejo_unreachable', forgejoUrl: this.#issuer.href, err: failure },
        `Forgejo is not usable: ${failure}`,
      );
    } else if (failure === undefined && before !== undefined) {
      this.#options.log.info({ event: 'forgejo_reachable', forgejoUrl: this.#issuer.href }, 'Forgejo answers');
    }
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => void this.check(),
      failure === undefined ? (this.#options.intervalMs ?? 60_000) : (this.#options.retryMs ?? 5_000),
    );
    this.#timer.unref();
  }

  async #probe(): Promise<string | undefined> {
    const discovery = new URL('.well-known/openid-configuration', this.#issuer);
    try {
      const response = await oauth.discoveryRequest(this.#issuer, { algorithm: 'oidc', ...this.#requestOptions() });
      if (!response.ok) return `${discovery.href} answered HTTP ${response.status}`;
      await oauth.processDiscoveryResponse(this.#issuer, response);
    } catch (error) {
      return `${discovery.href}: ${systemError(error)}`;
    }
    const version = new URL('api/v1/version', this.#issuer);
    try {
      const response = await fetch(version, { signal: AbortSignal.timeout(this.#options.timeoutMs ?? 5_000) });
      await response.body?.cancel();
      if (!response.ok) return `${version.href} answered HTTP ${response.status}`;
    } catch (error) {
      return `${version.href}: ${systemError(error)}`;
    }
    return undefined;
  }

  #requestOptions(): { signal: AbortSignal; [oauth.allowInsecureRequests]: boolean } {
    return {
      signal: AbortSignal.timeout(this.#options.timeoutMs ?? 5_000),
      [oauth.allowInsecureRequests]: this.#issuer.protocol === 'http:',
    };
  }
}

/**
 * The innermost cause of a failed request, which names what went wrong
 * (`connect ECONNREFUSED 127.0.0.1:3000`, `getaddrinfo ENOTFOUND forge`),
 * where fetch itself only says "fetch failed".
 */
function systemError(error: unknown): string {
  let current: unknown = error;
  while (current instanceof Error && current.cause !== undefined) current = current.cause;
  if (current instanceof AggregateError && current.errors.length > 0) current = current.errors[0];
  const code = typeof current === 'object' && current !== null && 'code' in current ? String(current.code) : undefined;
  const message = current instanceof Error ? current.message : String(current);
  return code === undefined || message.includes(code) ? message : `${code}: ${message}`;
}
