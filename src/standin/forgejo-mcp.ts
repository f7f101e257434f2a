#!/usr/bin/env node
/**
 * Stand-in for the Go `forgejo-mcp`, honouring its contract (PRODUCT.md):
 *
 *   forgejo-mcp --transport stdio [--url URL] [--token TOKEN] [--debug]
 *
 * - `FORGEJO_URL` (or `GITEA_HOST`) names the forge, http or https; `FORGEJO_ACCESS_TOKEN`
 *   (or `GITEA_ACCESS_TOKEN`) is the token. Flags win over the environment. The token is
 *   read once at start: a new token means a new process.
 * - At start it calls `GET {FORGEJO_URL}/api/v1/version` and exits 1 if that fails.
 *   Bad configuration exits 1, an unsupported transport exits 2.
 * - stdout carries only JSON-RPC; every log line goes to stderr.
 * - It exits when stdin closes (so children die with a SIGKILLed broker) and on SIGTERM.
 *
 * Tools (all small, for tests and the demo):
 *   get_me                  `{login, id}` of the token's user, via `GET /api/v1/user`
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
 * Resources: `forgejo://version` (the version JSON; subscribable) and the template
 * `forgejo://echo/{text}`. Prompt: `greet {name}`. Capability: logging.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { McpServer, ResourceTemplate, type CallToolResult } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import * as z from 'zod';

const PROGRESS_INTERVAL_MS = 50;
const VERSION_CHECK_TIMEOUT_MS = 10_000;
const VERSION_RESOURCE_URI = 'forgejo://version';

interface ChildConfig {
  readonly forgejoUrl: string;
  readonly token: string;
  readonly debug: boolean;
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
  const { transport, url, token, debug } = parsed.values;
  if (transport !== 'stdio') fail(`unsupported transport "${transport}": this stand-in speaks only stdio`, 2);

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
  };
}

function parseFlags() {
  return parseArgs({
    options: {
      transport: { type: 'string', default: 'stdio' },
      url: { type: 'string' },
      token: { type: 'string' },
      debug: { type: 'boolean', default: false },
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

function buildServer(config: ChildConfig, versionJson: string): McpServer {
  const server = new McpServer(
    { name: 'forgejo-mcp-standin', version: '0.1.0' },
    { capabilities: { logging: {} } },
  );
  const subscribedUris = new Set<string>();
  let addedToolCount = 0;

  server.registerTool('get_me', { description: 'The Forgejo user this token belongs to, as {login, id}' }, async () => {
    const response = await fetch(`${config.forgejoUrl}/api/v1/user`, {
      headers: { authorization: `token ${config.token}`, accept: 'application/json' },
    });
    if (!response.ok) return toolError(`Forgejo answered ${response.status} to GET /api/v1/user`);
    const user = (await response.json()) as { login: string; id: number };
    return text(JSON.stringify({ login: user.login, id: user.id }));
  });

  server.registerTool('token_fingerprint', { description: 'First 12 hex chars of sha256(token)' }, () =>
    text(createHash('sha256').update(config.token).digest('hex').slice(0, 12)),
  );

  server.registerTool(
    'echo',
    { description: 'Returns its text', inputSchema: z.object({ text: z.string() }) },
    ({ text: value }) => text(value),
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
      inputSchema: z.object({ bytes: z.number().int().min(0).max(64 * 1024 * 1024) }),
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

  server.registerTool(
    'ask_both',
    { description: 'Asks the client for an answer and a sample at the same time' },
    async (ctx) => {
      const [answer, sampled] = await Promise.all([
        ctx.mcpReq.elicitInput({
          mode: 'form',
          message: 'What is your answer?',
          requestedSchema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
        }),
        ctx.mcpReq.requestSampling({ messages: [{ role: 'user', content: { type: 'text', text: 'Say hello.' } }], maxTokens: 50 }),
      ]);
      return text(JSON.stringify({ answer, sampled }));
    },
  );

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
    { description: 'Fault injection: writes lines that are not JSON to stdout', inputSchema: z.object({ lines: z.number().int().min(1).max(100_000) }) },
    ({ lines }) => {
      // Written before the answer on the same pipe, so the broker has read them all when the answer arrives.
      process.stdout.write('this is not JSON-RPC\n'.repeat(lines));
      return text('wrote');
    },
  );

  server.registerTool('spawn_grandchild', { description: 'Fault injection: starts a process that runs until killed; returns its pid' }, () => {
    // No stdio: it must not hold the child's pipes, and it ignores stdin closing.
    const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
    grandchild.unref();
    return text(String(grandchild.pid));
  });

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

  server.registerPrompt(
    'greet',
    { description: 'A greeting for someone', argsSchema: z.object({ name: z.string() }) },
    ({ name }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `Hello, ${name}!` } }] }),
  );

  server.server.registerCapabilities({ resources: { subscribe: true } });
  server.server.setRequestHandler('resources/subscribe', (request) => {
    subscribedUris.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', (request) => {
    subscribedUris.delete(request.params.uri);
    return {};
  });

  if (config.debug) logLine(`serving ${config.forgejoUrl} as pid ${process.pid}`);
  return server;
}

async function main(): Promise<void> {
  const config = readConfig();
  const versionJson = await fetchVersion(config.forgejoUrl);
  const server = buildServer(config, versionJson);
  // stdin EOF closes the transport; a child never outlives the pipe to its parent.
  server.server.onclose = () => process.exit(0);
  process.on('SIGTERM', () => {
    void server.close().finally(() => process.exit(0));
  });
  await server.connect(new StdioServerTransport());
  logLine(`ready (Forgejo ${config.forgejoUrl})`);
}

main().catch((error: unknown) => fail(`fatal: ${(error as Error).stack ?? String(error)}`, 1));
