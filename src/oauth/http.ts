import type { IncomingMessage, ServerResponse } from 'node:http';

import { readBody } from '../http/body.js';
import { sendJson } from '../http/errors.js';
import { OAuthError, toOAuthErrorResponse } from './errors.js';

/** Bodies of OAuth requests are small; anything larger is refused unread. */
const MAX_FORM_BYTES = 64 * 1024;

function readOAuthBody(req: IncomingMessage): Promise<Buffer> {
  return readBody(req, MAX_FORM_BYTES, () => new OAuthError('invalid_request', 'request body too large', { status: 413 }));
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** An `application/x-www-form-urlencoded` body, as RFC 6749 requires of token and revocation requests. */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    throw new OAuthError('invalid_request', 'body must be application/x-www-form-urlencoded');
  }
  return new URLSearchParams((await readOAuthBody(req)).toString('utf8'));
}

export async function readJson(req: IncomingMessage): Promise<unknown> {
  if (mediaType(req) !== 'application/json') throw new OAuthError('invalid_request', 'body must be application/json');
  try {
    return JSON.parse((await readOAuthBody(req)).toString('utf8')) as unknown;
  } catch (error) {
    if (error instanceof OAuthError) throw error;
    throw new OAuthError('invalid_request', 'body is not valid JSON');
  }
}

/**
 * One parameter, at most once (RFC 6749 §3.1: parameters MUST NOT repeat).
 * An empty value counts as absent, as RFC 6749 §3.1 says.
 */
export function singleParam(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw new OAuthError('invalid_request', `parameter ${name} repeated`);
  const value = values[0];
  return value === undefined || value === '' ? undefined : value;
}

/** Renders any failure as an RFC 6749 error body. */
export function sendOAuthError(res: ServerResponse, error: unknown, headers: Record<string, string> = {}): OAuthErrorResponseInfo {
  const response = toOAuthErrorResponse(error);
  sendJson(res, response.status, response.body, { ...headers, ...response.headers });
  return { internal: response.internal, code: response.body.error };
}

export interface OAuthErrorResponseInfo {
  readonly internal: boolean;
  readonly code: string;
}

export function redirect(res: ServerResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(302, { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', ...headers });
  res.end();
}

/** Cross-origin reads of public OAuth endpoints: browser-based MCP clients call them. No cookies involved. */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'authorization, content-type, mcp-protocol-version',
  'access-control-max-age': '600',
};

export function parseCookies(req: IncomingMessage): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const index = part.indexOf('=');
    if (index <= 0) continue;
    const name = part.slice(0, index).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(index + 1).trim());
  }
  return cookies;
}

export interface CookieOptions {
  readonly secure: boolean;
  /** Seconds; omitted for a session cookie; 0 deletes. */
  readonly maxAge?: number;
}

/** HttpOnly, SameSite=Lax, Path=/: what the `__Host-` prefix needs, plus Secure on https. */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  const parts = [`${name}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Lax'];
  if (options.secure) parts.push('Secure');
  if (options.maxAge !== undefined) parts.push(`Max-Age=${options.maxAge}`);
  return parts.join('; ');
}
