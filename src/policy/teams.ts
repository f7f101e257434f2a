import type { ForgejoCredentials } from '../auth/principal.js';
import { errorMessage } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';

export interface TeamDirectoryOptions {
  /** FORGEJO_URL. */
  readonly forgejoUrl: URL;
  /** The user's own Forgejo token asks: a team is only what the user can see of it. */
  readonly credentials: ForgejoCredentials;
  readonly cacheMs: number;
  readonly log: Logger;
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

interface Cached {
  readonly teams: Promise<ReadonlySet<string>>;
  readonly at: number;
}

/** Forgejo pages at most 50 items; a user in more teams than this many pages is rare enough to stop there. */
const PAGE_LIMIT = 50;
const MAX_PAGES = 20;

/**
 * A user's Forgejo teams (`org/team`, lowercase), from `GET /api/v1/user/teams`
 * with their own token, kept for a short while; concurrent asks for one user
 * share one lookup. When Forgejo cannot say, the user is in no team (so a
 * team's wider rule does not apply) until the next lookup.
 */
export class TeamDirectory {
  readonly #cache = new Map<string, Cached>();
  readonly #now: () => number;
  readonly #options: TeamDirectoryOptions;

  constructor(options: TeamDirectoryOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  teamsOf(userId: string): Promise<ReadonlySet<string>> {
    const now = this.#now();
    const cached = this.#cache.get(userId);
    if (cached !== undefined && now - cached.at < this.#options.cacheMs) return cached.teams;
    const teams = this.#fetch(userId);
    this.#cache.set(userId, { teams, at: now });
    return teams;
  }

  /** Forgets every cached membership (a reloaded policy may name other teams). */
  clear(): void {
    this.#cache.clear();
  }

  async #fetch(userId: string): Promise<ReadonlySet<string>> {
    try {
      const { accessToken } = await this.#options.credentials.access(userId, 0);
      const teams = new Set<string>();
      for (let page = 1; page <= MAX_PAGES; page++) {
        const url = new URL(`api/v1/user/teams?page=${page}&limit=${PAGE_LIMIT}`, `${this.#options.forgejoUrl.href.replace(/\/$/, '')}/`);
        const response = await fetch(url, {
          headers: { authorization: `token ${accessToken}`, accept: 'application/json' },
          signal: AbortSignal.timeout(this.#options.timeoutMs ?? 10_000),
        });
        if (!response.ok) throw new Error(`Forgejo answered ${response.status} to GET /api/v1/user/teams`);
        const body = (await response.json()) as unknown;
        if (!Array.isArray(body)) throw new Error('GET /api/v1/user/teams did not answer a list');
        for (const team of body as { name?: unknown; organization?: { username?: unknown; name?: unknown } | null }[]) {
          const org = team.organization?.username ?? team.organization?.name;
          if (typeof org === 'string' && typeof team.name === 'string') teams.add(`${org}/${team.name}`.toLowerCase());
        }
        if (body.length < PAGE_LIMIT) break;
      }
      return teams;
    } catch (error) {
      this.#cache.delete(userId);
      this.#options.log.warn(
        { event: 'forgejo_teams_failed', userId, err: errorMessage(error) },
        "could not read the user's Forgejo teams; no team rule applies to them for now",
      );
      return new Set();
    }
  }
}
