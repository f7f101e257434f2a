/**
 * The executable: configuration and command-line mistakes name their
 * variable or flag and exit 2, first-run checks catch a missing child and an
 * unreachable Forgejo, the demo comes up with its whole sign-in surface,
 * health, readiness and metrics answer, and SIGTERM stops it cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { OPTIONS } from '../../src/config/options.js';
import { standinChildCommand } from '../../src/demo.js';
import { startForgejoStandin } from '../../src/standin/forgejo.js';
import { BROKER_INFO } from '../../src/version.js';
import { childProcesses, eventually, freshDataDirs, isRunning, portForProcess } from '../support/host.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const dataDir = freshDataDirs('broker-cli-');

async function run(
  args: string[],
  env: Record<string, string>,
  command: readonly string[] = [process.execPath, CLI],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [file, ...rest] = command as [string, ...string[]];
  const proc = spawn(file, [...rest, ...args], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** A broker process whose output the test watches while it runs. */
function startCli(args: string[], env: Record<string, string>): { pid: number; output: () => string; stop: () => Promise<number | null> } {
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(proc, 'exit') as Promise<[number | null]>;
  return {
    pid: proc.pid as number,
    output: () => output,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return (await exited)[0];
    },
  };
}

const SERVE_ENV = { FORGEJO_CLIENT_ID: 'broker', FORGEJO_CLIENT_SECRET: 'secret', BROKER_LOG_LEVEL: 'info' };

test('a bad setting stops the start with exit 2 and a message naming the variable', async () => {
  const cases: [Record<string, string>, string][] = [
    [{ BROKER_IDLE_TIMEOUT: 'soon' }, 'BROKER_IDLE_TIMEOUT'],
    [{ FORGEJO_URL: 'https://forge.example', FORGEJO_CLIENT_SECRET: 's' }, 'FORGEJO_CLIENT_ID'],
    [{ FORGEJO_URL: 'ftp://forge.example' }, 'FORGEJO_URL'],
    [{ BROKER_CHILD_COMMAND: 'forgejo-mcp && rm -rf /' }, 'BROKER_CHILD_COMMAND'],
  ];
  for (const [env, variable] of cases) {
    const { code, stderr } = await run([], env);
    assert.equal(code, 2, variable);
    assert.match(stderr, new RegExp(`configuration error: ${variable}: `));
  }
  const unknown = await run(['frobnicate'], {});
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command/);
});

test('command-line mistakes exit 2 with a message naming the flag and the nearest valid one', async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ['--port', '9000'],
      {},
      /^forgejo-mcp-broker: configuration error: --port: unknown option; did you mean --listen\? \(forgejo-mcp-broker --help lists every option\)$/m,
    ],
    [['--lisen=127.0.0.1:9000'], {}, /configuration error: --lisen: unknown option; did you mean --listen\?/],
    [['--scopes', 'read:user'], {}, /configuration error: --scopes: unknown option; did you mean --forgejo-scopes\?/],
    [['--verison'], {}, /configuration error: --verison: unknown option; did you mean --version\?/],
    [['--listen'], {}, /configuration error: --listen: needs a value \(host:port\), as in --listen 127\.0\.0\.1:8080/],
    [['--listen', '--public-url', 'https://mcp.example'], {}, /configuration error: --listen: needs a value/],
    [['demo', 'extra'], {}, /configuration error: command line: unexpected argument "extra" after the command "demo"/],
    [['127.0.0.1:9000'], {}, /configuration error: command line: unknown command "127\.0\.0\.1:9000"/],
    // What `npm start --listen 127.0.0.1:9000` hands the broker: npm keeps --listen as npm_config_listen.
    [
      ['127.0.0.1:9000'],
      { npm_lifecycle_event: 'start', npm_config_listen: 'true' },
      /configuration error: --listen: npm took this flag for itself .*npm start -- --listen /,
    ],
    [
      [],
      { npm_lifecycle_event: 'start', npm_config_public_url: 'https://mcp.example' },
      /configuration error: --public-url: npm took this flag for itself/,
    ],
    [['--verbose', '--port', '1'], {}, /configuration error: --port: unknown option/],
    [[], { BROKER_ENCRYPTION_KEY: 'not-a-key' }, /^forgejo-mcp-broker: configuration error: BROKER_ENCRYPTION_KEY: must be 32 bytes/m],
    [[], { BROKER_METRICS_LISTEN: 'metrics' }, /configuration error: BROKER_METRICS_LISTEN: "metrics" is not host:port/],
  ];
  for (const [args, env, message] of cases) {
    const { code, stderr } = await run(args, env);
    assert.equal(code, 2, args.join(' '));
    assert.match(stderr, message, args.join(' '));
  }
});

test('`npm start --listen x` without `--` is refused with the command to use, through real npm', async () => {
  const { code, stderr } = await run(['start', '--silent', '--listen', '127.0.0.1:9'], {}, ['npm']);
  assert.equal(code, 2);
  assert.match(
    stderr,
    /--listen: npm took this flag for itself and the broker never saw it; put -- before the broker's flags: npm start -- --listen/,
  );
});

test('--version prints the version; --help lists every option of the table with its variable', async () => {
  const version = await run(['--version'], {});
  assert.equal(version.code, 0);
  assert.equal(version.stdout, `forgejo-mcp-broker ${BROKER_INFO.version}\n`);
  const help = await run(['--verbose', '--help'], {});
  assert.equal(help.code, 0);
  for (const option of OPTIONS) assert.match(help.stdout, new RegExp(`^  --${option.name}\\b.*${option.variable}$`, 'm'), option.variable);
  assert.match(help.stdout, /--version/);
  assert.match(help.stdout, /npm start -- /);
});

test('a listen address in use exits 2 naming BROKER_LISTEN', async () => {
  const occupier = createServer();
  occupier.listen(0, '127.0.0.1');
  await once(occupier, 'listening');
  const { port } = occupier.address() as { port: number };
  try {
    const { code, stderr } = await run([], { BROKER_LISTEN: `127.0.0.1:${port}` });
    assert.equal(code, 2);
    assert.match(
      stderr,
      new RegExp(`configuration error: BROKER_LISTEN: 127\\.0\\.0\\.1:${port} is already in use by another process.*\\(EADDRINUSE\\)`),
    );
  } finally {
    occupier.close();
  }
});

test('serve with a child program that is not on PATH exits 2 naming BROKER_CHILD_COMMAND and how to install forgejo-mcp', async () => {
  const cases = [
    {
      BROKER_CHILD_COMMAND: 'forgejo-mcp-not-installed --transport stdio',
      message: /"forgejo-mcp-not-installed" is not an executable in any directory of PATH/,
    },
    { BROKER_CHILD_COMMAND: '/nonexistent/forgejo-mcp --transport stdio', message: /\/nonexistent\/forgejo-mcp is not an executable file/ },
  ];
  for (const { message, ...env } of cases) {
    const { code, stderr } = await run(['serve'], { ...SERVE_ENV, ...env, FORGEJO_URL: 'http://127.0.0.1:9', BROKER_DATA_DIR: dataDir() });
    assert.equal(code, 2);
    assert.match(stderr, /configuration error: BROKER_CHILD_COMMAND: /);
    assert.match(stderr, message);
    assert.match(stderr, /Install forgejo-mcp .* or set BROKER_CHILD_COMMAND to its full path/);
  }
});

test('with Forgejo unreachable /readyz is 503 naming the URL and the system error, then 200 once Forgejo answers', async () => {
  const [port, forgejoPort] = [await portForProcess(), await portForProcess()];
  const forgejoUrl = `http://127.0.0.1:${forgejoPort}`;
  const broker = startCli(['serve'], {
    ...SERVE_ENV,
    FORGEJO_URL: forgejoUrl,
    BROKER_LISTEN: `127.0.0.1:${port}`,
    BROKER_DATA_DIR: dataDir(),
    BROKER_CHILD_COMMAND: standinChildCommand({ testTools: true }),
  });
  let forgejo: Awaited<ReturnType<typeof startForgejoStandin>> | undefined;
  try {
    await eventually(() => broker.output().includes('"event":"forgejo_unreachable"'), 'the unreachable Forgejo logged', 20_000);
    const logged = broker
      .output()
      .split('\n')
      .find((line) => line.includes('"event":"forgejo_unreachable"')) as string;
    assert.match(logged, new RegExp(`${forgejoUrl}/\\.well-known/openid-configuration: connect ECONNREFUSED`));
    const notReady = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(notReady.status, 503);
    const body = (await notReady.json()) as { status: string; reason: string };
    assert.equal(body.status, 'not ready');
    assert.match(
      body.reason,
      new RegExp(`^${forgejoUrl}/\\.well-known/openid-configuration: connect ECONNREFUSED 127\\.0\\.0\\.1:${forgejoPort}$`),
    );

    forgejo = await startForgejoStandin({ users: [], applications: [], port: forgejoPort });
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
      '/readyz 200 once Forgejo answers',
      20_000,
    );
    await eventually(() => broker.output().includes('"event":"forgejo_reachable"'), 'the recovery logged');
  } finally {
    assert.equal(await broker.stop(), 0);
    await forgejo?.close();
  }
});

test('a wildcard listen address without BROKER_PUBLIC_URL is logged as a warning naming it', async () => {
  const port = await portForProcess();
  const broker = startCli([], { BROKER_LISTEN: `0.0.0.0:${port}`, BROKER_LOG_LEVEL: 'warn' });
  try {
    await eventually(() => broker.output().includes('demo is running'), 'demo started', 20_000);
    const warning = JSON.parse(
      broker
        .output()
        .split('\n')
        .find((line) => line.includes('"event":"config_warning"')) ?? '{}',
    ) as { variable?: string; msg?: string };
    assert.equal(warning.variable, 'BROKER_PUBLIC_URL');
    assert.match(
      warning.msg ?? '',
      new RegExp(`wildcard address 0\\.0\\.0\\.0: the OAuth issuer and MCP URL become http://0\\.0\\.0\\.0:${port}`),
    );
  } finally {
    assert.equal(await broker.stop(), 0);
  }
});

test('/metrics is on the public listener, or only on BROKER_METRICS_LISTEN when that is set', async () => {
  const [port, metricsPort] = [await portForProcess(), await portForProcess()];
  const separate = startCli([], {
    BROKER_LISTEN: `127.0.0.1:${port}`,
    BROKER_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
    BROKER_LOG_LEVEL: 'warn',
  });
  try {
    await eventually(() => separate.output().includes('demo is running'), 'demo started', 20_000);
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^forgejo_mcp_broker_sessions /m);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 404);
    const publicMetrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(publicMetrics.status, 404);
    await publicMetrics.body?.cancel();
  } finally {
    assert.equal(await separate.stop(), 0);
  }
  const together = startCli([], { BROKER_LISTEN: `127.0.0.1:${port}`, BROKER_LOG_LEVEL: 'warn' });
  try {
    await eventually(() => together.output().includes('demo is running'), 'demo started', 20_000);
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^forgejo_mcp_broker_sessions /m);
  } finally {
    assert.equal(await together.stop(), 0);
  }
});

test('the demo serves health, readiness, the OAuth metadata and a 401 challenge on /mcp; SIGTERM exits 0', async () => {
  const port = await portForProcess();
  const base = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [CLI], {
    env: { PATH: process.env.PATH ?? '', BROKER_LISTEN: `127.0.0.1:${port}`, BROKER_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    await eventually(() => stderr.includes('demo is running'), 'demo started', 20_000);
    assert.match(stderr, new RegExp(`${base}/mcp`));
    assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const resource = (await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json()) as {
      resource: string;
      authorization_servers: string[];
    };
    assert.equal(resource.resource, `${base}/mcp`);
    const metadata = (await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json()) as {
      issuer: string;
      code_challenge_methods_supported: string[];
    };
    assert.equal(metadata.issuer, base);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    const challenge = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(challenge.status, 401);
    assert.equal(challenge.headers.get('www-authenticate'), `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`);
  } finally {
    const exited = once(proc, 'exit') as Promise<[number | null]>;
    proc.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
  }
});

test('demo --shared-upstream runs one stand-in forgejo-mcp over HTTP, without a token, and stops it on SIGTERM', async () => {
  const port = await portForProcess();
  const demo = startCli(['demo', '--shared-upstream'], { BROKER_LISTEN: `127.0.0.1:${port}`, BROKER_LOG_LEVEL: 'info' });
  let upstream: number[] = [];
  try {
    await eventually(() => demo.output().includes('demo is running'), 'demo started', 20_000);
    upstream = childProcesses(demo.pid, '--transport\0http');
    assert.equal(upstream.length, 1, 'one upstream process');
    const [pid] = upstream as [number];
    assert.doesNotMatch(readFileSync(`/proc/${pid}/environ`, 'utf8'), /FORGEJO_ACCESS_TOKEN|GITEA_ACCESS_TOKEN/);
    assert.doesNotMatch(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /--token|--allow-operator-token-fallback/);
    assert.match(demo.output(), /"event":"upstream_ready"/);
  } finally {
    assert.equal(await demo.stop(), 0);
  }
  for (const pid of upstream) assert.equal(isRunning(pid), false, 'the upstream stopped with the broker');
});
