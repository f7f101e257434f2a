/** The JSON-RPC codes the broker sends: one meaning each, the SDK's where it has one, and the values clients already rely on. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolErrorCode } from '@modelcontextprotocol/server';
import { JsonRpcCode } from '../../src/errors/jsonrpc-codes.js';

test('no two meanings share a code', () => {
  const byCode = new Map<number, string[]>();
  for (const [name, code] of Object.entries(JsonRpcCode)) byCode.set(code, [...(byCode.get(code) ?? []), name]);
  assert.deepEqual(
    [...byCode.values()].filter((names) => names.length > 1),
    [],
  );
});

test('the codes JSON-RPC and MCP define are the SDK’s', () => {
  assert.equal(JsonRpcCode.parseError, ProtocolErrorCode.ParseError);
  assert.equal(JsonRpcCode.invalidRequest, ProtocolErrorCode.InvalidRequest);
  assert.equal(JsonRpcCode.methodNotFound, ProtocolErrorCode.MethodNotFound);
  assert.equal(JsonRpcCode.invalidParams, ProtocolErrorCode.InvalidParams);
  assert.equal(JsonRpcCode.internalError, ProtocolErrorCode.InternalError);
  assert.equal(JsonRpcCode.missingRequiredClientCapability, ProtocolErrorCode.MissingRequiredClientCapability);
  assert.equal(JsonRpcCode.unsupportedProtocolVersion, ProtocolErrorCode.UnsupportedProtocolVersion);
});

test('the wire values clients see are the SDK transport’s: -32000 for a refused HTTP request, -32001 for an unknown session, -32020 for a header mismatch', () => {
  assert.equal(JsonRpcCode.requestRefused, -32000);
  assert.equal(JsonRpcCode.sessionNotFound, -32001);
  assert.equal(JsonRpcCode.headerMismatch, -32020);
  assert.equal(JsonRpcCode.upstreamTimeout, -32003);
});
