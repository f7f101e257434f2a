/**
 * The MCP Inspector's CLI (`@modelcontextprotocol/inspector-cli`, a client
 * nobody on this project wrote, on the SDK's v1 client) against the demo
 * broker, with a bearer token obtained by a real sign-in (consent page,
 * Forgejo stand-in login). It lists the tools and calls them, and sees the
 * forgejo-mcp tools and the signed-in Forgejo user, as it would talking to
 * forgejo-mcp directly.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ClientsBroker, DEMO_USERS, startClientsDemo } from '../support/brokers.js';
import { clientBinary, type Finished, runToEnd, skipUnlessInstalled, text } from '../support/mcp-clients.js';
import { obtainToken } from '../support/oauth.js';

const INSPECTOR = 'mcp-inspector-cli';
/**
 * inspector-cli 1.0.3 looks for its package.json with `existsSync('../package.json')`,
 * relative to the working directory, then imports that path relative to its
 * own module: it works only from a directory whose parent holds a
 * package.json. `clients/` is such a directory (the repository root's).
 */
const INSPECTOR_CWD = new URL('../../../clients/', import.meta.url).pathname;
const RUN_LIMIT_MS = 60_000;

interface ToolList {
  readonly tools: readonly { readonly name: string }[];
}

interface ToolResult {
  readonly content: readonly { readonly type: string; readonly text?: string }[];
  readonly isError?: boolean;
}

function user(login: string): { login: string; password: string; id: number } {
  const found = DEMO_USERS.find((candidate) => candidate.login === login);
  if (found === undefined) throw new Error(`no demo user ${login}`);
  return { login: found.login, password: found.password, id: found.id };
}

/** The CLI's stdout is the JSON result alone (its banner and logs go to stderr). */
function parseOutput<T>(run: Finished): T {
  assert.equal(run.code, 0, `the inspector failed (exit ${run.code}):\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`the inspector printed no JSON:\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
}

describe('MCP Inspector CLI through the broker', { skip: skipUnlessInstalled(INSPECTOR) }, () => {
  let demo: ClientsBroker;
  const bearers = new Map<string, string>();

  /** `mcp-inspector-cli --cli <url> --transport http --header "Authorization: Bearer …" --method …`. */
  function inspector(bearer: string | undefined, ...method: string[]): Promise<Finished> {
    const header = bearer === undefined ? [] : ['--header', `Authorization: Bearer ${bearer}`];
    return runToEnd(clientBinary(INSPECTOR), ['--cli', demo.mcpUrl, '--transport', 'http', ...header, ...method], RUN_LIMIT_MS, {
      cwd: INSPECTOR_CWD,
    });
  }

  before(async () => {
    demo = await startClientsDemo();
    for (const login of ['demo', 'alice']) {
      const { accessToken } = await obtainToken(demo.mcpUrl, user(login), `MCP Inspector (${login})`);
      bearers.set(login, accessToken);
    }
  });

  after(async () => {
    await demo?.close();
  });

  function bearer(login: string): string {
    const value = bearers.get(login);
    assert.ok(value, `no bearer for ${login}`);
    return value;
  }

  it('tools/list shows the forgejo-mcp tools', async () => {
    const listed = parseOutput<ToolList>(await inspector(bearer('demo'), '--method', 'tools/list'));
    const names = listed.tools.map((tool) => tool.name);
    for (const name of ['get_me', 'token_fingerprint', 'echo', 'pid'])
      assert.ok(names.includes(name), `tools/list lacks ${name}: ${names.join(', ')}`);
  });

  it('tools/call get_me names the Forgejo user who signed in, for each of two users', async () => {
    for (const login of ['demo', 'alice']) {
      const result = parseOutput<ToolResult>(await inspector(bearer(login), '--method', 'tools/call', '--tool-name', 'get_me'));
      assert.notEqual(result.isError, true, text(result));
      assert.deepEqual(JSON.parse(text(result)), { login, id: user(login).id });
    }
  });

  it('tools/call passes arguments through (--tool-arg)', async () => {
    const result = parseOutput<ToolResult>(
      await inspector(bearer('alice'), '--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'text=through the broker'),
    );
    assert.equal(text(result), 'through the broker');
  });

  it('without the bearer the inspector is refused (the broker answers 401), and with a made-up one too', async () => {
    for (const bearerToken of [undefined, 'not-a-broker-token']) {
      const run = await inspector(bearerToken, '--method', 'tools/list');
      assert.notEqual(run.code, 0, `the inspector got in without a valid token:\n${run.stdout}`);
      assert.match(run.stderr, /401|Unauthorized|invalid_token/i);
    }
  });
});
