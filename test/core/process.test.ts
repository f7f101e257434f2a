/**
 * The broker as a process: SIGTERM is a graceful stop that lets a running
 * request finish and leaves no child; SIGKILL leaves no child for long either,
 * because a child's stdin closes with the broker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startBroker } from '../support/brokers.js';
import { eventually, isAlive } from '../support/host.js';
import { text } from '../support/mcp-clients.js';

async function connectedBrokerProcess(): Promise<{
  proc: ChildProcess;
  client: Client;
  transport: StreamableHTTPClientTransport;
  url: string;
}> {
  const { proc, url, bearer } = await startBroker({ wiring: 'process' });
  const client = new Client({ name: 'process-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', url), {
    requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
  });
  await client.connect(transport);
  return { proc, client, transport, url };
}

test('SIGTERM: stop accepting, let the running request finish, stop every child, exit 0', async () => {
  const { proc, client } = await connectedBrokerProcess();
  const childPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  // The child's first progress notification proves the request is running there before SIGTERM.
  let started: (() => void) | undefined;
  const running = client.callTool({ name: 'sleep', arguments: { ms: 700 } }, { onprogress: () => started?.() });
  await new Promise<void>((resolve) => (started = resolve));
  const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  proc.kill('SIGTERM');
  assert.equal(text(await running), 'slept');
  const [code] = await exited;
  assert.equal(code, 0);
  assert.equal(isAlive(childPid), false);
});

test('SIGKILL: the broker cannot clean up, yet its children exit because their stdin closes', async () => {
  const { proc, client } = await connectedBrokerProcess();
  const childPid = Number(text(await client.callTool({ name: 'pid', arguments: {} })));
  assert.equal(isAlive(childPid), true);
  proc.kill('SIGKILL');
  await once(proc, 'exit');
  await eventually(() => !isAlive(childPid), 'orphaned child exits', 10_000);
});

test('GET /metrics: Prometheus text with live sessions, starts, ends and process figures', async () => {
  const { proc, client, transport, url } = await connectedBrokerProcess();
  try {
    await client.callTool({ name: 'echo', arguments: { text: 'x' } });
    const res = await fetch(new URL('/metrics', url));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const body = await res.text();
    assert.match(body, /^forgejo_mcp_broker_sessions 1$/m);
    assert.match(body, /^forgejo_mcp_broker_sessions_started_total\{era="legacy"\} 1$/m);
    assert.match(body, /^forgejo_mcp_broker_http_responses_total\{route="mcp",status="200"\} \d+$/m);
    assert.match(body, /^forgejo_mcp_broker_process_resident_memory_bytes \d+/m);
    await transport.terminateSession();
    await client.close();
    const after = await (await fetch(new URL('/metrics', url))).text();
    assert.match(after, /^forgejo_mcp_broker_sessions 0$/m);
    assert.match(after, /^forgejo_mcp_broker_sessions_ended_total\{era="legacy",reason="client_delete"\} 1$/m);
  } finally {
    proc.kill('SIGTERM');
    await once(proc, 'exit');
  }
});
