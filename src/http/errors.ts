import type { ServerResponse } from 'node:http';
import { BrokerError, type BrokerErrorKind } from '../errors/errors.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import { isForgejoError, type ForgejoErrorReason } from '../forgejo/errors.js';

const HTTP_STATUS: Record<BrokerErrorKind, number> = {
  bad_request: 400,
  parse_error: 400,
  unauthenticated: 401,
  credential_revoked: 401,
  forbidden: 403,
  not_found: 404,
  payload_too_large: 413,
  internal: 500,
  child_failed: 502,
  capacity: 503,
  unavailable: 503,
};

/** JSON-RPC codes for errors the broker answers before a request reaches a child. */
const JSONRPC_CODE: Partial<Record<BrokerErrorKind, number>> = {
  bad_request: JsonRpcCode.invalidRequest,
  parse_error: JsonRpcCode.parseError,
  not_found: JsonRpcCode.sessionNotFound,
  internal: JsonRpcCode.internalError,
};

/**
 * What a Forgejo failure means on `/mcp`. None reaches it today (the credential
 * manager answers `unavailable` or `credential_revoked` itself); the mapping
 * is here so that one that does is rendered, not thrown.
 */
const FORGEJO_KIND: Record<ForgejoErrorReason, BrokerErrorKind> = {
  unreachable: 'unavailable',
  bad_response: 'unavailable',
  grant_refused: 'credential_revoked',
  access_denied: 'forbidden',
  bad_callback: 'bad_request',
};

/** The one mapping of a failure to the broker error `/mcp` renders; undefined for anything else (a bug, rethrown). */
export function toBrokerError(error: unknown): BrokerError | undefined {
  if (error instanceof BrokerError) return error;
  if (isForgejoError(error)) return new BrokerError(FORGEJO_KIND[error.reason], error.message, { cause: error });
  return undefined;
}

export interface ErrorRenderOptions {
  /** The `WWW-Authenticate` value for a 401. */
  readonly challenge?: string;
  readonly retryAfterSeconds?: number;
}

/**
 * The one place a BrokerError becomes an HTTP response on `/mcp`: the status
 * for its kind and a JSON-RPC error body without an id, as the transport spec
 * allows for refused HTTP requests.
 */
export function sendBrokerError(res: ServerResponse, error: BrokerError, options: ErrorRenderOptions = {}): void {
  sendJsonRpcError(res, HTTP_STATUS[error.kind], JSONRPC_CODE[error.kind] ?? JsonRpcCode.requestRefused, error.message, {
    ...(options.challenge === undefined ? {} : { 'www-authenticate': options.challenge }),
    ...(error.kind === 'capacity' || error.kind === 'unavailable' ? { 'retry-after': String(options.retryAfterSeconds ?? 30) } : {}),
  });
}

export function sendJsonRpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
  extra: { id?: string | number; data?: unknown } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const error = extra.data === undefined ? { code, message } : { code, message, data: extra.data };
  const body = JSON.stringify({ jsonrpc: '2.0', id: extra.id ?? null, error });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** Every JSON answer that is not a JSON-RPC message (health, OAuth, not found): never cached (RFC 6749 §5.1 asks it of OAuth). */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    pragma: 'no-cache',
    ...headers,
  });
  res.end(body);
}
