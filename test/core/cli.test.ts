/**
 * The executable: configuration errors name their variable, the demo comes
 * up with its whole sign-in surface, health and readiness answer, and
 * SIGTERM stops it cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { eventually } from '../support/broker.js';
import { portForProcess } from '../support/processes.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

async function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stderr };
}

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

test('the demo serves health, readiness, the OAuth metadata and a 401 challenge on /mcp; SIGTERM exits 0', async () => {
  const port = await portForProcess();
  const base = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [CLI], { env: { PATH: process.env.PATH ?? '', BROKER_LISTEN: `127.0.0.1:${port}`, BROKER_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    await eventually(() => stderr.includes('demo is running'), 'demo started', 20_000);
    assert.match(stderr, new RegExp(`${base}/mcp`));
    assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const resource = (await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json()) as { resource: string; authorization_servers: string[] };
    assert.equal(resource.resource, `${base}/mcp`);
    const metadata = (await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json()) as { issuer: string; code_challenge_methods_supported: string[] };
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
