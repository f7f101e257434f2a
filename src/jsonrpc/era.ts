import {
  classifyInboundRequest,
  PROTOCOL_VERSION_META_KEY,
  type InboundClassificationOutcome,
  type InboundHttpRequest,
  type InboundLegacyRoute,
} from '@modelcontextprotocol/server';
import { messageKind } from './messages.js';

/** The first revision served per request: a header naming it or a later one is modern (the classifier's boundary). */
const FIRST_MODERN_VERSION = '2026-07-28';

/**
 * The SDK's era classification (`classifyInboundRequest`), with the verdict
 * for everyday legacy traffic worked out first without it: a POST of one
 * JSON-RPC response, or of one request (not `initialize`) or notification
 * that carries no 2026-07-28 envelope claim and whose MCP-Protocol-Version
 * header names no modern revision. The classifier checks such a body with
 * three zod parses, most of its cost; test/jsonrpc/era.test.ts holds this
 * shortcut to the classifier's verdicts.
 */
export function classifyRequest(request: InboundHttpRequest): InboundClassificationOutcome {
  return plainLegacy(request) ?? classifyInboundRequest(request);
}

function plainLegacy(request: InboundHttpRequest): InboundLegacyRoute | undefined {
  if (request.httpMethod !== 'POST') return undefined;
  const body = request.body;
  const kind = messageKind(body);
  if (kind === 'result' || kind === 'error') return { kind: 'legacy', reason: 'response' };
  if (kind === undefined) return undefined;
  const { method, params } = body as { method: string; params?: { _meta?: unknown } };
  if (kind === 'request' && method === 'initialize') return undefined;
  const meta = params?._meta;
  if (typeof meta === 'object' && meta !== null && !Array.isArray(meta) && PROTOCOL_VERSION_META_KEY in meta) return undefined;
  const header = request.protocolVersionHeader?.replace(/^[ \t]+|[ \t]+$/g, '');
  if (header !== undefined && header >= FIRST_MODERN_VERSION) return undefined;
  return {
    kind: 'legacy',
    reason: kind === 'request' ? 'no-claim' : 'notification',
    ...(header === undefined ? {} : { requestedVersion: header }),
  };
}
