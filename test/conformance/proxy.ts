/**
 * A test-only reverse proxy for the through-broker conformance runs. The
 * conformance suite sends no bearer token; this proxy, on 127.0.0.1, adds
 * `Authorization: Bearer <token>` (a broker token obtained by a real OAuth
 * sign-in) to every request and forwards it, byte for byte and streamed both
 * ways, to the broker. It never switches the broker's authentication off: it
 * is just one more client holding a token.
 *
 * Host and Origin are forwarded as sent, except that the proxy's own address
 * is replaced by the broker's (the proxy stands in for the broker's address;
 * a foreign Host or Origin, as the DNS-rebinding scenario sends, stays
 * foreign so the broker's own checks see it).
 */
import { once } from 'node:events';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

export interface ConformanceProxyOptions {
  /** The broker's base URL, e.g. http://127.0.0.1:8080 (paths are kept). */
  readonly brokerUrl: string;
  /** Returns the bearer token to add; called per request, so a refreshed token is picked up. */
  readonly token: () => string;
}

export interface ConformanceProxy {
  /** The proxy's base URL (no trailing slash). */
  readonly url: string;
  /** How many requests were forwarded. */
  readonly forwarded: () => number;
  close(): Promise<void>;
}

function rewriteAuthority(value: string, from: string, to: string): string {
  return value === from ? to : value;
}

export async function startConformanceProxy(options: ConformanceProxyOptions): Promise<ConformanceProxy> {
  const broker = new URL(options.brokerUrl);
  let forwarded = 0;
  let own = { port: '', hosts: new Set<string>() };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    forwarded += 1;
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || name === 'authorization') continue;
      headers[name] = value;
    }
    const host = typeof req.headers.host === 'string' ? req.headers.host : undefined;
    if (host !== undefined && own.hosts.has(host)) headers.host = host.replace(/:\d+$/, `:${broker.port}`);
    const origin = req.headers.origin;
    if (typeof origin === 'string') {
      for (const ownHost of own.hosts) {
        headers.origin = rewriteAuthority(origin, `http://${ownHost}`, `http://${ownHost.replace(/:\d+$/, `:${broker.port}`)}`);
        if (headers.origin !== origin) break;
      }
    }
    headers.authorization = `Bearer ${options.token()}`;
    const upstream = httpRequest(
      { host: broker.hostname, port: broker.port, method: req.method, path: req.url, headers, setHost: false },
      (response) => {
        const responseHeaders: OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) responseHeaders[name] = value;
        }
        res.writeHead(response.statusCode ?? 502, response.statusMessage, responseHeaders);
        res.flushHeaders();
        response.pipe(res);
        response.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (error) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`conformance proxy: ${error.message}`);
      } else res.destroy();
    });
    // The client going away (an SSE stream it closes) must close the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  const server: Server = createServer(handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = String((server.address() as AddressInfo).port);
  own = { port, hosts: new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) };
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded: () => forwarded,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
