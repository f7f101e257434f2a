import {
  classifyInboundRequest,
  PROTOCOL_VERSION_META_KEY,
  type InboundClassificationOutcome,
  type InboundHttpRequest,
  type InboundLegacyRoute,
  type InboundModernRoute,
  type JSONRPCRequest,
} from '@modelcontextprotocol/server';
import { messageKind } from './messages.js';

/** The first revision served per request: a header naming it or a later one is modern (the classifier's boundary). */
const FIRST_MODERN_VERSION = '2026-07-28';

/** How many distinct valid envelopes are remembered (clients send the same one with each request). */
const MAX_KNOWN_ENVELOPES = 1024;

/**
 * The SDK's era classification (`classifyInboundRequest`), with the verdict
 * for everyday traffic worked out first without it. The classifier checks a
 * body with three zod parses, and a 2026-07-28 request's `_meta` envelope
 * with more, most of a request's routing cost; test/jsonrpc/era.test.ts holds
 * these shortcuts to the classifier's verdicts.
 */
export class EraClassifier {
  /** `_meta` envelopes (as JSON) the classifier found valid. */
  readonly #validEnvelopes = new Set<string>();

  classify(request: InboundHttpRequest): InboundClassificationOutcome {
    const known = plainLegacy(request) ?? this.#modernWithKnownEnvelope(request);
    if (known !== undefined) return known;
    const outcome = classifyInboundRequest(request);
    // A modern request passed the envelope's validation, which depends on the envelope alone.
    if (outcome.kind === 'modern' && outcome.messageKind === 'request') this.#remember(outcome.message);
    return outcome;
  }

  /**
   * A POST of one request that passes the JSON-RPC schemas, claims a modern
   * revision the header (if any) repeats, names its method in `Mcp-Method`
   * (if at all), and carries an envelope already found valid: what the
   * classifier makes of it, without validating the envelope again.
   */
  #modernWithKnownEnvelope(request: InboundHttpRequest): InboundModernRoute | undefined {
    if (request.httpMethod !== 'POST' || messageKind(request.body) !== 'request') return undefined;
    const body = request.body as JSONRPCRequest;
    const meta = body.params?._meta;
    const claimed = meta?.[PROTOCOL_VERSION_META_KEY];
    if (typeof claimed !== 'string' || claimed < FIRST_MODERN_VERSION) return undefined;
    const header = withoutOws(request.protocolVersionHeader);
    if (header !== undefined && header !== claimed) return undefined;
    const methodHeader = withoutOws(request.mcpMethodHeader);
    if (methodHeader !== undefined && methodHeader !== body.method) return undefined;
    if (!this.#validEnvelopes.has(JSON.stringify(meta))) return undefined;
    return { kind: 'modern', messageKind: 'request', message: body, classification: { era: 'modern', revision: claimed } };
  }

  #remember(message: JSONRPCRequest): void {
    if (this.#validEnvelopes.size >= MAX_KNOWN_ENVELOPES) this.#validEnvelopes.clear();
    this.#validEnvelopes.add(JSON.stringify(message.params?._meta));
  }
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
  const header = withoutOws(request.protocolVersionHeader);
  if (header !== undefined && header >= FIRST_MODERN_VERSION) return undefined;
  return {
    kind: 'legacy',
    reason: kind === 'request' ? 'no-claim' : 'notification',
    ...(header === undefined ? {} : { requestedVersion: header }),
  };
}

/** A header value without its optional white space, as the classifier reads it. */
function withoutOws(value: string | undefined): string | undefined {
  return value?.replace(/^[ \t]+|[ \t]+$/g, '');
}
