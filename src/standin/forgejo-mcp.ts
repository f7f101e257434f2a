#!/usr/bin/env node
/**
 * Stand-in for the Go `forgejo-mcp`, honouring its contract (PRODUCT.md):
 *
 *   forgejo-mcp --transport stdio [--url URL] [--token TOKEN] [--debug] [--test-tools]
 *   forgejo-mcp --transport http [--http-port N] [--host H] [--allowed-hosts a,b] [--allowed-origins o1,o2]
 *               [--allow-operator-token-fallback] [--stateless] [--write-timeout-ms MS]
 *               [--url URL] [--token TOKEN] [--debug] [--test-tools]
 *
 * - `FORGEJO_URL` (or `GITEA_HOST`) names the forge, http or https; `FORGEJO_ACCESS_TOKEN`
 *   (or `GITEA_ACCESS_TOKEN`) is the token. Flags win over the environment. Over stdio the token
 *   is read once at start: a new token means a new process.
 * - At start it calls `GET {FORGEJO_URL}/api/v1/version` and exits 1 if that fails.
 *   Bad configuration exits 1, an unsupported transport (`sse`) or a bad flag exits 2.
 * - stdout carries only JSON-RPC (over stdio); every log line goes to stderr.
 * - Over stdio it exits when stdin closes (so children die with a SIGKILLed broker) and on SIGTERM.
 *
 * `--transport http` is the multi-tenant mode of v2.34+ and v3 (forgejo-mcp-http.ts):
 * - MCP Streamable HTTP at `/mcp` on `--http-port` (default 8080; 0 picks a free port), bound to
 *   `--host` (default 127.0.0.1). Once listening it writes
 *   `forgejo-mcp: listening on http://HOST:PORT/mcp` to stderr, with the port it got. Protocol
 *   revisions up to 2025-11-25; a request naming 2026-07-28 in `MCP-Protocol-Version` is a 400.
 * - Host must be a loopback name (localhost, 127.0.0.1, [::1], any port) or one `--allowed-hosts`
 *   lists (`name` for any port, `name:port` for one); a request with an Origin must have one
 *   `--allowed-origins` lists. Otherwise 403, on every path.
 * - Every `/mcp` request (POST, GET, DELETE) carries the caller's Forgejo token,
 *   `Authorization: Bearer <t>` or `token <t>`, scheme case-insensitive. A bare token, another
 *   scheme or an empty token is a 401 (`WWW-Authenticate: Bearer`, JSON body); so is a request
 *   without the header, unless it was started with `--allow-operator-token-fallback` and a token
 *   of its own: then that request acts as the token's owner. (A token of its own without the
 *   flag serves nothing.)
 * - Each request's tools use that request's token, read afresh per call: the next request of the
 *   same session may carry another token and is served with it.
 * - Forgejo answering 401 to a tool's call (the token was revoked) is rendered as the HTTP request
 *   being answered 401, `WWW-Authenticate: Bearer error="invalid_token"`, instead of its result:
 *   the stand-in's rendering of "the upstream answering 401 for a user". Over stdio the same
 *   call is an error result.
 * - Sessions: `Mcp-Session-Id` is issued at initialize, one MCP server per session (runtime-added
 *   tools and subscriptions are the session's); DELETE ends it; an unknown id is a 404. With
 *   `--stateless` there are no session ids, each POST is served by a fresh server, and GET and
 *   DELETE are 405.
 * - The real server's HTTP limits: any response, an SSE stream included, is cut (the connection
 *   destroyed) `--write-timeout-ms` (default 30000) after its request arrived; headers within
 *   10 s and up to 64 KiB; a request within 30 s; idle keep-alive 120 s. A POST's response
 *   starts with its first message (no SSE keep-alive comments): a call silent until the deadline
 *   gets no response at all, one that sent progress first sees its stream end.
 * - `GET /stats` (no Authorization; Host and Origin checks apply) answers JSON:
 *   `{"getStreams": n, "refusedMissingAuthorization": n, "refusedMalformedAuthorization": n,
 *   "requests": n, "sessions": n, "tokensSeen": ["<first 12 hex chars of sha256(token)>", ...]}`:
 *   GET requests to `/mcp` being answered now (the open SSE streams), `/mcp`
 *   requests refused for a missing or a malformed Authorization header, `/mcp` requests received
 *   (refused ones included), sessions open now, and each distinct token a well-formed header
 *   carried, in the order first seen.
 * - It never reads stdin, and exits 0 on SIGTERM or SIGINT, closing every session and the server.
 *
 * Tools, named and shaped like the real forgejo-mcp's (codeberg.org/goern/forgejo-mcp), over
 * the stand-in Forgejo's REST API with the request's token; a success is the text `{"Result": <Forgejo's JSON>}`
 * as there, a Forgejo error an error result:
 *   get_my_user_info                                   GET  /api/v1/user
 *   list_my_repos {page, limit}                        GET  /api/v1/user/repos (both required, as there)
 *   list_repo_issues {owner, repo, state?, type?, milestones?, labels?, page?, limit?}
 *                                                      GET  /api/v1/repos/{owner}/{repo}/issues (pull requests
 *                                                           included: like the real one it never sends `type`)
 *   get_issue_by_index {owner, repo, index}            GET  /api/v1/repos/{owner}/{repo}/issues/{index}
 *   create_issue {owner, repo, title, body?}           POST /api/v1/repos/{owner}/{repo}/issues
 *   list_issue_comments {owner, repo, index, page?, limit?}
 *                                                      GET  /api/v1/repos/{owner}/{repo}/issues/{index}/comments
 *   create_issue_comment {owner, repo, index, body}    POST /api/v1/repos/{owner}/{repo}/issues/{index}/comments
 *   list_repo_pull_requests {owner, repo, state?, sort?, milestone?, labels?, page?, limit?}
 *                                                      GET  /api/v1/repos/{owner}/{repo}/pulls
 *   get_pull_request_by_index {owner, repo, index}     GET  /api/v1/repos/{owner}/{repo}/pulls/{index}
 * and one of the stand-in's own, which tests and the package check call through the broker:
 *   get_me                  `{login, id}` of the token's user, via `GET /api/v1/user`
 *
 * With `--test-tools` (tests pass it; the demo does not) it also has tools for the broker's tests:
 *   token_fingerprint       first 12 hex chars of sha256(token)
 *   echo {text}             returns text
 *   sleep {ms}              waits; `notifications/progress` every 50 ms if asked; "slept"
 *   big {bytes}             one text content of exactly `bytes` bytes
 *   crash                   exits with code 3 mid-request, no response
 *   hang                    never responds
 *   ask {message?}          `elicitation/create` (form, one string field `answer`); returns the ElicitResult
 *   ask_both                an elicitation and a sampling request at once; returns both answers
 *   in_region {region, query}  region carries `x-mcp-header: Region` in its schema
 *   sample {prompt?}        `sampling/createMessage`; returns the model's text
 *   roots                   `roots/list` on the client; returns the result
 *   log {level, message}    a `notifications/message`, then "logged"
 *   add_tool {name?}        registers a tool at runtime (`notifications/tools/list_changed`)
 *   touch {uri}             `notifications/resources/updated` for uri if subscribed
 *   pid                     process.pid
 * Fault injection, for the broker's fault tests (the real forgejo-mcp does neither):
 *   garbage {lines}         writes `lines` lines that are not JSON to stdout, then returns "wrote"
 *   spawn_grandchild        starts a process of its own (in its process group) that runs until
 *                           killed; returns that process's pid
 * and, also only with `--test-tools`, the resources `forgejo://version` (the version JSON;
 * subscribable) and the template `forgejo://echo/{text}`, and the prompt `greet {name}`.
 * Capability: logging.
 */
import { spawn } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { McpServer, ResourceTemplate, type CallToolResult, type ServerContext } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import * as z from 'zod';
import { httpCredentials, serveHttp, tokenFingerprint, type HttpStandin, type RequestCredentials } from './forgejo-mcp-http.js';

const PROGRESS_INTERVAL_MS = 50;
const VERSION_CHECK_TIMEOUT_MS = 10_000;
const VERSION_RESOURCE_URI = 'forgejo://version';

const DEFAULT_HTTP_PORT = 8080;
const DEFAULT_WRITE_TIMEOUT_MS = 30_000;

interface ChildConfig {
  readonly forgejoUrl: string;
  /** The server's own token; '' when it has none. */
  readonly token: string;
  readonly debug: boolean;
  /** The tools only the broker's tests use (`--test-tools`). */
  readonly testTools: boolean;
  /** `--transport http`'s settings; undefined for stdio. */
  readonly http: HttpConfig | undefined;
}

interface HttpConfig {
  readonly host: string;
  readonly port: number;
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
  readonly allowOperatorTokenFallback: boolean;
  readonly stateless: boolean;
  readonly writeTimeoutMs: number;
}

function logLine(message: string): void {
  process.stderr.write(`forgejo-mcp: ${message}\n`);
}

function fail(message: string, exitCode: number): never {
  logLine(message);
  process.exit(exitCode);
}

function readConfig(): ChildConfig {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags();
  } catch (error) {
    fail(`bad arguments: ${(error as Error).message}`, 2);
  }
  const { transport, url, token, debug, 'test-tools': testTools } = parsed.values;
  if (transport !== 'stdio' && transport !== 'http') fail(`unsupported transport "${transport}": this stand-in speaks stdio and http`, 2);

  const rawUrl = url ?? process.env.FORGEJO_URL ?? process.env.GITEA_HOST;
  if (!rawUrl) fail('FORGEJO_URL is required', 1);
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(rawUrl);
  } catch {
    fail(`FORGEJO_URL is not a URL: ${rawUrl}`, 1);
  }
  if (parsedUrl.protocol !== 'http:' && parsedUrl.protocol !== 'https:') {
    fail(`FORGEJO_URL must be http or https: ${rawUrl}`, 1);
  }
  return {
    forgejoUrl: parsedUrl.href.replace(/\/+$/, ''),
    token: token ?? process.env.FORGEJO_ACCESS_TOKEN ?? process.env.GITEA_ACCESS_TOKEN ?? '',
    debug,
    testTools,
    http: transport === 'http' ? readHttpConfig(parsed.values) : undefined,
  };
}

function readHttpConfig(values: ReturnType<typeof parseFlags>['values']): HttpConfig {
  const list = (value: string | undefined): string[] =>
    (value ?? '')
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '');
  return {
    host: values.host,
    port: integerFlag('--http-port', values['http-port'], DEFAULT_HTTP_PORT, 0, 65_535),
    allowedHosts: list(values['allowed-hosts']),
    allowedOrigins: list(values['allowed-origins']),
    allowOperatorTokenFallback: values['allow-operator-token-fallback'],
    stateless: values.stateless,
    writeTimeoutMs: integerFlag('--write-timeout-ms', values['write-timeout-ms'], DEFAULT_WRITE_TIMEOUT_MS, 1, 2 ** 31 - 1),
  };
}

function integerFlag(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || parsed < min || parsed > max) fail(`bad arguments: ${name} must be an integer from ${min} to ${max}`, 2);
  return parsed;
}

function parseFlags() {
  return parseArgs({
    options: {
      transport: { type: 'string', default: 'stdio' },
      url: { type: 'string' },
      token: { type: 'string' },
      debug: { type: 'boolean', default: false },
      'test-tools': { type: 'boolean', default: false },
      'http-port': { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'allowed-hosts': { type: 'string' },
      'allowed-origins': { type: 'string' },
      'allow-operator-token-fallback': { type: 'boolean', default: false },
      stateless: { type: 'boolean', default: false },
      'write-timeout-ms': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
}

async function fetchVersion(forgejoUrl: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${forgejoUrl}/api/v1/version`, { signal: AbortSignal.timeout(VERSION_CHECK_TIMEOUT_MS) });
  } catch (error) {
    fail(`cannot reach ${forgejoUrl}/api/v1/version: ${(error as Error).message}`, 1);
  }
  if (!response.ok) fail(`${forgejoUrl}/api/v1/version answered ${response.status}`, 1);
  return response.text();
}

function text(value: string): CallToolResult {
  return { content: [{ type: 'text', text: value }] };
}

function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true };
}

/**
 * One MCP server with every tool; stdio builds one, HTTP one per session (or per POST when
 * stateless). The tools read the token from `credentials` on each call, never ahead.
 */
function buildServer(config: ChildConfig, versionJson: string, credentials: RequestCredentials): McpServer {
  const server = new McpServer({ name: 'forgejo-mcp-standin', version: '0.1.0' }, { capabilities: { logging: {} } });
  const forge: Forge = { url: config.forgejoUrl, credentials };
  registerForgeTools(server, forge);
  if (config.testTools) registerTestTools(server, forge, versionJson);
  return server;
}

/** The forge a tool call talks to, and whose token it uses. */
interface Forge {
  readonly url: string;
  readonly credentials: RequestCredentials;
}

/**
 * A Forgejo API request with the token of the MCP request `ctx` serves. A 401 is reported
 * to the credentials (HTTP mode answers that HTTP request with 401) and returned as it is.
 */
async function forgejoFetch(forge: Forge, ctx: ServerContext, url: URL | string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(url, {
    ...init,
    headers: {
      ...(init.headers as Record<string, string>),
      authorization: `token ${forge.credentials.token(ctx)}`,
      accept: 'application/json',
    },
  });
  if (response.status === 401) forge.credentials.refused(ctx);
  return response;
}

type QueryValue = string | number | undefined;

/**
 * One Forgejo API call as the token's user, as the real forgejo-mcp's SDK client makes it.
 * A Forgejo error is thrown with `what` in front ("create issue err: 404 …", the real
 * tools' wording), and the SDK turns it into an error result.
 */
async function callForgejo(
  forge: Forge,
  ctx: ServerContext,
  what: string,
  request: { method: 'GET' | 'POST'; path: string; query?: Record<string, QueryValue>; body?: Record<string, unknown> },
): Promise<unknown> {
  const url = new URL(`${forge.url}/api/v1${request.path}`);
  for (const [name, value] of Object.entries(request.query ?? {})) {
    if (value !== undefined && value !== '') url.searchParams.set(name, String(value));
  }
  const response = await forgejoFetch(forge, ctx, url, {
    method: request.method,
    headers: request.body === undefined ? {} : { 'content-type': 'application/json' },
    body: request.body === undefined ? undefined : JSON.stringify(request.body),
  });
  const answer = await response.text();
  if (!response.ok) {
    let message = answer;
    try {
      const parsed = JSON.parse(answer) as { message?: unknown };
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // Not JSON: the body as it came.
    }
    throw new Error(`${what} err: ${response.status} ${message}`);
  }
  return JSON.parse(answer) as unknown;
}

/** The real forgejo-mcp's success result: the JSON under "Result", as text. */
function forgeResult(value: unknown): CallToolResult {
  return text(JSON.stringify({ Result: value }));
}

const repoPath = (owner: string, repo: string): string => `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}`;

const OWNER = z.string().describe('Repository owner');
const REPO = z.string().describe('Repository name');
const PAGE = z.number().int().min(1).describe('Page number');
const LIMIT = z.number().int().min(1).describe('Page size');

/** The tools of the real forgejo-mcp the demo shows, and get_me. */
function registerForgeTools(server: McpServer, forge: Forge): void {
  server.registerTool('get_me', { description: 'The Forgejo user this token belongs to, as {login, id}' }, async (ctx) => {
    const response = await forgejoFetch(forge, ctx, `${forge.url}/api/v1/user`);
    if (!response.ok) return toolError(`Forgejo answered ${response.status} to GET /api/v1/user`);
    const user = (await response.json()) as { login: string; id: number };
    return text(JSON.stringify({ login: user.login, id: user.id }));
  });

  server.registerTool('get_my_user_info', { description: 'Get my user info' }, async (ctx) =>
    forgeResult(await callForgejo(forge, ctx, 'get user info', { method: 'GET', path: '/user' })),
  );

  server.registerTool(
    'list_my_repos',
    // Both required, as in the real tool, whose defaults are only advertised.
    { description: 'List my repos', inputSchema: z.object({ page: PAGE.meta({ default: 1 }), limit: LIMIT.meta({ default: 100 }) }) },
    async ({ page, limit }, ctx) =>
      forgeResult(await callForgejo(forge, ctx, 'list my repositories', { method: 'GET', path: '/user/repos', query: { page, limit } })),
  );

  server.registerTool(
    'list_repo_issues',
    {
      description: 'List repo issues',
      inputSchema: z.object({
        owner: OWNER,
        repo: REPO,
        state: z.string().default('open').describe('State (open|closed|all)'),
        type: z.string().optional().describe('Type (issues|pulls)'),
        milestones: z.string().optional().describe('Milestone names/IDs (comma-separated)'),
        labels: z.string().optional().describe('Labels (comma-separated)'),
        page: PAGE.default(1),
        limit: LIMIT.default(20),
      }),
    },
    // `type` is accepted and not sent, as by the real tool: pull requests are listed too.
    async ({ owner, repo, state, milestones, labels, page, limit }, ctx) =>
      forgeResult(
        await callForgejo(forge, ctx, 'get issues list', {
          method: 'GET',
          path: `${repoPath(owner, repo)}/issues`,
          query: { state, milestones, labels, page, limit },
        }),
      ),
  );

  server.registerTool(
    'get_issue_by_index',
    {
      description: 'Get issue by index',
      inputSchema: z.object({ owner: OWNER, repo: REPO, index: z.number().int().describe('Issue index') }),
    },
    async ({ owner, repo, index }, ctx) =>
      forgeResult(await callForgejo(forge, ctx, 'get issue', { method: 'GET', path: `${repoPath(owner, repo)}/issues/${index}` })),
  );

  server.registerTool(
    'create_issue',
    {
      description: 'Create issue',
      inputSchema: z.object({
        owner: OWNER,
        repo: REPO,
        title: z.string().describe('Title'),
        body: z.string().optional().describe('Body'),
      }),
    },
    async ({ owner, repo, title, body }, ctx) =>
      forgeResult(
        await callForgejo(forge, ctx, 'create issue', {
          method: 'POST',
          path: `${repoPath(owner, repo)}/issues`,
          body: { title, body: body ?? '' },
        }),
      ),
  );

  server.registerTool(
    'list_issue_comments',
    {
      description: 'List issue/PR comments',
      inputSchema: z.object({
        owner: OWNER,
        repo: REPO,
        index: z.number().int().describe('Issue/PR index'),
        page: PAGE.default(1),
        limit: LIMIT.default(20),
      }),
    },
    async ({ owner, repo, index, page, limit }, ctx) =>
      forgeResult(
        await callForgejo(forge, ctx, 'list issue comments', {
          method: 'GET',
          path: `${repoPath(owner, repo)}/issues/${index}/comments`,
          query: { page, limit },
        }),
      ),
  );

  server.registerTool(
    'create_issue_comment',
    {
      description: 'Create issue comment',
      inputSchema: z.object({
        owner: OWNER,
        repo: REPO,
        index: z.number().int().describe('Issue/PR index'),
        body: z.string().describe('Body'),
      }),
    },
    async ({ owner, repo, index, body }, ctx) =>
      forgeResult(
        await callForgejo(forge, ctx, 'create issue comment', {
          method: 'POST',
          path: `${repoPath(owner, repo)}/issues/${index}/comments`,
          body: { body },
        }),
      ),
  );

  server.registerTool(
    'list_repo_pull_requests',
    {
      description: 'List repo pull requests',
      inputSchema: z.object({
        owner: OWNER,
        repo: REPO,
        state: z.string().default('open').describe('State (open|closed|all)'),
        sort: z.string().optional().describe('Sort (oldest|recentupdate|leastupdate|mostcomment)'),
        milestone: z.string().optional().describe('Milestone ID'),
        labels: z.string().optional().describe('Labels (comma-separated)'),
        page: PAGE.default(1),
        limit: LIMIT.default(20),
      }),
    },
    // milestone and labels are accepted and not sent, as by the real tool.
    async ({ owner, repo, state, sort, page, limit }, ctx) =>
      forgeResult(
        await callForgejo(forge, ctx, 'get pull request list', {
          method: 'GET',
          path: `${repoPath(owner, repo)}/pulls`,
          query: { state, sort, page, limit },
        }),
      ),
  );

  server.registerTool(
    'get_pull_request_by_index',
    {
      description: 'Get pull request by index',
      inputSchema: z.object({ owner: OWNER, repo: REPO, index: z.number().int().describe('Pull request index') }),
    },
    async ({ owner, repo, index }, ctx) =>
      forgeResult(await callForgejo(forge, ctx, 'get pull request', { method: 'GET', path: `${repoPath(owner, repo)}/pulls/${index}` })),
  );
}

/** The tools, resources and prompt only the broker's tests use. */
function registerTestTools(server: McpServer, forge: Forge, versionJson: string): void {
  const subscribedUris = new Set<string>();
  let addedToolCount = 0;

  server.registerTool('token_fingerprint', { description: 'First 12 hex chars of sha256(token)' }, (ctx) =>
    text(tokenFingerprint(forge.credentials.token(ctx))),
  );

  server.registerTool('echo', { description: 'Returns its text', inputSchema: z.object({ text: z.string() }) }, ({ text: value }) =>
    text(value),
  );

  server.registerTool(
    'sleep',
    {
      description: 'Waits ms milliseconds, reporting progress every 50 ms when given a progressToken',
      inputSchema: z.object({ ms: z.number().int().min(0).max(600_000) }),
    },
    async ({ ms }, ctx) => {
      const progressToken = ctx.mcpReq._meta?.progressToken;
      const deadline = Date.now() + ms;
      let ticks = 0;
      while (Date.now() < deadline && !ctx.mcpReq.signal.aborted) {
        await delay(Math.min(PROGRESS_INTERVAL_MS, deadline - Date.now()));
        ticks += 1;
        if (progressToken !== undefined) {
          await ctx.mcpReq.notify({
            method: 'notifications/progress',
            params: { progressToken, progress: ticks, total: Math.ceil(ms / PROGRESS_INTERVAL_MS) },
          });
        }
      }
      return text('slept');
    },
  );

  server.registerTool(
    'big',
    {
      description: 'One text content of exactly `bytes` bytes',
      inputSchema: z.object({
        bytes: z
          .number()
          .int()
          .min(0)
          .max(64 * 1024 * 1024),
      }),
    },
    ({ bytes }) => text('x'.repeat(bytes)),
  );

  server.registerTool('crash', { description: 'Exits with code 3 mid-request' }, () => {
    logLine('crash tool called: exiting with code 3');
    process.exit(3);
  });

  server.registerTool('hang', { description: 'Never responds' }, () => new Promise<CallToolResult>(() => {}));

  server.registerTool(
    'ask',
    { description: 'Asks the client for one string (form elicitation)', inputSchema: z.object({ message: z.string().optional() }) },
    async ({ message }, ctx) => {
      const answer = await ctx.mcpReq.elicitInput({
        mode: 'form',
        message: message ?? 'What is your answer?',
        requestedSchema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
      });
      return text(JSON.stringify(answer));
    },
  );

  server.registerTool('ask_both', { description: 'Asks the client for an answer and a sample at the same time' }, async (ctx) => {
    const [answer, sampled] = await Promise.all([
      ctx.mcpReq.elicitInput({
        mode: 'form',
        message: 'What is your answer?',
        requestedSchema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
      }),
      ctx.mcpReq.requestSampling({ messages: [{ role: 'user', content: { type: 'text', text: 'Say hello.' } }], maxTokens: 50 }),
    ]);
    return text(JSON.stringify({ answer, sampled }));
  });

  server.registerTool(
    'in_region',
    {
      description: 'Echoes a region; the region is mirrored into the Mcp-Param-Region header (x-mcp-header)',
      inputSchema: z.object({ region: z.string().meta({ 'x-mcp-header': 'Region' }), query: z.string() }),
    },
    ({ region, query }) => text(`${query} in ${region}`),
  );

  server.registerTool(
    'sample',
    { description: "Asks the client's model; returns its text", inputSchema: z.object({ prompt: z.string().optional() }) },
    async ({ prompt }, ctx) => {
      const result = await ctx.mcpReq.requestSampling({
        messages: [{ role: 'user', content: { type: 'text', text: prompt ?? 'Say hello.' } }],
        maxTokens: 100,
      });
      const contents = Array.isArray(result.content) ? result.content : [result.content];
      return text(contents.map((block) => (block.type === 'text' ? block.text : '')).join(''));
    },
  );

  server.registerTool('roots', { description: "The client's roots/list result" }, async (ctx) => {
    const result = await ctx.mcpReq.send({ method: 'roots/list' });
    return text(JSON.stringify(result));
  });

  server.registerTool(
    'log',
    {
      description: 'Sends a notifications/message log notification',
      inputSchema: z.object({
        level: z.enum(['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency']),
        message: z.string(),
      }),
    },
    async ({ level, message }, ctx) => {
      await ctx.mcpReq.log(level, message, 'forgejo-mcp');
      return text('logged');
    },
  );

  server.registerTool(
    'add_tool',
    { description: 'Registers a new tool at runtime', inputSchema: z.object({ name: z.string().optional() }) },
    ({ name }) => {
      addedToolCount += 1;
      const toolName = name ?? `added_${addedToolCount}`;
      server.registerTool(toolName, { description: 'Added at runtime by add_tool' }, () => text(toolName));
      return text(toolName);
    },
  );

  server.registerTool(
    'touch',
    { description: 'Sends notifications/resources/updated for uri if subscribed', inputSchema: z.object({ uri: z.string() }) },
    async ({ uri }) => {
      if (!subscribedUris.has(uri)) return text('not subscribed');
      await server.server.sendResourceUpdated({ uri });
      return text('notified');
    },
  );

  server.registerTool('pid', { description: 'The process id of this child' }, () => text(String(process.pid)));

  server.registerTool(
    'garbage',
    {
      description: 'Fault injection: writes lines that are not JSON to stdout',
      inputSchema: z.object({ lines: z.number().int().min(1).max(100_000) }),
    },
    ({ lines }) => {
      // Written before the answer on the same pipe, so the broker has read them all when the answer arrives.
      process.stdout.write('this is not JSON-RPC\n'.repeat(lines));
      return text('wrote');
    },
  );

  server.registerTool(
    'spawn_grandchild',
    { description: 'Fault injection: starts a process that runs until killed; returns its pid' },
    () => {
      // No stdio: it must not hold the child's pipes, and it ignores stdin closing.
      const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
      grandchild.unref();
      return text(String(grandchild.pid));
    },
  );

  server.registerResource(
    'version',
    VERSION_RESOURCE_URI,
    { description: 'The Forgejo version seen at start', mimeType: 'application/json' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'application/json', text: versionJson }] }),
  );

  server.registerResource(
    'echo',
    new ResourceTemplate('forgejo://echo/{text}', { list: undefined }),
    { description: 'Echoes the URI variable', mimeType: 'text/plain' },
    (uri, variables) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: String(variables.text) }] }),
  );

  server.registerPrompt('greet', { description: 'A greeting for someone', argsSchema: z.object({ name: z.string() }) }, ({ name }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Hello, ${name}!` } }],
  }));

  server.server.registerCapabilities({ resources: { subscribe: true } });
  server.server.setRequestHandler('resources/subscribe', (request) => {
    subscribedUris.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', (request) => {
    subscribedUris.delete(request.params.uri);
    return {};
  });
}

async function main(): Promise<void> {
  const config = readConfig();
  const versionJson = await fetchVersion(config.forgejoUrl);
  if (config.debug) logLine(`serving ${config.forgejoUrl} as pid ${process.pid}${config.testTools ? ' with the test tools' : ''}`);
  if (config.http === undefined) await serveStdio(config, versionJson);
  else await serveHttpMode(config, config.http, versionJson);
}

async function serveStdio(config: ChildConfig, versionJson: string): Promise<void> {
  const server = buildServer(config, versionJson, { token: () => config.token, refused: () => {} });
  // stdin EOF closes the transport; a child never outlives the pipe to its parent.
  server.server.onclose = () => process.exit(0);
  process.on('SIGTERM', () => {
    void server.close().finally(() => process.exit(0));
  });
  await server.connect(new StdioServerTransport());
  logLine(`ready (Forgejo ${config.forgejoUrl})`);
}

/** Never reads stdin: it runs until a signal, however its parent set up its stdio. */
async function serveHttpMode(config: ChildConfig, http: HttpConfig, versionJson: string): Promise<void> {
  let standin: HttpStandin;
  try {
    standin = await serveHttp({
      ...http,
      operatorToken: http.allowOperatorTokenFallback && config.token !== '' ? config.token : undefined,
      debug: config.debug,
      newServer: () => buildServer(config, versionJson, httpCredentials),
      log: logLine,
    });
  } catch (error) {
    fail(`cannot listen on ${http.host}:${http.port}: ${(error as Error).message}`, 1);
  }
  const stop = (): void => {
    void standin.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  logLine(`listening on ${standin.url}`);
}

main().catch((error: unknown) => fail(`fatal: ${(error as Error).stack ?? String(error)}`, 1));
