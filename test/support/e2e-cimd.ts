/**
 * A Client ID Metadata Document served by a small real HTTPS (or, for the
 * development case, plain HTTP) server on 127.0.0.1, for the end-to-end
 * CIMD sign-in.
 *
 * Why https on loopback and not plain http: the MCP SDK's client refuses a
 * `clientMetadataUrl` that is not https (`auth()` throws
 * invalid_client_metadata before it sends anything), so the SDK's own CIMD
 * path can only be driven with an https client_id. The broker fetches it
 * because the test configures `BROKER_CIMD_ALLOW_PRIVATE=true` (127.0.0.1
 * is not a public address), and trusts it because `trust()` adds this
 * self-signed certificate (P-256, SAN IP:127.0.0.1, valid 2000-2100, made
 * for these tests only) to the CAs of node:https's global agent, the one
 * the broker's fetch uses, as an operator would with NODE_EXTRA_CA_CERTS.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https, { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/** Test-only key: it protects nothing but this loopback test server. */
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+LeH5ykN9AWiNgWJ
fU4LMitsbS9jgo80sMXJVYmH/yWhRANCAAQPbrwbit3MuPez9bMB2nJ/KMkYefym
375iJTYeRr0pbJs8jgMT/R/fFzQ9qWORwFr5UDDgo29/NFrHNPfmGzrx
-----END PRIVATE KEY-----
`;

const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIB2jCCAYCgAwIBAgIBATAKBggqhkjOPQQDAjBCMUAwPgYDVQQDDDcxMjcuMC4w
LjEgKGZvcmdlam8tbWNwLWJyb2tlciBlMmUgdGVzdCBjbGllbnQgbWV0YWRhdGEp
MCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjBCMUAwPgYDVQQDDDcx
MjcuMC4wLjEgKGZvcmdlam8tbWNwLWJyb2tlciBlMmUgdGVzdCBjbGllbnQgbWV0
YWRhdGEpMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAED268G4rdzLj3s/WzAdpy
fyjJGHn8pt++YiU2Hka9KWybPI4DE/0f3xc0PaljkcBa+VAw4KNvfzRaxzT35hs6
8aNlMGMwDwYDVR0RBAgwBocEfwAAATAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQE
AwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQU+q2h/lmnxcb4A8m5
fmwNkKZI+z8wCgYIKoZIzj0EAwIDSAAwRQIgYvn/+8sHxWXDqSMF5YmGytSYYfDF
p8DLZfzFScmXrNECIQDoa6cLcT1U0XufyLxR90EQTSa3QECf3ihk+3OKMt17Rg==
-----END CERTIFICATE-----
`;

export const CIMD_PATH = '/clients/e2e-mcp-client.json';

/** A JSON document this server publishes: built from its own URL. */
export type PublishedDocument = (url: string) => Record<string, unknown>;

export class ClientMetadataServer {
  /** GET requests for the document at CIMD_PATH. */
  fetches = 0;
  readonly #server: Server;
  readonly #clientId: string;
  readonly #documents: Map<string, PublishedDocument>;
  #restoreTrust: (() => void) | undefined;

  private constructor(server: Server, clientId: string, documents: Map<string, PublishedDocument>) {
    this.#server = server;
    this.#clientId = clientId;
    this.#documents = documents;
  }

  /** Serves `document(clientId)` at `https://127.0.0.1:<port>/clients/e2e-mcp-client.json` (or http). */
  static async start(document: PublishedDocument, protocol: 'https' | 'http' = 'https'): Promise<ClientMetadataServer> {
    const documents = new Map<string, PublishedDocument>([[CIMD_PATH, document]]);
    const holder: { metadata?: ClientMetadataServer } = {};
    const serve = (req: IncomingMessage, res: ServerResponse): void => {
      const metadata = holder.metadata;
      const url = metadata === undefined ? undefined : new URL(req.url ?? '/', metadata.clientId);
      const published = url === undefined ? undefined : documents.get(url.pathname);
      if (req.method !== 'GET' || metadata === undefined || url === undefined || published === undefined) {
        res.writeHead(404).end();
        return;
      }
      if (url.pathname === CIMD_PATH) metadata.fetches += 1;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
      res.end(JSON.stringify(published(url.href)));
    };
    const server = protocol === 'https' ? createHttpsServer({ key: TEST_KEY, cert: TEST_CERT }, serve) : createHttpServer(serve);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const metadata = new ClientMetadataServer(
      server,
      `${protocol}://127.0.0.1:${(server.address() as AddressInfo).port}${CIMD_PATH}`,
      documents,
    );
    holder.metadata = metadata;
    return metadata;
  }

  /** Serves one more document at `path` (a client's metadata document, its JWKS); returns its URL. */
  publish(path: string, document: PublishedDocument): string {
    this.#documents.set(path, document);
    return new URL(path, this.#clientId).href;
  }

  /** The client_id: the document's own URL. */
  get clientId(): string {
    return this.#clientId;
  }

  /** Makes node:https's global agent (the broker's CIMD fetch) trust this server's certificate; undone by `close()`. */
  trust(): void {
    if (this.#restoreTrust !== undefined) return;
    const options = https.globalAgent.options;
    const had = Object.hasOwn(options, 'ca');
    const previous = options.ca;
    options.ca = TEST_CERT;
    this.#restoreTrust = () => {
      if (had) options.ca = previous;
      else delete options.ca;
      https.globalAgent.destroy();
    };
  }

  async close(): Promise<void> {
    this.#restoreTrust?.();
    this.#restoreTrust = undefined;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
