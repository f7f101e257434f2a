import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

import { OAuthError } from './errors.js';
import { redirectUriProblem } from './redirect-uri.js';

/**
 * OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document):
 * a client_id that is an https URL names a JSON document describing the client.
 * The broker fetches it with strict limits, because the URL comes from anyone:
 * https only, public addresses only (checked on the address actually
 * connected to, so DNS rebinding cannot sneak in), no redirects, a size and a
 * time limit, and a cache that follows the response's Cache-Control.
 */
export interface CimdOptions {
  /** Development only: lets client_id URLs name loopback and private addresses, over http too. */
  readonly allowPrivateNetwork: boolean;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** Freshness when the response says nothing. */
  readonly defaultCacheMs: number;
  /** Upper bound on any freshness the response asks for. */
  readonly maxCacheMs: number;
  readonly maxCacheEntries: number;
}

export const DEFAULT_CIMD_OPTIONS: CimdOptions = {
  allowPrivateNetwork: false,
  timeoutMs: 5000,
  maxBytes: 5 * 1024,
  defaultCacheMs: 5 * 60_000,
  maxCacheMs: 24 * 3_600_000,
  maxCacheEntries: 1000,
};

/** What a metadata document tells the broker, after validation. */
export interface ClientMetadataDocument {
  readonly clientId: string;
  readonly clientName: string;
  readonly clientUri: string | null;
  readonly redirectUris: readonly string[];
  readonly grantTypes: readonly string[];
}

const ALLOWED_GRANT_TYPES = new Set(['authorization_code', 'refresh_token']);

/** True when the client_id is meant as a metadata document URL. */
export function isMetadataDocumentClientId(clientId: string, allowPrivateNetwork: boolean): boolean {
  return clientId.startsWith('https://') || (allowPrivateNetwork && clientId.startsWith('http://'));
}

export class ClientMetadataDocuments {
  readonly #options: CimdOptions;
  readonly #now: () => number;
  readonly #cache = new Map<string, { readonly document: ClientMetadataDocument; readonly freshUntil: number }>();
  readonly #inflight = new Map<string, Promise<ClientMetadataDocument>>();

  constructor(options: CimdOptions, now: () => number) {
    this.#options = options;
    this.#now = now;
  }

  /** The validated document; rejects with `invalid_client` saying what is wrong. */
  resolve(clientId: string): Promise<ClientMetadataDocument> {
    const cached = this.#cache.get(clientId);
    if (cached !== undefined && cached.freshUntil > this.#now()) return Promise.resolve(cached.document);
    let inflight = this.#inflight.get(clientId);
    if (inflight === undefined) {
      inflight = this.#fetchAndValidate(clientId).finally(() => this.#inflight.delete(clientId));
      this.#inflight.set(clientId, inflight);
    }
    return inflight;
  }

  async #fetchAndValidate(clientId: string): Promise<ClientMetadataDocument> {
    const url = this.#checkClientIdUrl(clientId);
    const fetched = await fetchLimited(url, this.#options);
    const document = validateDocument(clientId, fetched.body);
    const freshFor = freshnessMs(fetched.cacheControl, this.#options);
    this.#cache.delete(clientId);
    if (freshFor > 0) {
      if (this.#cache.size >= this.#options.maxCacheEntries) {
        const oldest = this.#cache.keys().next();
        if (oldest.done !== true) this.#cache.delete(oldest.value);
      }
      this.#cache.set(clientId, { document, freshUntil: this.#now() + freshFor });
    }
    return document;
  }

  /** The draft's rules for the client_id URL (§3): https, a path, no fragment, credentials or dot segments. */
  #checkClientIdUrl(clientId: string): URL {
    let url: URL;
    try {
      url = new URL(clientId);
    } catch {
      throw new OAuthError('invalid_client', 'client_id is not a valid URL');
    }
    const httpAllowed = this.#options.allowPrivateNetwork && url.protocol === 'http:';
    if (url.protocol !== 'https:' && !httpAllowed) throw new OAuthError('invalid_client', 'client_id URL must use https');
    if (url.hash !== '' || clientId.includes('#')) throw new OAuthError('invalid_client', 'client_id URL must not have a fragment');
    if (url.username !== '' || url.password !== '') throw new OAuthError('invalid_client', 'client_id URL must not carry credentials');
    if (url.pathname === '/' || url.pathname === '') throw new OAuthError('invalid_client', 'client_id URL must have a path');
    if (/\/\.\.?(\/|$)/.test(clientId.slice(url.origin.length))) {
      throw new OAuthError('invalid_client', 'client_id URL must not have dot segments');
    }
    if (url.href !== clientId) throw new OAuthError('invalid_client', 'client_id URL must be in normalised form');
    return url;
  }
}

interface FetchedDocument {
  readonly body: unknown;
  readonly cacheControl: string | undefined;
}

/** Addresses a metadata fetch must never reach, unless the operator allows it for development. */
const NON_PUBLIC = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv6');
}

export function isPublicAddress(address: string): boolean {
  // An IPv4-mapped IPv6 address is judged by the IPv4 address inside it.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const candidate = mapped ?? address;
  const family = isIP(candidate);
  if (family === 0) return false;
  return !NON_PUBLIC.check(candidate, family === 4 ? 'ipv4' : 'ipv6');
}

/** A DNS lookup that refuses non-public answers: the check applies to the address connected to. */
function publicOnlyLookup(allowPrivateNetwork: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error !== null) {
        callback(error, '', 0);
        return;
      }
      const usable = allowPrivateNetwork ? addresses : addresses.filter((entry) => isPublicAddress(entry.address));
      const chosen = usable[0];
      if (chosen === undefined || (!allowPrivateNetwork && usable.length !== addresses.length)) {
        callback(Object.assign(new Error(`${hostname} resolves to a non-public address`), { code: 'ENOTPUBLIC' }), '', 0);
        return;
      }
      if (options.all === true) callback(null, usable);
      else callback(null, chosen.address, chosen.family);
    });
  };
}

function fetchLimited(url: URL, options: CimdOptions): Promise<FetchedDocument> {
  // An IP literal host skips DNS, so check it here.
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (!options.allowPrivateNetwork && isIP(literal) !== 0 && !isPublicAddress(literal)) {
    return Promise.reject(new OAuthError('invalid_client', 'client_id URL names a non-public address'));
  }
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const fail = (description: string): void => {
      clearTimeout(deadline);
      request.destroy();
      reject(new OAuthError('invalid_client', `client metadata document: ${description}`));
    };
    const request = send(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      lookup: publicOnlyLookup(options.allowPrivateNetwork),
      timeout: options.timeoutMs,
    });
    const deadline = setTimeout(() => fail('timed out'), options.timeoutMs);
    request.on('timeout', () => fail('timed out'));
    request.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      reject(
        new OAuthError(
          'invalid_client',
          error.code === 'ENOTPUBLIC' ? 'client_id URL names a non-public address' : 'client metadata document could not be fetched',
          { cause: error },
        ),
      );
    });
    request.on('response', (response: IncomingMessage) => {
      if (response.statusCode !== 200) {
        // Redirects are not followed: the document must live at the client_id URL itself.
        fail(`answered HTTP ${response.statusCode ?? 0}`);
        return;
      }
      const type = (response.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/json') {
        fail('is not application/json');
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) {
          fail(`larger than ${options.maxBytes} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        clearTimeout(deadline);
        if (size > options.maxBytes) return;
        try {
          resolve({
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown,
            cacheControl: response.headers['cache-control'],
          });
        } catch {
          reject(new OAuthError('invalid_client', 'client metadata document is not valid JSON'));
        }
      });
      response.on('error', () => fail('response failed'));
    });
    request.end();
  });
}

/** Freshness from Cache-Control (RFC 9111 §5.2.2): no-store and no-cache mean none; max-age is bounded. */
function freshnessMs(cacheControl: string | undefined, options: CimdOptions): number {
  if (cacheControl === undefined) return options.defaultCacheMs;
  const directives = cacheControl.toLowerCase().split(',').map((part) => part.trim());
  if (directives.some((directive) => directive === 'no-store' || directive === 'no-cache')) return 0;
  const maxAge = directives.find((directive) => directive.startsWith('max-age='));
  if (maxAge === undefined) return options.defaultCacheMs;
  const seconds = Number(maxAge.slice('max-age='.length));
  if (!Number.isFinite(seconds) || seconds < 0) return 0;
  return Math.min(seconds * 1000, options.maxCacheMs);
}

function validateDocument(clientId: string, body: unknown): ClientMetadataDocument {
  const invalid = (description: string): OAuthError => new OAuthError('invalid_client', `client metadata document: ${description}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('not a JSON object');
  const doc = body as Record<string, unknown>;
  if (doc.client_id !== clientId) throw invalid('client_id does not match the document URL');
  if (typeof doc.client_name !== 'string' || doc.client_name.trim() === '') throw invalid('client_name is required');
  if ('client_secret' in doc || 'client_secret_expires_at' in doc) throw invalid('must not contain a client secret');
  const method = doc.token_endpoint_auth_method ?? 'none';
  // private_key_jwt is allowed by the draft but not supported here; shared secrets are forbidden by it.
  if (method !== 'none') throw invalid('token_endpoint_auth_method must be none');
  const redirectUris = doc.redirect_uris;
  if (!Array.isArray(redirectUris) || redirectUris.length === 0 || !redirectUris.every((uri) => typeof uri === 'string')) {
    throw invalid('redirect_uris must be a non-empty array of strings');
  }
  for (const uri of redirectUris) {
    const problem = redirectUriProblem(uri);
    if (problem !== undefined) throw invalid(`redirect URI ${uri}: ${problem}`);
  }
  const grantTypes = doc.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grantTypes) || !grantTypes.every((type) => typeof type === 'string' && ALLOWED_GRANT_TYPES.has(type))) {
    throw invalid('grant_types may hold only authorization_code and refresh_token');
  }
  const responseTypes = doc.response_types ?? ['code'];
  if (!Array.isArray(responseTypes) || !responseTypes.every((type) => type === 'code')) {
    throw invalid('response_types may hold only code');
  }
  return {
    clientId,
    clientName: doc.client_name.trim().slice(0, 200),
    clientUri: typeof doc.client_uri === 'string' ? doc.client_uri : null,
    redirectUris: redirectUris,
    grantTypes: grantTypes as string[],
  };
}
