/**
 * What today's MCP clients send when they sign in, from their published
 * metadata documents, registration bodies and documented behaviour (2026):
 * one fixture per client and per branch where the client's behaviour
 * depends on the server. Documents are served from loopback under a path
 * that names the real host (`/claude.ai/oauth/...`), with `client_id` set to
 * that loopback URL as the draft requires; everything else is as published.
 */

/** How the client authenticates at the token endpoint. */
export type ZooAuth = 'none' | 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';

export interface ZooClient {
  /** Test name: the client and the branch. */
  readonly name: string;
  /** A Client ID Metadata Document it publishes, by path; null when it only registers. */
  readonly document: { readonly path: string; readonly body: (clientId: string, jwksUri: string) => Record<string, unknown> } | null;
  /** Its RFC 7591 body, when it registers (or falls back to registering when the server offers no CIMD). */
  readonly registration: Record<string, unknown> | null;
  /** The redirect URI it sends; `{port}` is a loopback port it picked. */
  readonly redirectUri: string;
  readonly auth: ZooAuth;
  /** `scope` on the authorization request, when it sends one. */
  readonly scope?: string;
  /** How many times it sends `resource` (on authorize and token). */
  readonly resourceCount: 0 | 1 | 2;
  /** A browser-based client's origin: every request carries it and every answer must allow it. */
  readonly origin?: string;
  readonly era: 'legacy' | 'modern';
}

const CLAUDE_DOCUMENT = {
  path: '/claude.ai/oauth/mcp-oauth-client-metadata',
  body: (clientId: string) => ({
    client_id: clientId,
    client_name: 'Claude',
    client_uri: 'https://claude.ai',
    logo_uri: 'https://claude.ai/images/claude_app_icon.png',
    redirect_uris: ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback'],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }),
};

const CHATGPT_DOCUMENT = {
  path: '/chatgpt.com/oauth/tU1UVEq8rRTK/client.json',
  body: (clientId: string, jwksUri: string) => ({
    client_id: clientId,
    client_name: 'ChatGPT',
    client_uri: 'https://chatgpt.com/',
    redirect_uris: ['https://chatgpt.com/connector_platform_oauth_redirect', 'https://chatgpt.com/connector/oauth/tU1UVEq8rRTK'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'],
    token_endpoint_auth_signing_alg: 'RS256',
    jwks_uri: jwksUri,
  }),
};

/** A ChatGPT connector whose document offers none beside private_key_jwt and publishes no keys: a public client. */
const CHATGPT_KEYLESS_DOCUMENT = {
  path: '/chatgpt.com/oauth/aB3dEf6hIj9k/client.json',
  body: (clientId: string) => ({
    client_id: clientId,
    client_name: 'ChatGPT',
    client_uri: 'https://chatgpt.com/',
    redirect_uris: ['https://chatgpt.com/connector_platform_oauth_redirect', 'https://chatgpt.com/connector/oauth/aB3dEf6hIj9k'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'],
  }),
};

const VSCODE_DOCUMENT = {
  path: '/vscode.dev/oauth/client-metadata.json',
  body: (clientId: string) => ({
    client_id: clientId,
    client_name: 'Visual Studio Code',
    client_uri: 'https://code.visualstudio.com',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1:33418/', 'https://vscode.dev/redirect'],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }),
};

const VSCODE_REGISTRATION = {
  client_name: 'Visual Studio Code',
  application_type: 'native',
  redirect_uris: ['http://127.0.0.1:33418/', 'https://vscode.dev/redirect'],
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
};

/** Clients run against the broker as configured by default (CIMD on; Inspector's origin allowed). */
export const ZOO: readonly ZooClient[] = [
  {
    name: 'Claude.ai connector (CIMD, jwt-bearer among its grant types, scope=claudeai)',
    document: CLAUDE_DOCUMENT,
    registration: null,
    redirectUri: 'https://claude.ai/api/mcp/auth_callback',
    auth: 'none',
    scope: 'claudeai',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'Claude Desktop connector (CIMD, the claude.com callback)',
    document: CLAUDE_DOCUMENT,
    registration: null,
    redirectUri: 'https://claude.com/api/mcp/auth_callback',
    auth: 'none',
    scope: 'claudeai',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'ChatGPT (CIMD, private_key_jwt, the iss-aware callback)',
    document: CHATGPT_DOCUMENT,
    registration: null,
    redirectUri: 'https://chatgpt.com/connector_platform_oauth_redirect',
    auth: 'private_key_jwt',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'ChatGPT (CIMD without published keys: none from its offered methods, the per-connector callback)',
    document: CHATGPT_KEYLESS_DOCUMENT,
    registration: null,
    redirectUri: 'https://chatgpt.com/connector/oauth/aB3dEf6hIj9k',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'VS Code (CIMD, device_code among its grant types, port 33418)',
    document: VSCODE_DOCUMENT,
    registration: null,
    redirectUri: 'http://127.0.0.1:33418/',
    auth: 'none',
    resourceCount: 1,
    era: 'modern',
  },
  {
    name: 'VS Code (CIMD, 33418 busy: another port)',
    document: VSCODE_DOCUMENT,
    registration: null,
    redirectUri: 'http://127.0.0.1:{port}/',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'Claude Code (CIMD, http://localhost on any port)',
    document: {
      path: '/claude.ai/oauth/claude-code-client-metadata',
      body: (clientId: string) => ({
        client_id: clientId,
        client_name: 'Claude Code',
        client_uri: 'https://claude.com/claude-code',
        redirect_uris: ['http://localhost/callback', 'http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      }),
    },
    registration: null,
    redirectUri: 'http://localhost:{port}/callback',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'Goose (CIMD lists http://localhost, sends 127.0.0.1 with a port; authorization_code only)',
    document: {
      path: '/goose-docs.ai/oauth/client-metadata.json',
      body: (clientId: string) => ({
        client_id: clientId,
        client_name: 'goose',
        client_uri: 'https://goose-docs.ai',
        redirect_uris: ['http://localhost/oauth_callback'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      }),
    },
    registration: null,
    redirectUri: 'http://127.0.0.1:{port}/oauth_callback',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'Codex CLI (CIMD, loopback, --oauth-resource: resource sent twice)',
    document: {
      path: '/chatgpt.com/oauth/codex/client-metadata.json',
      body: (clientId: string) => ({
        client_id: clientId,
        client_name: 'Codex',
        redirect_uris: ['http://localhost/callback', 'http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      }),
    },
    registration: null,
    redirectUri: 'http://127.0.0.1:{port}/callback',
    auth: 'none',
    resourceCount: 2,
    era: 'legacy',
  },
  {
    name: 'MCP Inspector (web, direct mode: DCR, token and revoke from the browser)',
    document: null,
    registration: {
      redirect_uris: ['http://localhost:6274/oauth/callback', 'http://localhost:6274/oauth/callback/debug'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP Inspector',
      client_uri: 'https://github.com/modelcontextprotocol/inspector',
    },
    redirectUri: 'http://localhost:6274/oauth/callback',
    auth: 'none',
    resourceCount: 1,
    origin: 'http://localhost:6274',
    era: 'legacy',
  },
  {
    name: 'Cursor (DCR, cursor:// callback)',
    document: null,
    registration: {
      client_name: 'Cursor',
      redirect_uris: ['cursor://anysphere.cursor-mcp/oauth/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    redirectUri: 'cursor://anysphere.cursor-mcp/oauth/callback',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'Cursor (DCR, https callback)',
    document: null,
    registration: {
      client_name: 'Cursor',
      redirect_uris: ['https://cursor.com/oauth/callback', 'cursor://anysphere.cursor-mcp/oauth/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    redirectUri: 'https://cursor.com/oauth/callback',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'Gemini CLI (DCR, localhost:7777)',
    document: null,
    registration: {
      client_name: 'Gemini CLI MCP Client',
      redirect_uris: ['http://localhost:7777/oauth/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    redirectUri: 'http://localhost:7777/oauth/callback',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'mcp-remote (DCR with software_id, localhost:3334)',
    document: null,
    registration: {
      redirect_uris: ['http://localhost:3334/oauth/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP CLI Proxy',
      client_uri: 'https://github.com/modelcontextprotocol/mcp-cli',
      software_id: '2e6dc280-f3c3-4e01-99a7-8181dbd1d23d',
      software_version: '0.1.29',
    },
    redirectUri: 'http://localhost:3334/oauth/callback',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
];

/** The same clients where the server offers no CIMD (BROKER_CIMD=off): they fall back to registration. */
export const ZOO_WITHOUT_CIMD: readonly ZooClient[] = [
  {
    name: 'Claude.ai connector, DCR fallback (jwt-bearer grant, client_secret_post, scope=claudeai)',
    document: CLAUDE_DOCUMENT,
    registration: {
      client_name: 'Claude',
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'claudeai',
    },
    redirectUri: 'https://claude.ai/api/mcp/auth_callback',
    auth: 'client_secret_post',
    scope: 'claudeai',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'VS Code, DCR fallback (application_type native, device_code grant)',
    document: VSCODE_DOCUMENT,
    registration: VSCODE_REGISTRATION,
    redirectUri: 'http://127.0.0.1:{port}/',
    auth: 'none',
    resourceCount: 1,
    era: 'legacy',
  },
  {
    name: 'a confidential DCR client sending its secret by HTTP Basic although it registered client_secret_post',
    document: null,
    registration: {
      client_name: 'Basic-minded client',
      redirect_uris: ['https://client.example/callback'],
      token_endpoint_auth_method: 'client_secret_post',
    },
    redirectUri: 'https://client.example/callback',
    auth: 'client_secret_basic',
    resourceCount: 0,
    era: 'legacy',
  },
];
