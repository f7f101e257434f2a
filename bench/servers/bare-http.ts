/**
 * HTTP's floor: a minimal node:http server on loopback that answers an MCP
 * client with the bytes a gateway would send (initialize, then `tools/call`
 * of `echo` answered as one SSE event), with no child behind it at all.
 */
import { createServer } from 'node:http';
import { readBody, sendSse, serveForHarness } from './common.js';

const SESSION_ID = 'bare-http-session';
const SERVER_INFO = { name: 'bare-http', version: '1.0.0' };

interface Message {
  readonly id?: number | string;
  readonly method?: string;
  readonly params?: { protocolVersion?: string; arguments?: { text?: string; bytes?: number } };
}

const server = createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
    return;
  }
  void readBody(req).then((body) => {
    const message = JSON.parse(body) as Message;
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    if (message.method === 'initialize') {
      sendSse(res, SESSION_ID, {
        result: { protocolVersion: message.params?.protocolVersion ?? '2025-11-25', capabilities: { tools: {} }, serverInfo: SERVER_INFO },
        jsonrpc: '2.0',
        id: message.id,
      });
      return;
    }
    const args = message.params?.arguments ?? {};
    const text = typeof args.bytes === 'number' ? 'x'.repeat(args.bytes) : (args.text ?? '');
    sendSse(res, SESSION_ID, { result: { content: [{ type: 'text', text }] }, jsonrpc: '2.0', id: message.id });
  });
});
server.keepAliveTimeout = 60_000;
serveForHarness(server);
