/** JSON-RPC messages, valid and not, to hold the broker's own checks to the SDK's verdicts. */
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  PROTOCOL_VERSION_META_KEY,
  RELATED_TASK_META_KEY,
} from '@modelcontextprotocol/server';

export const VALID_MESSAGES: readonly Record<string, unknown>[] = [
  { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } },
  { jsonrpc: '2.0', id: 'a-1', method: 'ping' },
  { jsonrpc: '2.0', id: 0, method: 'tools/list', params: { _meta: { progressToken: 'p', other: 1 } } },
  { jsonrpc: '2.0', id: -7, method: 'x', params: { _meta: { progressToken: 3, [RELATED_TASK_META_KEY]: { taskId: 't' } } } },
  { jsonrpc: '2.0', method: 'notifications/initialized' },
  { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 0.5, _meta: {} } },
  { jsonrpc: '2.0', id: 2, result: {} },
  { jsonrpc: '2.0', id: 'r', result: { content: [], _meta: { 'io.modelcontextprotocol/serverInfo': 'not an object' } } },
  { jsonrpc: '2.0', id: 3, error: { code: -32601, message: 'Method not found', data: { any: true } } },
  { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error', extra: 1 } },
  {
    jsonrpc: '2.0',
    id: 4,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } },
  },
  {
    jsonrpc: '2.0',
    id: 5,
    method: 'tools/call',
    params: {
      name: 'echo',
      arguments: {},
      _meta: {
        [PROTOCOL_VERSION_META_KEY]: '2026-07-28',
        [CLIENT_INFO_META_KEY]: { name: 'c', version: '1' },
        [CLIENT_CAPABILITIES_META_KEY]: {},
      },
    },
  },
];

/** What each member is replaced with, in turn. */
const ODD_VALUES: readonly unknown[] = [
  undefined,
  null,
  true,
  0,
  1.5,
  -0,
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  '',
  'text',
  '2.0',
  [],
  [1],
  {},
  { taskId: 't' },
  { progressToken: 1.5 },
  { _meta: null },
  { _meta: { progressToken: [] } },
  { _meta: { [RELATED_TASK_META_KEY]: {} } },
  { code: 1, message: 'm' },
  { code: 1.5, message: 'm' },
  { code: 1 },
];

/** Every valid message, and each of them with one member (at any depth) replaced, removed, or one added. */
export function messageVariants(): unknown[] {
  const out: unknown[] = [null, 'text', 42, [], [VALID_MESSAGES[0]], {}];
  const mutate = (value: Record<string, unknown>, path: readonly string[]): void => {
    for (const key of Object.keys(value)) {
      const member = value[key];
      for (const odd of ODD_VALUES) out.push(replaced(path, key, odd));
      const without = structuredClone(root);
      delete at(without, path)[key];
      out.push(without);
      if (typeof member === 'object' && member !== null && !Array.isArray(member))
        mutate(member as Record<string, unknown>, [...path, key]);
    }
    for (const extra of ['id', 'method', 'result', 'error', 'params', 'extra']) if (!(extra in value)) out.push(replaced(path, extra, 1));
  };
  let root: Record<string, unknown> = {};
  const replaced = (path: readonly string[], key: string, odd: unknown): unknown => {
    const copy = structuredClone(root);
    at(copy, path)[key] = odd;
    return copy;
  };
  for (const message of VALID_MESSAGES) {
    root = message;
    out.push(message);
    mutate(message, []);
  }
  return out;
}

function at(value: Record<string, unknown>, path: readonly string[]): Record<string, unknown> {
  return path.reduce((inner, key) => inner[key] as Record<string, unknown>, value);
}
