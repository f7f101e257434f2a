import { OAUTH_PATHS, type OAuthContext } from './context.js';

/** RFC 8414 authorization server metadata. */
export function authorizationServerMetadata(context: OAuthContext): Record<string, unknown> {
  const url = (path: string): string => `${context.issuer}${path}`;
  return {
    issuer: context.issuer,
    authorization_endpoint: url(OAUTH_PATHS.authorize),
    token_endpoint: url(OAUTH_PATHS.token),
    registration_endpoint: url(OAUTH_PATHS.register),
    revocation_endpoint: url(OAUTH_PATHS.revoke),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
    revocation_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    client_id_metadata_document_supported: true,
  };
}

/** RFC 9728 protected resource metadata for `<public>/mcp`. */
export function protectedResourceMetadata(context: OAuthContext): Record<string, unknown> {
  return {
    resource: context.resource,
    authorization_servers: [context.issuer],
    bearer_methods_supported: ['header'],
    resource_name: `Forgejo at ${context.forgejo.baseUrl.host}`,
  };
}

/** RFC 9728 §3.1: the well-known URL is the resource's path appended to the well-known prefix. */
export function protectedResourceMetadataPath(resourcePath: string): string {
  return `${OAUTH_PATHS.protectedResourceMetadata}${resourcePath}`;
}
