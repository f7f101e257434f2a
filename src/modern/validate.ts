import type { IncomingMessage } from 'node:http';
import type { JSONRPCRequest } from '@modelcontextprotocol/server';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/server';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';

/** The modern revisions the broker serves per request. */
export const MODERN_VERSIONS = ['2026-07-28'] as const;

/** Every version the broker speaks: modern per request, legacy after initialize. */
export const ALL_VERSIONS: readonly string[] = [...MODERN_VERSIONS, ...SUPPORTED_PROTOCOL_VERSIONS];

/** The client requests of the 2026-07-28 revision. */
const MODERN_METHODS = new Set([
  'server/discover',
  'completion/complete',
  'prompts/get',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'subscriptions/listen',
  'tools/call',
  'tools/list',
]);

/** Where `Mcp-Name` comes from, for the methods that require it. */
const NAME_SOURCE: Record<string, 'name' | 'uri'> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };

/** A refusal of a modern request, rendered as-is by the HTTP layer. */
export interface ModernRejection {
  readonly httpStatus: number;
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

/**
 * The server validation of the 2026-07-28 Streamable HTTP transport that
 * the SDK's classifier leaves to the serving path: supported revision,
 * `Mcp-Method` and `Mcp-Name` against the body, the method registry.
 */
export function validateModernRequest(req: IncomingMessage, message: JSONRPCRequest, revision: string): ModernRejection | undefined {
  if (!(MODERN_VERSIONS as readonly string[]).includes(revision)) {
    return {
      httpStatus: 400,
      code: JsonRpcCode.unsupportedProtocolVersion,
      message: 'Unsupported protocol version',
      data: { supported: ALL_VERSIONS, requested: revision },
    };
  }
  const method = header(req, 'mcp-method');
  if (method === undefined) return mismatch('the Mcp-Method header is required');
  if (method !== message.method) return mismatch(`Mcp-Method header value '${method}' does not match body value '${message.method}'`);
  const source = NAME_SOURCE[message.method];
  if (source !== undefined) {
    const raw = header(req, 'mcp-name');
    if (raw === undefined) return mismatch('the Mcp-Name header is required');
    const name = decodeHeaderValue(raw);
    if (name === undefined) return mismatch('the Mcp-Name header value is malformed');
    const bodyValue = message.params?.[source];
    if (name !== bodyValue) return mismatch(`Mcp-Name header value '${name}' does not match body value '${String(bodyValue)}'`);
  }
  if (!MODERN_METHODS.has(message.method)) {
    return { httpStatus: 404, code: JsonRpcCode.methodNotFound, message: `Method not found: ${message.method}` };
  }
  return undefined;
}

function mismatch(detail: string): ModernRejection {
  return { httpStatus: 400, code: JsonRpcCode.headerMismatch, message: `Header mismatch: ${detail}` };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const SENTINEL = /^=\?base64\?(.*)\?=$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes a header value that may use the Base64 sentinel form
 * `=?base64?…?=` (strict, padded Base64 of UTF-8); undefined when the value
 * is not a valid header value.
 */
export function decodeHeaderValue(value: string): string | undefined {
  const match = SENTINEL.exec(value);
  if (match !== null) {
    const encoded = match[1] as string;
    if (!BASE64.test(encoded)) return undefined;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(encoded, 'base64'));
    } catch {
      return undefined;
    }
  }
  // Visible ASCII, space and tab only (RFC 9110 field values).
  return /^[\x20-\x7e\t]*$/.test(value) ? value : undefined;
}
