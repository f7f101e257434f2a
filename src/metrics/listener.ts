import http from 'node:http';

import type { ListenAddress } from '../config/config.js';
import { listenFailure } from '../http/listen.js';
import type { BrokerMetrics } from './metrics.js';

export interface MetricsListener {
  /** `http://host:port`, as bound (port 0 resolved). */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * BROKER_METRICS_LISTEN: `/metrics` on an address of its own (a private
 * interface, a port the proxy does not forward), so the public listener
 * need not expose it.
 */
export async function startMetricsListener(metrics: BrokerMetrics, address: ListenAddress): Promise<MetricsListener> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Only /metrics is served here.\n');
      return;
    }
    metrics.render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(listenFailure('BROKER_METRICS_LISTEN', address, error)));
    server.listen(address.port, address.host, () => resolve());
  });
  const bound = server.address();
  if (bound === null || typeof bound === 'string') throw new Error('metrics listener has no TCP address');
  const host = bound.address.includes(':') ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${host}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
