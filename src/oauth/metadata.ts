import { CLIENT_ASSERTION_ALGORITHMS } from './client-assertion.js';
import { OAUTH_PATHS, type OAuthContext } from './context.js';

/** RFC 8414 authorization server metadata. */
export function authorizationServerMetadata(context: OAuthContext): Record<string, unknown> {
  const url = (path: string): string => `${context.issuer}${path}`;
  const cimd = context.clients.metadataDocuments;
  // private_key_jwt is for clients whose metadata document publishes keys.
  const authMethods = ['none', 'client_secret_basic', 'client_secret_post', ...(cimd ? ['private_key_jwt'] : [])];
  return {
    issuer: context.issuer,
    authorization_endpoint: url(OAUTH_PATHS.authorize),
    token_endpoint: url(OAUTH_PATHS.token),
    registration_endpoint: url(OAUTH_PATHS.register),
    revocation_endpoint: url(OAUTH_PATHS.revoke),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_methods_supported: authMethods,
    revocation_endpoint_auth_methods_supported: authMethods,
    ...(cimd ? { token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGORITHMS } : {}),
    code_challenge_methods_supported: ['S256'],
    // The broker has no scopes of its own (what a token may do is the Forgejo scope the operator set); saying so
    // keeps clients from inventing `openid profile email`. Any scope a client sends is accepted and ignored.
    scopes_supported: [],
    authorization_response_iss_parameter_supported: true,
    client_id_metadata_document_supported: cimd,
  };
}

/** RFC 9728 protected resource metadata for `<public>/mcp`. */
export function protectedResourceMetadata(context: OAuthContext): Record<string, unknown> {
  return {
    resource: context.resource,
    authorization_servers: [context.issuer],
    bearer_methods_supported: ['header'],
    scopes_supported: [],
    resource_name: `Forgejo at ${context.forgejo.baseUrl.host}`,
  };
}

/** RFC 9728 §3.1: the well-known URL is the resource's path appended to the well-known prefix. */
export function protectedResourceMetadataPath(resourcePath: string): string {
  return `${OAUTH_PATHS.protectedResourceMetadata}${resourcePath}`;
}
