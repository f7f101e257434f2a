import { ProtocolErrorCode } from '@modelcontextprotocol/server';

/**
 * Every JSON-RPC error code the broker itself sends, one name per meaning.
 * The codes JSON-RPC and MCP define come from the SDK; the broker's own sit
 * in the range JSON-RPC leaves to servers (-32000 to -32099), clear of the
 * ones MCP uses there, and each means one thing only.
 */
const CODES = {
  parseError: ProtocolErrorCode.ParseError,
  invalidRequest: ProtocolErrorCode.InvalidRequest,
  methodNotFound: ProtocolErrorCode.MethodNotFound,
  invalidParams: ProtocolErrorCode.InvalidParams,
  /** The broker failed, or the child ended or was replaced before it answered. */
  internalError: ProtocolErrorCode.InternalError,
  missingRequiredClientCapability: ProtocolErrorCode.MissingRequiredClientCapability,
  unsupportedProtocolVersion: ProtocolErrorCode.UnsupportedProtocolVersion,
  /** 2026-07-28: `Mcp-Method`, `Mcp-Name` or `Mcp-Param-*` disagree with the body (the SDK answers it too; its enum lacks it). */
  headerMismatch: -32020,
  /** An HTTP request refused before it is a JSON-RPC call (origin, method, media type, credentials, capacity): the SDK transport's code for these. */
  requestRefused: -32000,
  /** `Mcp-Session-Id` names no live session: the SDK transport's code for it. */
  sessionNotFound: -32001,
  /** The child did not answer within the broker's request timeout (was -32001, which also meant session not found). */
  upstreamTimeout: -32003,
  /** The broker's tool policy refuses this tool (or prompt, or resource) for this caller; `data.policy` names the rule. */
  refusedByPolicy: -32010,
} as const;

/** Plain numbers, so a code read off the wire compares with them. */
export const JsonRpcCode: Readonly<Record<keyof typeof CODES, number>> = CODES;
