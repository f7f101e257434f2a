import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCNotification,
  JSONRPCRequest,
  JSONRPCResultResponse,
} from '@modelcontextprotocol/server';
import { RELATED_TASK_META_KEY } from '@modelcontextprotocol/server';

/** The four JSON-RPC messages. */
export type MessageKind = 'request' | 'notification' | 'result' | 'error';

/**
 * Which message `value` is under the SDK's JSON-RPC schemas
 * (`JSONRPCMessageSchema`: strict objects, integer or string ids, object
 * params and results), or undefined when it is none: the verdicts of the
 * SDK's `isJSONRPC*` guards, without zod. Those guards parse on every call and
 * were a tenth of a busy broker's CPU; test/jsonrpc/messages.test.ts holds
 * this function to them, message by message.
 */
export function messageKind(value: unknown): MessageKind | undefined {
  if (!isPlainObject(value) || value.jsonrpc !== '2.0') return undefined;
  if ('method' in value) {
    if (typeof value.method !== 'string' || !validParams(value.params)) return undefined;
    if (!('id' in value)) return onlyKeys(value, NOTIFICATION_KEYS) ? 'notification' : undefined;
    return isRequestId(value.id) && onlyKeys(value, REQUEST_KEYS) ? 'request' : undefined;
  }
  if ('result' in value) {
    return isRequestId(value.id) && validResult(value.result) && onlyKeys(value, RESULT_KEYS) ? 'result' : undefined;
  }
  if ('error' in value) {
    const idOk = value.id === undefined || isRequestId(value.id);
    return idOk && validError(value.error) && onlyKeys(value, ERROR_KEYS) ? 'error' : undefined;
  }
  return undefined;
}

/** Whether `value` is a JSON-RPC message under the SDK's schemas (see `messageKind`). */
export function isJsonRpcMessage(value: unknown): value is JSONRPCMessage {
  return messageKind(value) !== undefined;
}

/*
 * By their keys, for messages already known to be JSON-RPC (checked at the
 * edge by the era classifier or `messageKind`): which kind each one is.
 */

export function isRequest(message: JSONRPCMessage): message is JSONRPCRequest {
  return 'method' in message && 'id' in message;
}

export function isNotification(message: JSONRPCMessage): message is JSONRPCNotification {
  return 'method' in message && !('id' in message);
}

export function isResultResponse(message: JSONRPCMessage): message is JSONRPCResultResponse {
  return 'result' in message;
}

export function isErrorResponse(message: JSONRPCMessage): message is JSONRPCErrorResponse {
  return 'error' in message && !('method' in message);
}

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
const NOTIFICATION_KEYS = new Set(['jsonrpc', 'method', 'params']);
const RESULT_KEYS = new Set(['jsonrpc', 'id', 'result']);
const ERROR_KEYS = new Set(['jsonrpc', 'id', 'error']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `.strict()`: no member besides the schema's own. */
function onlyKeys(value: Record<string, unknown>, keys: ReadonlySet<string>): boolean {
  for (const key in value) if (!keys.has(key)) return false;
  return true;
}

function isRequestId(value: unknown): boolean {
  return typeof value === 'string' || Number.isSafeInteger(value);
}

/** Optional; an object whose `_meta`, if any, is an object with a valid progress token and related task. */
function validParams(params: unknown): boolean {
  if (params === undefined) return true;
  if (!isPlainObject(params)) return false;
  const meta = params._meta;
  if (meta === undefined) return true;
  if (!isPlainObject(meta)) return false;
  if (meta.progressToken !== undefined && !isRequestId(meta.progressToken)) return false;
  const task = meta[RELATED_TASK_META_KEY];
  return task === undefined || (isPlainObject(task) && typeof task.taskId === 'string');
}

/** An object whose `_meta`, if any, is an object (its server info falls back rather than fails). */
function validResult(result: unknown): boolean {
  return isPlainObject(result) && (result._meta === undefined || isPlainObject(result._meta));
}

function validError(error: unknown): boolean {
  return isPlainObject(error) && Number.isSafeInteger(error.code) && typeof error.message === 'string';
}
