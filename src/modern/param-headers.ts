import type { IncomingMessage } from 'node:http';
import type { Tool } from '@modelcontextprotocol/server';
import { decodeHeaderValue } from './validate.js';

/** A tool argument mirrored into an `Mcp-Param-{name}` header (SEP-2243 `x-mcp-header`). */
export interface ParamHeader {
  readonly name: string;
  /** The chain of `properties` keys from the schema root to the argument. */
  readonly path: readonly string[];
}

/** The `x-mcp-header` annotations of a tool's input schema, statically reachable through `properties` only. */
export function paramHeadersOf(tool: Tool): ParamHeader[] {
  const found: ParamHeader[] = [];
  const walk = (schema: unknown, path: string[]): void => {
    const properties = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
    if (typeof properties !== 'object' || properties === null) return;
    for (const [key, property] of Object.entries(properties)) {
      const header = (property as Record<string, unknown> | undefined)?.['x-mcp-header'];
      if (typeof header === 'string' && header !== '') found.push({ name: header, path: [...path, key] });
      walk(property, [...path, key]);
    }
  };
  walk(tool.inputSchema, []);
  return found;
}

/**
 * Checks the `Mcp-Param-*` headers of a `tools/call` against its arguments:
 * a value in the body needs its header, a header needs the same value in
 * the body (numbers compared as numbers), and a header must be a valid (or
 * validly Base64-encoded) header value. Returns what is wrong, or undefined.
 */
export function paramHeaderMismatch(req: IncomingMessage, headers: readonly ParamHeader[], args: unknown): string | undefined {
  for (const { name, path } of headers) {
    let value: unknown = args;
    for (const key of path) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
    const raw = req.headers[`mcp-param-${name.toLowerCase()}`];
    const text = Array.isArray(raw) ? raw[0] : raw;
    if (value === undefined || value === null) {
      if (text !== undefined) return `Mcp-Param-${name} header is present but the argument is not`;
      continue;
    }
    if (text === undefined) return `Mcp-Param-${name} header is required for argument ${path.join('.')}`;
    const decoded = decodeHeaderValue(text);
    if (decoded === undefined) return `Mcp-Param-${name} header value is malformed`;
    if (!sameValue(decoded, value)) return `Mcp-Param-${name} header value '${decoded}' does not match the argument`;
  }
  return undefined;
}

function sameValue(header: string, value: unknown): boolean {
  if (typeof value === 'string') return header === value;
  if (typeof value === 'number') return header.trim() !== '' && Number(header) === value;
  if (typeof value === 'boolean') return header === String(value);
  return false;
}
