import type { ClientRepository, RegisteredClient, TokenEndpointAuthMethod } from '../store/store.js';
import { ClientMetadataDocuments, isMetadataDocumentClientId, type ClientKeySource } from './cimd.js';
import {
  GRANTED_GRANT_TYPES,
  METADATA_LIMITS,
  boundedRedirectUriProblem,
  displayString,
  grantTypesProblem,
  isStringArray,
  responseTypesProblem,
  type ClientAuthMethod,
} from './client-metadata.js';
import { OAuthError } from './errors.js';
import { randomToken, sha256Hex } from './tokens.js';

/** A client as the endpoints see it, however it registered. */
export interface ResolvedClient {
  readonly clientId: string;
  /** `registered` (RFC 7591) names are self-asserted; `metadata_document` ones come from the client_id URL's host. */
  readonly kind: 'registered' | 'metadata_document';
  readonly clientName: string | null;
  readonly clientUri: string | null;
  readonly redirectUris: readonly string[];
  readonly grantTypes: readonly string[];
  /** How it may authenticate at the token endpoint. */
  readonly authMethods: readonly ClientAuthMethod[];
  readonly clientSecretHash: string | null;
  /** Published keys for private_key_jwt (metadata-document clients only). */
  readonly keys: ClientKeySource | null;
  readonly signingAlg: string | null;
}

const REGISTRABLE_AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ['none', 'client_secret_basic', 'client_secret_post'];

/**
 * A confidential client may send its secret either way (RFC 6749 §2.3.1
 * allows both); clients register one and use the other more often than one
 * would think.
 */
const SECRET_METHODS: readonly ClientAuthMethod[] = ['client_secret_basic', 'client_secret_post'];

export interface ClientDirectoryOptions {
  /** BROKER_CIMD: when off, a URL client_id is just an unknown client, and clients fall back to registration. */
  readonly metadataDocuments: boolean;
  readonly allowPrivateNetwork: boolean;
  /** Registrations that never completed a sign-in, at most; 0 for no limit. */
  readonly maxUnusedClients: number;
  /** Seconds a refused registration is told to wait: the unused ones are purged on this rhythm. */
  readonly registrationRetryAfterS: number;
}

/** Finds clients: metadata documents by URL, registered clients in the store. */
export class ClientDirectory {
  readonly #clients: ClientRepository;
  readonly #documents: ClientMetadataDocuments;
  readonly #options: ClientDirectoryOptions;

  constructor(clients: ClientRepository, documents: ClientMetadataDocuments, options: ClientDirectoryOptions) {
    this.#clients = clients;
    this.#documents = documents;
    this.#options = options;
  }

  get metadataDocuments(): boolean {
    return this.#options.metadataDocuments;
  }

  /** The client, or `invalid_client` saying why there is none. */
  async resolve(clientId: string): Promise<ResolvedClient> {
    if (this.#options.metadataDocuments && isMetadataDocumentClientId(clientId, this.#options.allowPrivateNetwork)) {
      const document = await this.#documents.resolve(clientId);
      return {
        clientId,
        kind: 'metadata_document',
        clientName: document.clientName,
        clientUri: document.clientUri,
        redirectUris: document.redirectUris,
        grantTypes: GRANTED_GRANT_TYPES,
        authMethods: document.authMethods,
        clientSecretHash: null,
        keys: document.keys,
        signingAlg: document.signingAlg,
      };
    }
    const client = await this.#clients.find(clientId);
    if (client === undefined) throw new OAuthError('invalid_client', 'unknown client');
    return {
      clientId: client.clientId,
      kind: 'registered',
      clientName: client.clientName,
      clientUri: client.clientUri,
      redirectUris: client.redirectUris,
      grantTypes: client.grantTypes,
      authMethods: client.tokenEndpointAuthMethod === 'none' ? ['none'] : SECRET_METHODS,
      clientSecretHash: client.clientSecretHash,
      keys: null,
      signingAlg: null,
    };
  }

  /**
   * RFC 7591 registration: validates the metadata, stores the client, and
   * returns the response body (with the secret, shown this once): what was
   * registered, which may be less than what was asked.
   */
  async register(metadata: unknown, now: number): Promise<Record<string, unknown>> {
    const request = parseRegistration(metadata);
    const { maxUnusedClients, registrationRetryAfterS } = this.#options;
    if (maxUnusedClients > 0 && (await this.#clients.countUnused()) >= maxUnusedClients) {
      // Registrations that never sign in are how an anonymous caller would fill the disk.
      throw new OAuthError('temporarily_unavailable', 'too many registered clients have not signed in yet; try again later', {
        status: 429,
        retryAfter: registrationRetryAfterS,
      });
    }
    const clientId = randomToken('fmb_client_');
    const secret = request.tokenEndpointAuthMethod === 'none' ? undefined : randomToken('fmb_secret_');
    const client: RegisteredClient = {
      clientId,
      clientSecretHash: secret === undefined ? null : sha256Hex(secret),
      tokenEndpointAuthMethod: request.tokenEndpointAuthMethod,
      redirectUris: request.redirectUris,
      grantTypes: GRANTED_GRANT_TYPES,
      clientName: request.clientName,
      clientUri: request.clientUri,
      createdAt: now,
      firstSignInAt: null,
    };
    await this.#clients.create(client);
    return {
      client_id: clientId,
      client_id_issued_at: Math.floor(now / 1000),
      ...(secret === undefined ? {} : { client_secret: secret, client_secret_expires_at: 0 }),
      redirect_uris: client.redirectUris,
      token_endpoint_auth_method: client.tokenEndpointAuthMethod,
      grant_types: client.grantTypes,
      response_types: ['code'],
      ...(client.clientName === null ? {} : { client_name: client.clientName }),
      ...(client.clientUri === null ? {} : { client_uri: client.clientUri }),
    };
  }
}

interface RegistrationRequest {
  readonly redirectUris: string[];
  readonly tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  readonly clientName: string | null;
  readonly clientUri: string | null;
}

/**
 * RFC 7591 §2 and §3.2.1: what the broker registers of a request. Fields it
 * has no use for (scope, application_type, logo_uri, jwks_uri, software_id…)
 * are ignored; grant types are narrowed to the ones it grants; only what
 * would make the client unusable or the store a dumping ground is refused.
 */
function parseRegistration(metadata: unknown): RegistrationRequest {
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new OAuthError('invalid_client_metadata', 'client metadata must be a JSON object');
  }
  const doc = metadata as Record<string, unknown>;
  const redirectUris = doc.redirect_uris;
  if (!isStringArray(redirectUris) || redirectUris.length === 0) {
    throw new OAuthError('invalid_redirect_uri', 'redirect_uris must be a non-empty array of strings');
  }
  const uniqueUris = [...new Set(redirectUris)];
  if (uniqueUris.length > METADATA_LIMITS.redirectUris) {
    throw new OAuthError('invalid_redirect_uri', `at most ${METADATA_LIMITS.redirectUris} redirect URIs`);
  }
  for (const uri of uniqueUris) {
    const problem = boundedRedirectUriProblem(uri);
    if (problem !== undefined) throw new OAuthError('invalid_redirect_uri', `redirect URI ${uri.slice(0, 100)}: ${problem}`);
  }
  // RFC 7591 §2: the default method is client_secret_basic.
  const method = doc.token_endpoint_auth_method ?? 'client_secret_basic';
  if (typeof method !== 'string' || !REGISTRABLE_AUTH_METHODS.includes(method as TokenEndpointAuthMethod)) {
    throw new OAuthError(
      'invalid_client_metadata',
      `token_endpoint_auth_method must be one of ${REGISTRABLE_AUTH_METHODS.join(', ')} (private_key_jwt is offered to clients with a metadata document)`,
    );
  }
  const grantProblem = grantTypesProblem(doc.grant_types);
  if (grantProblem !== undefined) throw new OAuthError('invalid_client_metadata', grantProblem);
  const responseProblem = responseTypesProblem(doc.response_types);
  if (responseProblem !== undefined) throw new OAuthError('invalid_client_metadata', responseProblem);
  const clientUri = displayString(doc.client_uri, METADATA_LIMITS.clientUri);
  return {
    redirectUris: uniqueUris,
    tokenEndpointAuthMethod: method as TokenEndpointAuthMethod,
    clientName: displayString(doc.client_name, METADATA_LIMITS.clientName),
    // A client_uri that is no web address is left out rather than refused: it is only shown.
    clientUri: clientUri !== null && /^https?:\/\//i.test(clientUri) ? clientUri : null,
  };
}
