#!/usr/bin/env node
/**
 * The conformance baselines: the fixture's server definition served directly
 * by the SDK's own HTTP server code, on 127.0.0.1, with no broker in between.
 *
 *   node dist/test/conformance/baseline-server.js [--port N] [--mode dual|legacy] [--exit-on-stdin-close]
 *
 * - Legacy era (2025-11-25 and older): one stateful
 *   `NodeStreamableHTTPServerTransport` and one server instance per session,
 *   with an in-memory event store (SSE priming, `Last-Event-ID` resumption).
 * - Modern era (2026-07-28), `--mode dual` only (the default): the SDK's
 *   modern entry `createMcpHandler` (strict, `legacy: 'reject'`), chosen per
 *   request with the SDK's own `isLegacyRequest` predicate, the composition
 *   the SDK documents for keeping a sessionful legacy wiring next to it.
 * - Host and Origin are checked against localhost (DNS-rebinding protection),
 *   as the SDK's guards do.
 *
 * Prints one JSON line `{"url":"http://127.0.0.1:PORT/mcp"}` on stdout when
 * listening; stops on SIGTERM/SIGINT.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import {
  localhostHostValidation,
  localhostOriginValidation,
  NodeStreamableHTTPServerTransport,
  toWebRequest,
} from '@modelcontextprotocol/node';
import { createMcpHandler, isLegacyRequest, type EventStore, type JSONRPCMessage, type McpHttpHandler } from '@modelcontextprotocol/server';
import { createFixtureServer, createFixtureState, type FixtureState } from './fixture-server.js';
import { exitIfLoadedAsTestFile } from './not-a-test.js';

exitIfLoadedAsTestFile();

const MCP_PATH = '/mcp';
const RETRY_INTERVAL_MS = 500;

/** An unbounded in-memory event store: fine for a test server that lives for one suite run. */
class MemoryEventStore implements EventStore {
  private readonly events = new Map<string, { streamId: string; message: JSONRPCMessage }>();
  private readonly order: string[] = [];

  storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const eventId = `${streamId}_${String(this.order.length).padStart(8, '0')}`;
    this.events.set(eventId, { streamId, message });
    this.order.push(eventId);
    return Promise.resolve(eventId);
  }

  getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return Promise.resolve(this.events.get(eventId)?.streamId);
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const last = this.events.get(lastEventId);
    if (last === undefined) throw new Error(`unknown event id ${lastEventId}`);
    const start = this.order.indexOf(lastEventId) + 1;
    for (const eventId of this.order.slice(start)) {
      const event = this.events.get(eventId);
      if (event !== undefined && event.streamId === last.streamId) await send(eventId, event.message);
    }
    return last.streamId;
  }
}

interface LegacySession {
  readonly transport: NodeStreamableHTTPServerTransport;
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
}

function isInitialize(body: unknown): boolean {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  return messages.some(
    (message) => typeof message === 'object' && message !== null && (message as { method?: unknown }).method === 'initialize',
  );
}

/** Writes a web `Response` (JSON or a streamed SSE body) to a Node response. */
async function writeWebResponse(response: Response, res: ServerResponse): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, key) => {
    headers[key] = value;
  });
  res.writeHead(response.status, headers);
  if (response.body === null) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  res.on('close', () => {
    reader.cancel().catch(() => undefined);
  });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    res.write(value);
  }
  res.end();
}

class Baseline {
  private readonly sessions = new Map<string, LegacySession>();
  private readonly modern: McpHttpHandler | undefined;
  private readonly modernState: FixtureState = createFixtureState();
  private readonly requestStateKey = randomBytes(32).toString('hex');
  private readonly checkHost = localhostHostValidation();
  private readonly checkOrigin = localhostOriginValidation();

  constructor(mode: 'dual' | 'legacy') {
    if (mode === 'dual') {
      const handler: McpHttpHandler = createMcpHandler(
        () =>
          createFixtureServer({
            state: this.modernState,
            requestStateKey: this.requestStateKey,
            hooks: { toolsChanged: () => handler.notify.toolsChanged(), promptsChanged: () => handler.notify.promptsChanged() },
          }),
        { legacy: 'reject' },
      );
      this.modern = handler;
    }
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== MCP_PATH) {
      res.writeHead(404).end();
      return;
    }
    if (!this.checkHost(req, res) || !this.checkOrigin(req, res)) return;
    const webRequest = await toWebRequest(req);
    if (this.modern !== undefined && !(await isLegacyRequest(webRequest))) {
      await writeWebResponse(await this.modern.fetch(webRequest), res);
      return;
    }
    let body: unknown;
    if (req.method === 'POST') {
      try {
        body = await webRequest.json();
      } catch {
        jsonRpcError(res, 400, -32700, 'Parse error: invalid JSON');
        return;
      }
    }
    await this.handleLegacy(req, res, body);
  }

  private async handleLegacy(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const sessionHeader = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader;
    if (sessionId !== undefined) {
      const session = this.sessions.get(sessionId);
      if (session === undefined) {
        jsonRpcError(res, 404, -32001, 'Session not found');
        return;
      }
      await session.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== 'POST' || !isInitialize(body)) {
      jsonRpcError(res, 400, -32000, 'Bad Request: no valid session id');
      return;
    }
    const transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new MemoryEventStore(),
      retryInterval: RETRY_INTERVAL_MS,
      onsessioninitialized: (id) => {
        this.sessions.set(id, { transport });
      },
      onsessionclosed: (id) => {
        this.sessions.delete(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) this.sessions.delete(transport.sessionId);
    };
    const server = createFixtureServer({ state: createFixtureState(), requestStateKey: this.requestStateKey });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.sessions.values()].map((session) => session.transport.close()));
    await this.modern?.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      mode: { type: 'string', default: 'dual' },
      // The runner's pipe: when it closes (the runner died), stop rather than linger.
      'exit-on-stdin-close': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const mode = values.mode === 'legacy' ? 'legacy' : 'dual';
  const baseline = new Baseline(mode);
  const server = createServer((req, res) => {
    baseline.handle(req, res).catch((error: unknown) => {
      process.stderr.write(`baseline: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal error');
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(Number(values.port), '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}${MCP_PATH}`, mode })}\n`);
  const stop = (): void => {
    server.closeAllConnections();
    server.close();
    void baseline.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (values['exit-on-stdin-close']) {
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`baseline: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
