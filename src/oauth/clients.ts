import type { ClientRepository, RegisteredClient, TokenEndpointAuthMethod } from '../store/store.js';
import { ClientMetadataDocuments, isMetadataDocumentClientId } from './cimd.js';
import { OAuthError } from './errors.js';
import { redirectUriProblem } from './redirect-uri.js';
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
  readonly tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  readonly clientSecretHash: string | null;
}

const AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ['none', 'client_secret_basic', 'client_secret_post'];
const GRANT_TYPES = new Set(['authorization_code', 'refresh_token']);

/** Finds clients: metadata documents by URL, registered clients in the store. */
export class ClientDirectory {
  readonly #clients: ClientRepository;
  readonly #documents: ClientMetadataDocuments;
  readonly #allowPrivateNetwork: boolean;

  constructor(clients: ClientRepository, documents: ClientMetadataDocuments, allowPrivateNetwork: boolean) {
    this.#clients = clients;
    this.#documents = documents;
    this.#allowPrivateNetwork = allowPrivateNetwork;
  }

  /** The client, or `invalid_client` saying why there is none. */
  async resolve(clientId: string): Promise<ResolvedClient> {
    if (isMetadataDocumentClientId(clientId, this.#allowPrivateNetwork)) {
      const document = await this.#documents.resolve(clientId);
      return {
        clientId,
        kind: 'metadata_document',
        clientName: document.clientName,
        clientUri: document.clientUri,
        redirectUris: document.redirectUris,
        grantTypes: document.grantTypes,
        tokenEndpointAuthMethod: 'none',
        clientSecretHash: null,
      };
    }
    const client = await this.#clients.find(clientId);
    if (client === undefined) throw new OAuthError('invalid_client', 'unknown client');
    return { ...client, kind: 'registered' };
  }

  /**
   * RFC 7591 registration: validates the metadata, stores the client, and
   * returns the response body (with the secret, shown this once).
   */
  async register(metadata: unknown, now: number): Promise<Record<string, unknown>> {
    const request = parseRegistration(metadata);
    const clientId = randomToken('fmb_client_');
    const secret = request.tokenEndpointAuthMethod === 'none' ? undefined : randomToken('fmb_secret_');
    const client: RegisteredClient = {
      clientId,
      clientSecretHash: secret === undefined ? null : sha256Hex(secret),
      tokenEndpointAuthMethod: request.tokenEndpointAuthMethod,
      redirectUris: request.redirectUris,
      grantTypes: request.grantTypes,
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
  readonly grantTypes: string[];
  readonly clientName: string | null;
  readonly clientUri: string | null;
}

function parseRegistration(metadata: unknown): RegistrationRequest {
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new OAuthError('invalid_client_metadata', 'client metadata must be a JSON object');
  }
  const doc = metadata as Record<string, unknown>;
  const redirectUris = doc.redirect_uris;
  if (!Array.isArray(redirectUris) || redirectUris.length === 0 || !redirectUris.every((uri) => typeof uri === 'string')) {
    throw new OAuthError('invalid_redirect_uri', 'redirect_uris must be a non-empty array of strings');
  }
  if (redirectUris.length > 20) throw new OAuthError('invalid_redirect_uri', 'at most 20 redirect URIs');
  for (const uri of redirectUris) {
    const problem = redirectUriProblem(uri);
    if (problem !== undefined) throw new OAuthError('invalid_redirect_uri', `redirect URI ${uri}: ${problem}`);
  }
  // RFC 7591 §2: the default method is client_secret_basic.
  const method = doc.token_endpoint_auth_method ?? 'client_secret_basic';
  if (typeof method !== 'string' || !AUTH_METHODS.includes(method as TokenEndpointAuthMethod)) {
    throw new OAuthError('invalid_client_metadata', `token_endpoint_auth_method must be one of ${AUTH_METHODS.join(', ')}`);
  }
  const grantTypes = doc.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grantTypes) || grantTypes.length === 0 || !grantTypes.every((type) => typeof type === 'string' && GRANT_TYPES.has(type))) {
    throw new OAuthError('invalid_client_metadata', 'grant_types may hold only authorization_code and refresh_token');
  }
  if (!grantTypes.includes('authorization_code')) {
    throw new OAuthError('invalid_client_metadata', 'grant_types must include authorization_code');
  }
  const responseTypes = doc.response_types ?? ['code'];
  if (!Array.isArray(responseTypes) || !responseTypes.every((type) => type === 'code')) {
    throw new OAuthError('invalid_client_metadata', 'response_types may hold only code');
  }
  const clientName = optionalString(doc.client_name, 'client_name', 200);
  const clientUri = optionalString(doc.client_uri, 'client_uri', 2000);
  if (clientUri !== null && !/^https?:\/\//.test(clientUri)) {
    throw new OAuthError('invalid_client_metadata', 'client_uri must be an http(s) URL');
  }
  return {
    redirectUris: [...new Set(redirectUris)],
    tokenEndpointAuthMethod: method as TokenEndpointAuthMethod,
    grantTypes: [...new Set(grantTypes as string[])],
    clientName,
    clientUri,
  };
}

function optionalString(value: unknown, name: string, maxLength: number): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length > maxLength) {
    throw new OAuthError('invalid_client_metadata', `${name} must be a string of at most ${maxLength} characters`);
  }
  return value.trim() === '' ? null : value.trim();
}
