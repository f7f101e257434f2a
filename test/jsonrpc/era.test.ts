/**
 * The era classification's shortcut for everyday legacy traffic gives the
 * SDK classifier's verdict, to the letter, for every message and header.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyInboundRequest, type InboundClassificationOutcome } from '@modelcontextprotocol/server';
import { classifyRequest } from '../../src/jsonrpc/era.js';
import { messageVariants } from '../support/jsonrpc-variants.js';

const HEADERS = [undefined, '2025-11-25', ' 2025-06-18\t', '2026-07-28', ' 2026-07-28', '2027-01-01', 'garbage', ''];

/** What the broker reads of an outcome: its kind and, for a refusal, its status and code. */
function verdict(outcome: InboundClassificationOutcome): unknown {
  return outcome.kind === 'reject' ? { kind: outcome.kind, status: outcome.httpStatus, code: outcome.code } : outcome;
}

test('classifyRequest gives the SDK classifier’s outcome for every message under every protocol-version header', () => {
  let legacy = 0;
  let cases = 0;
  for (const body of messageVariants()) {
    for (const protocolVersionHeader of HEADERS) {
      for (const httpMethod of ['POST', 'GET']) {
        const request = { httpMethod, body, ...(protocolVersionHeader === undefined ? {} : { protocolVersionHeader }) };
        const expected = classifyInboundRequest(request);
        assert.deepEqual(
          verdict(classifyRequest(request)),
          verdict(expected),
          `${httpMethod} ${String(protocolVersionHeader)} ${JSON.stringify(body)}`,
        );
        cases++;
        if (expected.kind === 'legacy' && httpMethod === 'POST') legacy++;
      }
    }
  }
  assert.ok(legacy > 1000 && legacy < cases / 2, `${legacy} legacy POSTs of ${cases} cases`);
});
