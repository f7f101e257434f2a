import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/** The framing the SDK's Streamable HTTP server transport uses for a POST's answer. */
export function sendSse(res: ServerResponse, sessionId: string, message: unknown): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'mcp-session-id': sessionId,
  });
  res.end(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Listens on a free loopback port, tells the harness which over IPC, and stops when the harness goes away. */
export function serveForHarness(server: Server): void {
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    process.send?.({ ready: port });
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}
