/**
 * The SDK's Streamable HTTP server transport alone, as the broker's legacy
 * era uses it (`NodeStreamableHTTPServerTransport`, one per session, SSE
 * answers), answering `initialize` and `echo` itself with no child and no
 * auth: what the transport costs per request, next to bare HTTP's floor.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node';
import { isJSONRPCRequest, type JSONRPCMessage } from '@modelcontextprotocol/server';
import { readBody, serveForHarness } from './common.js';

const sessions = new Map<string, NodeStreamableHTTPServerTransport>();

function answer(transport: NodeStreamableHTTPServerTransport, message: JSONRPCMessage): void {
  if (!isJSONRPCRequest(message)) return;
  const params = message.params as { protocolVersion?: string; arguments?: { text?: string; bytes?: number } } | undefined;
  const result =
    message.method === 'initialize'
      ? {
          protocolVersion: params?.protocolVersion ?? '2025-11-25',
          capabilities: { tools: {} },
          serverInfo: { name: 'sdk-transport', version: '1.0.0' },
        }
      : {
          content: [
            {
              type: 'text',
              text: typeof params?.arguments?.bytes === 'number' ? 'x'.repeat(params.arguments.bytes) : (params?.arguments?.text ?? ''),
            },
          ],
        };
  void transport.send({ jsonrpc: '2.0', id: message.id, result }, { relatedRequestId: message.id });
}

async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = req.method === 'POST' ? (JSON.parse(await readBody(req)) as unknown) : undefined;
  const header = req.headers['mcp-session-id'];
  let transport = typeof header === 'string' ? sessions.get(header) : undefined;
  if (transport === undefined) {
    const id = randomUUID();
    const created = new NodeStreamableHTTPServerTransport({ sessionIdGenerator: () => id });
    created.onmessage = (message) => answer(created, message);
    sessions.set(id, created);
    transport = created;
  }
  await transport.handleRequest(req, res, body);
}

const server = createServer((req, res) => void serve(req, res));
server.keepAliveTimeout = 60_000;
serveForHarness(server);
