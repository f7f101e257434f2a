/**
 * The least a stdio-to-HTTP bridge can do: one child (argv after `--`),
 * initialized once here, and every POSTed request written to its stdin
 * under a fresh id, its answer sent back as one SSE event under the
 * client's id. No sessions, no auth, no SDK transport: the bridging floor.
 */
import { spawn } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import { readBody, sendSse, serveForHarness } from './common.js';

const SESSION_ID = 'bare-bridge-session';
const [command, ...args] = process.argv.slice(process.argv.indexOf('--') + 1) as [string, ...string[]];
const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] });
child.once('exit', () => process.exit(1));

interface Waiting {
  readonly clientId: unknown;
  readonly res: ServerResponse;
}
const waiting = new Map<number, Waiting>();
let nextId = 1;
let initializeResult: unknown;
let pending: Buffer[] = [];

child.stdout.on('data', (chunk: Buffer) => {
  let start = 0;
  for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
    pending.push(chunk.subarray(start, nl));
    start = nl + 1;
    const line = Buffer.concat(pending).toString('utf8');
    pending = [];
    const message = JSON.parse(line) as { id?: number; result?: unknown };
    if (message.id === 0) {
      initializeResult = message.result;
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
      continue;
    }
    const entry = message.id === undefined ? undefined : waiting.get(message.id);
    if (entry === undefined) continue;
    waiting.delete(message.id as number);
    sendSse(entry.res, SESSION_ID, { ...message, id: entry.clientId });
  }
  if (start < chunk.length) pending.push(chunk.subarray(start));
});
child.stdin.write(
  JSON.stringify({
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bare-bridge', version: '1.0.0' } },
  }) + '\n',
);

const server = createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
    return;
  }
  void readBody(req).then((body) => {
    const message = JSON.parse(body) as { id?: unknown; method?: string };
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    if (message.method === 'initialize') {
      sendSse(res, SESSION_ID, { result: initializeResult, jsonrpc: '2.0', id: message.id });
      return;
    }
    const id = nextId++;
    waiting.set(id, { clientId: message.id, res });
    child.stdin.write(JSON.stringify({ ...message, id }) + '\n');
  });
});
server.keepAliveTimeout = 60_000;
serveForHarness(server);
