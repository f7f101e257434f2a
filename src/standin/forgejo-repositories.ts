/**
 * The stand-in Forgejo's repository API: repositories, issues, their comments and
 * pull requests, in memory, with the paths, status codes and JSON shapes of Forgejo's
 * `/api/v1` (a subset of the fields). What forgejo-mcp's issue, pull request and
 * repository tools call.
 *
 * Forgejo's rules it keeps:
 * - A private repository is visible to its owner only; to anyone else it does not
 *   exist (404, not 403).
 * - Issues and pull requests share one index per repository, and the issues list and
 *   `/issues/{index}` include pull requests unless `type=issues`.
 * - Granular token scopes: `read:issue`/`write:issue` for issues and comments,
 *   `read:repository` for repositories and pull requests (`/user/repos` also needs
 *   `read:user`); `write:x` implies `read:x`; no granular scope means full access.
 * - Lists are paged with `page` and `limit` (default 30, at most 50) and carry
 *   `X-Total-Count`; newest first.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StandinUser } from './forgejo-user.js';

export interface StandinIssueSeed {
  readonly title: string;
  readonly body?: string;
}

export interface StandinPullRequestSeed {
  readonly title: string;
  readonly body?: string;
  /** The branch with the changes. */
  readonly head: string;
  /** Defaults to `main`. */
  readonly base?: string;
}

/** A repository the stand-in starts with; its issues and pull requests are opened by its owner, in order. */
export interface StandinRepositorySeed {
  /** Login of an existing user. */
  readonly owner: string;
  readonly name: string;
  readonly description?: string;
  /** Defaults to true. */
  readonly private?: boolean;
  readonly issues?: readonly StandinIssueSeed[];
  readonly pullRequests?: readonly StandinPullRequestSeed[];
}

/** Who calls, as the token says. */
export interface ApiCaller {
  readonly user: StandinUser;
  /** The token's effective scopes (`all` for full access). */
  readonly scopes: ReadonlySet<string>;
}

export interface RepositoryApi {
  /** Answers the request if it is one of this API's routes; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, caller: ApiCaller, url: URL): Promise<boolean>;
}

interface Comment {
  readonly id: number;
  readonly author: StandinUser;
  readonly body: string;
  readonly createdAt: string;
}

interface Item {
  readonly id: number;
  readonly number: number;
  readonly author: StandinUser;
  readonly title: string;
  readonly body: string;
  readonly state: 'open' | 'closed';
  readonly createdAt: string;
  updatedAt: string;
  readonly comments: Comment[];
  readonly pull: { readonly head: string; readonly base: string } | undefined;
}

interface Repository {
  readonly id: number;
  readonly owner: StandinUser;
  readonly name: string;
  readonly description: string;
  readonly private: boolean;
  readonly createdAt: string;
  readonly items: Item[];
}

type Access = 'read' | 'write';

const DEFAULT_PAGE_SIZE = 30;
const MAX_PAGE_SIZE = 50;
const MAX_BODY_BYTES = 1024 * 1024;

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function hasScope(scopes: ReadonlySet<string>, access: Access, category: string): boolean {
  return scopes.has('all') || scopes.has(`write:${category}`) || (access === 'read' && scopes.has(`read:${category}`));
}

function requireScopes(caller: ApiCaller, access: Access, ...categories: string[]): void {
  const missing = categories.filter((category) => !hasScope(caller.scopes, access, category));
  if (missing.length > 0) {
    throw new ApiError(
      403,
      `token does not have at least one of required scope(s): [${missing.map((category) => `${access}:${category}`).join(' ')}]`,
    );
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 'request body too large');
    chunks.push(chunk);
  }
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // Answered below, as Forgejo's binding does.
  }
  throw new ApiError(422, 'the body is not a JSON object');
}

function requiredText(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value.trim() === '')
    throw new ApiError(422, `[${field[0]?.toUpperCase() ?? ''}${field.slice(1)}]: Required`);
  return value;
}

function optionalText(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  return typeof value === 'string' ? value : '';
}

/** Forgejo's paging: the requested page of a newest-first list, and the total. */
function paged<T>(items: readonly T[], query: URLSearchParams): { page: T[]; total: number } {
  const pageNumber = Math.max(1, Number.parseInt(query.get('page') ?? '', 10) || 1);
  const requested = Number.parseInt(query.get('limit') ?? '', 10);
  const size = Number.isInteger(requested) && requested > 0 ? Math.min(requested, MAX_PAGE_SIZE) : DEFAULT_PAGE_SIZE;
  return { page: items.slice((pageNumber - 1) * size, pageNumber * size), total: items.length };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

export function createRepositoryApi(options: {
  readonly users: readonly StandinUser[];
  readonly seeds: readonly StandinRepositorySeed[];
  /** The stand-in's base URL, known once it listens. */
  readonly baseUrl: () => string;
  /** The stand-in's clock (tests move it). */
  readonly now: () => number;
}): RepositoryApi {
  const repositories: Repository[] = [];
  let nextId = 1;
  const timestamp = (): string => new Date(options.now()).toISOString();
  const findUser = (login: string): StandinUser | undefined =>
    options.users.find((user) => user.login.toLowerCase() === login.toLowerCase());

  function openItem(repository: Repository, author: StandinUser, title: string, body: string, pull: Item['pull']): Item {
    const createdAt = timestamp();
    const item: Item = {
      id: nextId++,
      number: repository.items.length + 1,
      author,
      title,
      body,
      state: 'open',
      createdAt,
      updatedAt: createdAt,
      comments: [],
      pull,
    };
    repository.items.push(item);
    return item;
  }

  for (const seed of options.seeds) {
    const owner = findUser(seed.owner);
    if (owner === undefined) throw new Error(`stand-in Forgejo: repository ${seed.owner}/${seed.name} has no such owner`);
    const repository: Repository = {
      id: nextId++,
      owner,
      name: seed.name,
      description: seed.description ?? '',
      private: seed.private ?? true,
      createdAt: timestamp(),
      items: [],
    };
    repositories.push(repository);
    for (const issue of seed.issues ?? []) openItem(repository, owner, issue.title, issue.body ?? '', undefined);
    for (const pull of seed.pullRequests ?? [])
      openItem(repository, owner, pull.title, pull.body ?? '', { head: pull.head, base: pull.base ?? 'main' });
  }

  const userJson = (user: StandinUser): Record<string, unknown> => ({
    id: user.id,
    login: user.login,
    full_name: user.fullName,
    email: user.email,
    avatar_url: `${options.baseUrl()}/avatars/${user.id}`,
    html_url: `${options.baseUrl()}/${user.login}`,
    username: user.login,
  });

  const fullName = (repository: Repository): string => `${repository.owner.login}/${repository.name}`;
  const htmlUrl = (repository: Repository): string => `${options.baseUrl()}/${fullName(repository)}`;

  const repositoryJson = (repository: Repository): Record<string, unknown> => ({
    id: repository.id,
    owner: userJson(repository.owner),
    name: repository.name,
    full_name: fullName(repository),
    description: repository.description,
    private: repository.private,
    fork: false,
    html_url: htmlUrl(repository),
    clone_url: `${htmlUrl(repository)}.git`,
    default_branch: 'main',
    open_issues_count: repository.items.filter((item) => item.pull === undefined && item.state === 'open').length,
    open_pr_counter: repository.items.filter((item) => item.pull !== undefined && item.state === 'open').length,
    has_issues: true,
    has_pull_requests: true,
    created_at: repository.createdAt,
    updated_at: repository.items.at(-1)?.updatedAt ?? repository.createdAt,
  });

  const itemUrl = (repository: Repository, item: Item): string =>
    `${htmlUrl(repository)}/${item.pull === undefined ? 'issues' : 'pulls'}/${item.number}`;

  const issueJson = (repository: Repository, item: Item): Record<string, unknown> => ({
    id: item.id,
    url: `${options.baseUrl()}/api/v1/repos/${fullName(repository)}/issues/${item.number}`,
    html_url: itemUrl(repository, item),
    number: item.number,
    user: userJson(item.author),
    title: item.title,
    body: item.body,
    labels: [],
    milestone: null,
    assignees: null,
    state: item.state,
    is_locked: false,
    comments: item.comments.length,
    created_at: item.createdAt,
    updated_at: item.updatedAt,
    closed_at: null,
    pull_request: item.pull === undefined ? null : { merged: false, merged_at: null, draft: false, html_url: itemUrl(repository, item) },
    repository: { id: repository.id, name: repository.name, owner: repository.owner.login, full_name: fullName(repository) },
  });

  const pullJson = (repository: Repository, item: Item, pull: NonNullable<Item['pull']>): Record<string, unknown> => ({
    id: item.id,
    url: itemUrl(repository, item),
    number: item.number,
    user: userJson(item.author),
    title: item.title,
    body: item.body,
    labels: [],
    milestone: null,
    assignees: null,
    state: item.state,
    is_locked: false,
    comments: item.comments.length,
    html_url: itemUrl(repository, item),
    diff_url: `${itemUrl(repository, item)}.diff`,
    patch_url: `${itemUrl(repository, item)}.patch`,
    mergeable: true,
    merged: false,
    merged_at: null,
    draft: false,
    base: { label: pull.base, ref: pull.base, repo_id: repository.id },
    head: { label: pull.head, ref: pull.head, repo_id: repository.id },
    created_at: item.createdAt,
    updated_at: item.updatedAt,
    closed_at: null,
  });

  const commentJson = (repository: Repository, item: Item, comment: Comment): Record<string, unknown> => ({
    id: comment.id,
    html_url: `${itemUrl(repository, item)}#issuecomment-${comment.id}`,
    issue_url: itemUrl(repository, item),
    pull_request_url: item.pull === undefined ? '' : itemUrl(repository, item),
    user: userJson(comment.author),
    body: comment.body,
    created_at: comment.createdAt,
    updated_at: comment.createdAt,
  });

  /** The repository as the caller sees it: someone else's private one does not exist. */
  function visibleRepository(caller: ApiCaller, owner: string, name: string): Repository {
    const repository = repositories.find(
      (candidate) => candidate.owner.login.toLowerCase() === owner.toLowerCase() && candidate.name.toLowerCase() === name.toLowerCase(),
    );
    if (repository === undefined || (repository.private && repository.owner.id !== caller.user.id)) {
      throw new ApiError(404, "The target couldn't be found.");
    }
    return repository;
  }

  function findItem(repository: Repository, index: string): Item {
    const item = repository.items.find((candidate) => String(candidate.number) === index);
    if (item === undefined) throw new ApiError(404, "The target couldn't be found.");
    return item;
  }

  function stateMatches(item: Item, query: URLSearchParams): boolean {
    const state = query.get('state') ?? 'open';
    return state === 'all' || item.state === (state === 'closed' ? 'closed' : 'open');
  }

  function sendList(res: ServerResponse, items: readonly Record<string, unknown>[], query: URLSearchParams): void {
    const { page, total } = paged(items, query);
    sendJson(res, 200, page, { 'x-total-count': String(total) });
  }

  async function route(req: IncomingMessage, res: ServerResponse, caller: ApiCaller, url: URL): Promise<boolean> {
    const method = req.method ?? 'GET';
    const query = url.searchParams;
    if (url.pathname === '/api/v1/user/repos' && method === 'GET') {
      requireScopes(caller, 'read', 'user', 'repository');
      const owned = repositories.filter((repository) => repository.owner.id === caller.user.id).reverse();
      sendList(res, owned.map(repositoryJson), query);
      return true;
    }
    const match = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)(?:\/(issues|pulls)(?:\/(\d+)(\/comments)?)?)?$/.exec(url.pathname);
    if (match === null) return false;
    const [, owner = '', name = '', collection, index, comments] = match;
    const decode = decodeURIComponent;
    const endpoint = `${method} ${collection ?? ''}${index === undefined ? '' : '/{index}'}${comments ?? ''}`;
    switch (endpoint) {
      case 'GET ': {
        requireScopes(caller, 'read', 'repository');
        sendJson(res, 200, repositoryJson(visibleRepository(caller, decode(owner), decode(name))));
        return true;
      }
      case 'GET issues': {
        requireScopes(caller, 'read', 'issue');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        const type = query.get('type');
        const items = repository.items
          .filter((item) => stateMatches(item, query))
          .filter((item) => (type === 'issues' ? item.pull === undefined : type === 'pulls' ? item.pull !== undefined : true))
          .reverse();
        sendList(
          res,
          items.map((item) => issueJson(repository, item)),
          query,
        );
        return true;
      }
      case 'POST issues': {
        requireScopes(caller, 'write', 'issue');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        const body = await readJson(req);
        const item = openItem(repository, caller.user, requiredText(body, 'title'), optionalText(body, 'body'), undefined);
        sendJson(res, 201, issueJson(repository, item));
        return true;
      }
      case 'GET issues/{index}': {
        requireScopes(caller, 'read', 'issue');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        sendJson(res, 200, issueJson(repository, findItem(repository, index ?? '')));
        return true;
      }
      case 'GET issues/{index}/comments': {
        requireScopes(caller, 'read', 'issue');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        const item = findItem(repository, index ?? '');
        // Oldest first, and not paged unless asked, as Forgejo's issue comments list.
        const listed = item.comments.map((comment) => commentJson(repository, item, comment));
        if (query.has('page') || query.has('limit')) sendList(res, listed, query);
        else sendJson(res, 200, listed, { 'x-total-count': String(listed.length) });
        return true;
      }
      case 'POST issues/{index}/comments': {
        requireScopes(caller, 'write', 'issue');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        const item = findItem(repository, index ?? '');
        const body = await readJson(req);
        const comment: Comment = { id: nextId++, author: caller.user, body: requiredText(body, 'body'), createdAt: timestamp() };
        item.comments.push(comment);
        item.updatedAt = comment.createdAt;
        sendJson(res, 201, commentJson(repository, item, comment));
        return true;
      }
      case 'GET pulls': {
        requireScopes(caller, 'read', 'repository');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        const listed = repository.items
          .filter((item) => stateMatches(item, query))
          .reverse()
          .flatMap((item) => (item.pull === undefined ? [] : [pullJson(repository, item, item.pull)]));
        sendList(res, listed, query);
        return true;
      }
      case 'GET pulls/{index}': {
        requireScopes(caller, 'read', 'repository');
        const repository = visibleRepository(caller, decode(owner), decode(name));
        const item = findItem(repository, index ?? '');
        if (item.pull === undefined) throw new ApiError(404, "The target couldn't be found.");
        sendJson(res, 200, pullJson(repository, item, item.pull));
        return true;
      }
      default:
        return false;
    }
  }

  return {
    async handle(req, res, caller, url) {
      try {
        return await route(req, res, caller, url);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        sendJson(res, error.status, { errors: null, message: error.message, url: `${options.baseUrl()}/api/swagger` });
        return true;
      }
    },
  };
}
