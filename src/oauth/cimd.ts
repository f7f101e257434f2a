import {
  METADATA_LIMITS,
  boundedRedirectUriProblem,
  displayString,
  grantTypesProblem,
  isStringArray,
  responseTypesProblem,
} from './client-metadata.js';
import { OAuthError } from './errors.js';
import { FetchFailed, fetchJson } from './public-fetch.js';

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
