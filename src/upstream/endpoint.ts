import { connect } from 'node:net';
import { BrokerError } from '../errors/errors.js';

/** Where a shared upstream answers, as its sessions see it. */
export interface UpstreamEndpoint {
  /** The upstream's MCP URL; waits while it starts or restarts; rejects once it is stopped. */
  ready(): Promise<URL>;
  /** A session found nothing listening at `url`: resolves with the URL once the upstream answers again; rejects when it stays down. */
  unreachable(url: URL): Promise<URL>;
}

/** An upstream someone else runs (BROKER_UPSTREAM_URL): the broker only connects, and waits a while when it is down. */
export class ExternalUpstream implements UpstreamEndpoint {
  readonly #url: URL;
  readonly #waitMs: number;

  constructor(url: URL, waitMs: number) {
    this.#url = url;
    this.#waitMs = waitMs;
  }

  ready(): Promise<URL> {
    return Promise.resolve(this.#url);
  }

  async unreachable(): Promise<URL> {
    await waitUntilListening(this.#url, this.#waitMs);
    return this.#url;
  }
}

const FIRST_PROBE_DELAY_MS = 10;
const MAX_PROBE_DELAY_MS = 500;

/**
 * Resolves once something accepts TCP connections at the URL's host and
 * port, probing with backoff; rejects after `timeoutMs` or when `stop` says so.
 */
export async function waitUntilListening(url: URL, timeoutMs: number, stopped: () => boolean = () => false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = FIRST_PROBE_DELAY_MS;
  for (;;) {
    if (await accepts(url)) return;
    if (stopped()) throw new BrokerError('unavailable', 'the MCP server was stopped');
    if (Date.now() + delay > deadline) throw new BrokerError('unavailable', `the MCP server at ${url.host} does not answer`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, MAX_PROBE_DELAY_MS);
  }
}

function accepts(url: URL): Promise<boolean> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
