import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

import {
  METADATA_LIMITS,
  boundedRedirectUriProblem,
  displayString,
  grantTypesProblem,
  isStringArray,
  responseTypesProblem,
} from './client-metadata.js';
import { OAuthError } from './errors.js';

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
  /**
   * How long the last good copy is still used when fetching a fresh one
   * fails: hosted clients' documents sit behind CDNs that now and then
   * answer servers with 403 or time out, and one bad minute at the CDN must
   * not lock every user of that client out.
   */
  readonly maxStaleMs: number;
  /** Sent as User-Agent, so the client's operators can tell who fetches their document. */
  readonly userAgent: string;
}

export const DEFAULT_CIMD_OPTIONS: CimdOptions = {
  allowPrivateNetwork: false,
  timeoutMs: 5000,
  maxBytes: 5 * 1024,
  defaultCacheMs: 5 * 60_000,
  maxCacheMs: 24 * 3_600_000,
  maxCacheEntries: 1000,
  maxStaleMs: 24 * 3_600_000,
  userAgent: 'forgejo-mcp-broker (client metadata fetch)',
};

/** Where a client's public keys for private_key_jwt come from. */
export type ClientKeySource = { readonly jwksUri: string } | { readonly jwks: Readonly<Record<string, unknown>> };

/** The token endpoint auth methods a metadata document can name: shared secrets are forbidden by the draft. */
export type DocumentAuthMethod = 'none' | 'private_key_jwt';

/** What a metadata document tells the broker, after validation. */
export interface ClientMetadataDocument {
  readonly clientId: string;
  readonly clientName: string;
  readonly clientUri: string | null;
  readonly redirectUris: readonly string[];
  /** The methods the client may use at the token endpoint, of those the broker has. */
  readonly authMethods: readonly DocumentAuthMethod[];
  /** For private_key_jwt; null when the document names no keys. */
  readonly keys: ClientKeySource | null;
  /** `token_endpoint_auth_signing_alg`, when the document pins one. */
  readonly signingAlg: string | null;
}

/** True when the client_id is meant as a metadata document URL. */
export function isMetadataDocumentClientId(clientId: string, allowPrivateNetwork: boolean): boolean {
  return clientId.startsWith('https://') || (allowPrivateNetwork && clientId.startsWith('http://'));
}

interface CachedDocument {
  readonly document: ClientMetadataDocument;
  readonly freshUntil: number;
  readonly fetchedAt: number;
}

export class ClientMetadataDocuments {
  readonly #options: CimdOptions;
  readonly #now: () => number;
  readonly #onStale: (clientId: string, reason: string) => void;
  readonly #cache = new Map<string, CachedDocument>();
  readonly #inflight = new Map<string, Promise<ClientMetadataDocument>>();

  /** `onStale` hears of every time a last good copy stood in for a failed fetch. */
  constructor(options: CimdOptions, now: () => number, onStale: (clientId: string, reason: string) => void = () => undefined) {
    this.#options = options;
    this.#now = now;
    this.#onStale = onStale;
  }

  /** The validated document; rejects with `invalid_client` saying what is wrong. */
  resolve(clientId: string): Promise<ClientMetadataDocument> {
    const cached = this.#cache.get(clientId);
    if (cached !== undefined && cached.freshUntil > this.#now()) return Promise.resolve(cached.document);
    let inflight = this.#inflight.get(clientId);
    if (inflight === undefined) {
      inflight = this.#refresh(clientId, cached).finally(() => this.#inflight.delete(clientId));
      this.#inflight.set(clientId, inflight);
    }
    return inflight;
  }

  async #refresh(clientId: string, cached: CachedDocument | undefined): Promise<ClientMetadataDocument> {
    try {
      return await this.#fetchAndValidate(clientId);
    } catch (error) {
      // Only a failure to reach the document is bridged; one that is gone or no longer valid is forgotten.
      if (!(error instanceof FetchFailed)) this.#cache.delete(clientId);
      if (error instanceof FetchFailed && cached !== undefined && this.#now() - cached.fetchedAt <= this.#options.maxStaleMs) {
        this.#onStale(clientId, error.message);
        return cached.document;
      }
      throw error;
    }
  }

  async #fetchAndValidate(clientId: string): Promise<ClientMetadataDocument> {
    const url = this.#checkClientIdUrl(clientId);
    const fetched = await fetchJson(url, this.#options, this.#options.maxBytes, 'client metadata document');
    const document = validateDocument(clientId, fetched.body);
    const cacheControl = parseCacheControl(fetched.cacheControl);
    this.#cache.delete(clientId);
    if (!cacheControl.noStore) {
      if (this.#cache.size >= this.#options.maxCacheEntries) {
        const oldest = this.#cache.keys().next();
        if (oldest.done !== true) this.#cache.delete(oldest.value);
      }
      const at = this.#now();
      this.#cache.set(clientId, { document, freshUntil: at + freshnessMs(cacheControl, this.#options), fetchedAt: at });
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
  ['192.88.99.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::1', 128],
  ['::', 96],
  ['::ffff:0:0:0', 96],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
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

/** The document could not be had (network, timeout, status): unlike an invalid one, a last good copy may stand in. */
class FetchFailed extends OAuthError {
  constructor(description: string, cause?: unknown) {
    super('invalid_client', description, cause === undefined ? undefined : { cause });
  }
}

/**
 * GETs a small JSON document from a URL anyone could have named: public
 * addresses only (unless allowed), no redirects (the document must live at
 * the URL itself), bounded in time and size. Any media type is read, since
 * the JSON is validated anyway and CDNs label it variously.
 */
export function fetchJson(url: URL, options: CimdOptions, maxBytes: number, what: string): Promise<FetchedDocument> {
  // An IP literal host skips DNS, so check it here.
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (!options.allowPrivateNetwork && isIP(literal) !== 0 && !isPublicAddress(literal)) {
    return Promise.reject(new OAuthError('invalid_client', `${what} URL names a non-public address`));
  }
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const fail = (description: string): void => {
      clearTimeout(deadline);
      request.destroy();
      reject(new FetchFailed(`${what}: ${description}`));
    };
    const request = send(url, {
      method: 'GET',
      headers: { accept: 'application/json', 'user-agent': options.userAgent },
      lookup: publicOnlyLookup(options.allowPrivateNetwork),
      timeout: options.timeoutMs,
    });
    const deadline = setTimeout(() => fail('timed out'), options.timeoutMs);
    request.on('timeout', () => fail('timed out'));
    request.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      if (error.code === 'ENOTPUBLIC') reject(new OAuthError('invalid_client', `${what} URL names a non-public address`));
      else reject(new FetchFailed(`${what} could not be fetched`, error));
    });
    request.on('response', (response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      if (status !== 200) {
        // A server or CDN trouble (5xx, 403 and 429 to servers) may pass; any other answer means the document is not there.
        if (status >= 500 || status === 403 || status === 429) fail(`answered HTTP ${status}`);
        else {
          clearTimeout(deadline);
          request.destroy();
          reject(new OAuthError('invalid_client', `${what}: answered HTTP ${status}`));
        }
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          clearTimeout(deadline);
          request.destroy();
          reject(new OAuthError('invalid_client', `${what}: larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        clearTimeout(deadline);
        if (size > maxBytes) return;
        try {
          resolve({
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown,
            cacheControl: response.headers['cache-control'],
          });
        } catch {
          reject(new OAuthError('invalid_client', `${what} is not valid JSON`));
        }
      });
      response.on('error', () => fail('response failed'));
    });
    request.end();
  });
}

interface CacheControl {
  readonly noStore: boolean;
  /** no-cache: may be kept (as a fallback) but must be fetched again before use. */
  readonly noCache: boolean;
  readonly maxAgeSeconds: number | undefined;
}

/** RFC 9111 §5.2.2, the directives that matter to a private cache of JSON documents. */
export function parseCacheControl(header: string | undefined): CacheControl {
  const directives = (header ?? '')
    .toLowerCase()
    .split(',')
    .map((part) => part.trim());
  const maxAge = directives.find((directive) => directive.startsWith('max-age='));
  const seconds = maxAge === undefined ? undefined : Number(maxAge.slice('max-age='.length));
  return {
    noStore: directives.includes('no-store'),
    noCache: directives.includes('no-cache'),
    maxAgeSeconds: seconds === undefined ? undefined : Number.isFinite(seconds) && seconds >= 0 ? seconds : 0,
  };
}

/** Freshness from Cache-Control: none for no-cache; max-age bounded; the default when the response says nothing. */
export function freshnessMs(cacheControl: CacheControl, options: CimdOptions): number {
  if (cacheControl.noCache || cacheControl.noStore) return 0;
  if (cacheControl.maxAgeSeconds === undefined) return options.defaultCacheMs;
  return Math.min(cacheControl.maxAgeSeconds * 1000, options.maxCacheMs);
}

/**
 * The draft's required members, checked strictly; everything a hosted client
 * adds for other servers (jwt-bearer or device_code grants, a second auth
 * method, scope, logo_uri…) ignored rather than refused.
 */
function validateDocument(clientId: string, body: unknown): ClientMetadataDocument {
  const invalid = (description: string): OAuthError => new OAuthError('invalid_client', `client metadata document: ${description}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('not a JSON object');
  const doc = body as Record<string, unknown>;
  if (doc.client_id !== clientId) throw invalid('client_id does not match the document URL');
  const clientName = displayString(doc.client_name, METADATA_LIMITS.clientName);
  if (clientName === null) throw invalid('client_name is required');
  if ('client_secret' in doc || 'client_secret_expires_at' in doc) throw invalid('must not contain a client secret');
  if (!isStringArray(doc.redirect_uris) || doc.redirect_uris.length === 0)
    throw invalid('redirect_uris must be a non-empty array of strings');
  // Entries the broker could never redirect to are dropped; the document is refused only if none is left.
  const redirectUris = [...new Set(doc.redirect_uris)].filter((uri) => boundedRedirectUriProblem(uri) === undefined);
  if (redirectUris.length === 0) {
    const first = doc.redirect_uris[0] ?? '';
    throw invalid(`no usable redirect URI (${first.slice(0, 100)}: ${boundedRedirectUriProblem(first) ?? 'unusable'})`);
  }
  const grantProblem = grantTypesProblem(doc.grant_types);
  if (grantProblem !== undefined) throw invalid(grantProblem);
  const responseProblem = responseTypesProblem(doc.response_types);
  if (responseProblem !== undefined) throw invalid(responseProblem);
  const keys = keySource(doc, invalid);
  const authMethods = documentAuthMethods(doc, keys, invalid);
  const clientUri = displayString(doc.client_uri, METADATA_LIMITS.clientUri);
  return {
    clientId,
    clientName,
    clientUri: clientUri !== null && /^https?:\/\//i.test(clientUri) ? clientUri : null,
    redirectUris,
    authMethods,
    keys,
    signingAlg: typeof doc.token_endpoint_auth_signing_alg === 'string' ? doc.token_endpoint_auth_signing_alg : null,
  };
}

/** `jwks_uri` (https, or http when private networks are allowed, checked again when fetched) or an inline `jwks`. */
function keySource(doc: Record<string, unknown>, invalid: (description: string) => OAuthError): ClientKeySource | null {
  if (typeof doc.jwks_uri === 'string') {
    if (!/^https?:\/\//i.test(doc.jwks_uri)) throw invalid('jwks_uri must be an https URL');
    return { jwksUri: doc.jwks_uri };
  }
  const jwks = doc.jwks;
  if (typeof jwks === 'object' && jwks !== null && !Array.isArray(jwks) && Array.isArray((jwks as Record<string, unknown>).keys)) {
    return { jwks: jwks as Record<string, unknown> };
  }
  return null;
}

/**
 * The token endpoint auth methods this client may use. A document names
 * one (`token_endpoint_auth_method`, default none) or offers a choice
 * (`token_endpoint_auth_methods_supported`, as ChatGPT's does); the broker
 * keeps those it has: none, and private_key_jwt when keys are published.
 * Declaring private_key_jwt with keys makes the client confidential: the
 * draft then requires its assertion, so it is never downgraded to none; one
 * that declares it without keys but offers none is a public client.
 */
function documentAuthMethods(
  doc: Record<string, unknown>,
  keys: ClientKeySource | null,
  invalid: (description: string) => OAuthError,
): DocumentAuthMethod[] {
  const declared = typeof doc.token_endpoint_auth_method === 'string' ? doc.token_endpoint_auth_method : 'none';
  // A client that declares private_key_jwt and publishes keys must prove them (the draft's MUST), whatever else it offers.
  if (declared === 'private_key_jwt' && keys !== null) return ['private_key_jwt'];
  const offered = isStringArray(doc.token_endpoint_auth_methods_supported) ? doc.token_endpoint_auth_methods_supported : [declared];
  const usable = offered.filter(
    (method): method is DocumentAuthMethod => method === 'none' || (method === 'private_key_jwt' && keys !== null),
  );
  if (usable.length > 0) return [...new Set(usable)];
  if (offered.includes('private_key_jwt')) throw invalid('private_key_jwt needs jwks_uri or jwks');
  if (offered.some((method) => method.startsWith('client_secret'))) throw invalid('a metadata document cannot use a shared secret');
  throw invalid(`token_endpoint_auth_method ${offered.join(', ')} is not supported (none or private_key_jwt)`);
}
