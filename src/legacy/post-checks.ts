/**
 * The checks the SDK's Streamable HTTP server transport makes on a POST and on
 * a resuming GET, for the requests the session answers itself (its own POST
 * streams): the same order, statuses, codes and messages, so a client cannot
 * tell which of the two served it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isJsonContentType, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/server';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import { sendJsonRpcError } from '../http/errors.js';

/** The SDK transport's bound on a batch. */
const MAX_BATCH_SIZE = 100;

/** A request refused as the SDK transport refuses it. */
export interface TransportRefusal {
  readonly status: number;
  readonly code: number;
  readonly message: string;
}

/** Why a POST of `messageCount` messages to the session `sessionId` is refused; undefined when it is not. */
export function checkPost(req: IncomingMessage, sessionId: string, messageCount: number): TransportRefusal | undefined {
  const accept = req.headers.accept;
  if (accept?.includes('application/json') !== true || !accept.includes('text/event-stream')) {
    return refused(406, 'Not Acceptable: Client must accept both application/json and text/event-stream');
  }
  if (!isJsonContentType(req.headers['content-type'] ?? null)) {
    return refused(415, 'Unsupported Media Type: Content-Type must be application/json');
  }
  if (messageCount > MAX_BATCH_SIZE) {
    return { status: 400, code: JsonRpcCode.invalidRequest, message: `Invalid Request: Batch must not exceed ${MAX_BATCH_SIZE} messages` };
  }
  return checkSession(req, sessionId);
}

/** Why a GET resuming a stream of the session `sessionId` is refused; undefined when it is not. */
export function checkResumption(req: IncomingMessage, sessionId: string): TransportRefusal | undefined {
  if (req.headers.accept?.includes('text/event-stream') !== true) {
    return refused(406, 'Not Acceptable: Client must accept text/event-stream');
  }
  return checkSession(req, sessionId);
}

/** The session id and the protocol version header, checked after initialize as the transport does. */
function checkSession(req: IncomingMessage, sessionId: string): TransportRefusal | undefined {
  const session = joined(req.headers['mcp-session-id']);
  if (session === undefined || session === '') return refused(400, 'Bad Request: Mcp-Session-Id header is required');
  if (session !== sessionId) return SESSION_NOT_FOUND;
  const version = joined(req.headers['mcp-protocol-version']);
  if (version !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
    return refused(
      400,
      `Bad Request: Unsupported protocol version: ${version} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
    );
  }
  return undefined;
}

/** What a request to a session that has ended gets. */
export const SESSION_NOT_FOUND: TransportRefusal = { status: 404, code: JsonRpcCode.sessionNotFound, message: 'Session not found' };

/** What a resumption of a stream that is still connected gets. */
export const STREAM_CONNECTED: TransportRefusal = refused(409, 'Conflict: Stream already has an active connection');

export function sendRefusal(res: ServerResponse, refusal: TransportRefusal): void {
  sendJsonRpcError(res, refusal.status, refusal.code, refusal.message);
}

/** A repeated header is its values joined, as the transport's Web `Headers` give it. */
function joined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function refused(status: number, message: string): TransportRefusal {
  return { status, code: JsonRpcCode.requestRefused, message };
}
