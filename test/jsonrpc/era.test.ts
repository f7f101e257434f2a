/**
 * The era classification's shortcuts give the SDK classifier's verdict, to
 * the letter, for every message and header: everyday legacy traffic, and
 * modern requests whose envelope the classifier already found valid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyInboundRequest, type InboundClassificationOutcome, type InboundHttpRequest } from '@modelcontextprotocol/server';
import { EraClassifier } from '../../src/jsonrpc/era.js';
import { messageVariants } from '../support/jsonrpc-variants.js';

const VERSION_HEADERS = [undefined, '2025-11-25', ' 2025-06-18\t', '2026-07-28', ' 2026-07-28', '2027-01-01', 'garbage', ''];
const METHOD_HEADERS = [undefined, 'tools/call', ' tools/call ', 'tools/list'];

/** What the broker reads of an outcome: its kind and, for a refusal, its status and code. */
function verdict(outcome: InboundClassificationOutcome): unknown {
  return outcome.kind === 'reject' ? { kind: outcome.kind, status: outcome.httpStatus, code: outcome.code } : outcome;
}

function* requests(): Generator<InboundHttpRequest> {
  for (const body of messageVariants()) {
    for (const protocolVersionHeader of VERSION_HEADERS) {
      for (const mcpMethodHeader of METHOD_HEADERS) {
        for (const httpMethod of ['POST', 'GET']) {
          yield {
            httpMethod,
            body,
            ...(protocolVersionHeader === undefined ? {} : { protocolVersionHeader }),
            ...(mcpMethodHeader === undefined ? {} : { mcpMethodHeader }),
          };
        }
      }
    }
  }
}

test('EraClassifier gives the SDK classifier’s outcome for every message under every header, the first time and once it knows the envelopes', () => {
  const classifier = new EraClassifier();
  const counts = { cases: 0, legacy: 0, modern: 0 };
  // Twice over: the second pass meets every valid envelope remembered.
  for (const pass of [1, 2]) {
    for (const request of requests()) {
      const expected = classifyInboundRequest(request);
      assert.deepEqual(verdict(classifier.classify(request)), verdict(expected), `pass ${pass}: ${JSON.stringify(request)}`);
      if (pass === 2) continue;
      counts.cases++;
      if (request.httpMethod === 'POST' && expected.kind !== 'reject') counts[expected.kind]++;
    }
  }
  assert.ok(counts.legacy > 1000 && counts.modern > 100 && counts.legacy + counts.modern < counts.cases / 2, JSON.stringify(counts));
});
