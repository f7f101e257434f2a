/**
 * The broker's own JSON-RPC message check: the same verdict as the SDK's
 * zod guards for every message, valid or not, so replacing them on the hot
 * path changes nothing a client or a child can observe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isJSONRPCErrorResponse, isJSONRPCNotification, isJSONRPCRequest, isJSONRPCResultResponse } from '@modelcontextprotocol/server';
import { isErrorResponse, isNotification, isRequest, isResultResponse, messageKind, type MessageKind } from '../../src/jsonrpc/messages.js';
import { VALID_MESSAGES, messageVariants } from '../support/jsonrpc-variants.js';

function sdkKind(value: unknown): MessageKind | undefined {
  const kinds: MessageKind[] = [];
  if (isJSONRPCRequest(value)) kinds.push('request');
  if (isJSONRPCNotification(value)) kinds.push('notification');
  if (isJSONRPCResultResponse(value)) kinds.push('result');
  if (isJSONRPCErrorResponse(value)) kinds.push('error');
  assert.ok(kinds.length <= 1, `the SDK calls ${JSON.stringify(value)} ${kinds.join(' and ')}`);
  return kinds[0];
}

test('messageKind gives the SDK guards’ verdict for valid messages and for every one-member change of them', () => {
  const all = messageVariants();
  assert.ok(all.length > 1000, `${all.length} cases`);
  let valid = 0;
  for (const value of all) {
    const expected = sdkKind(value);
    if (expected !== undefined) valid++;
    assert.equal(messageKind(value), expected, JSON.stringify(value));
  }
  // Both verdicts are well represented.
  assert.ok(valid > 100 && valid < all.length - 100, `${valid} valid of ${all.length}`);
});

test('the kind guards tell a checked message by its keys, as messageKind does', () => {
  for (const message of VALID_MESSAGES) {
    const kind = messageKind(message);
    const checked = message as Parameters<typeof isRequest>[0];
    assert.equal(isRequest(checked), kind === 'request');
    assert.equal(isNotification(checked), kind === 'notification');
    assert.equal(isResultResponse(checked), kind === 'result');
    assert.equal(isErrorResponse(checked), kind === 'error');
  }
});
