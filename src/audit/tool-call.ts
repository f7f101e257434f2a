import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { JSONRPCRequest } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import { passedThrough } from '../pool/raw-answer.js';
import type { ClientResponse, RequestSink } from '../pool/request-sink.js';
import type { AuditOutcome } from '../store/store.js';
import type { AuditLog, PendingAuditRecord } from './audit-log.js';

export type Era = 'legacy' | 'modern';

/** Who makes a call, and through what. */
export interface Caller {
  readonly principal: Principal;
  readonly era: Era;
  /** Legacy era: the session, by `sessionRef` (worked out once per caller, not per call). */
  readonly sessionRef?: string;
}

/** What the metrics count of tool calls. */
export interface ToolCallEvents {
  toolCall(tool: string, outcome: AuditOutcome, era: Era): void;
  toolRefused(policy: string): void;
}

/** Where a tool call is reported: the audit log (when on), the metrics (when given). */
export interface ToolCallReporting {
  readonly audit: AuditLog | undefined;
  readonly events: ToolCallEvents | undefined;
  readonly now: () => number;
}

/** The longest error text kept in a record. */
const MAX_DETAIL = 500;

/** A session is referred to by a digest of its id: the log can be matched to a session, and hands out none. */
export function sessionRef(sessionId: string): string {
  return createHash('sha256').update(sessionId).digest('hex').slice(0, 16);
}

/**
 * Wraps the sink of a `tools/call`: the answer goes to the client first, then
 * the call is counted and queued for the audit log with its outcome, duration
 * and sizes.
 */
export function reportedSink(
  sink: RequestSink,
  request: JSONRPCRequest,
  tool: string,
  caller: Caller,
  reporting: ToolCallReporting,
): RequestSink {
  const at = reporting.now();
  const started = performance.now();
  return {
    notify: (notification) => sink.notify(notification),
    serverRequest: (serverRequest) => sink.serverRequest(serverRequest),
    respond: (response, lineLength) => {
      sink.respond(response, lineLength);
      const { outcome, errorCode, detail } = outcomeOf(response);
      reporting.events?.toolCall(tool, outcome, caller.era);
      reporting.audit?.record(
        toolCallRecord(caller, tool, at, {
          outcome,
          errorCode,
          detail,
          durationMs: Math.round(performance.now() - started),
          responseBytes: lineLength ?? Buffer.byteLength(JSON.stringify(response)),
          params: request.params,
        }),
      );
    },
  };
}

/** A call the policy refused: counted, and queued for the audit log. */
export function reportRefusal(
  request: JSONRPCRequest,
  tool: string,
  caller: Caller,
  policy: string,
  answer: ClientResponse,
  reporting: ToolCallReporting,
): void {
  reporting.events?.toolRefused(policy);
  reporting.events?.toolCall(tool, 'refused', caller.era);
  reporting.audit?.record(
    toolCallRecord(caller, tool, reporting.now(), {
      outcome: 'refused',
      errorCode: 'error' in answer ? answer.error.code : null,
      detail: policy,
      durationMs: 0,
      responseBytes: Buffer.byteLength(JSON.stringify(answer)),
      params: request.params,
    }),
  );
}

/** What a call's outcome adds to its record. */
type CallOutcome = Pick<PendingAuditRecord, 'outcome' | 'errorCode' | 'detail' | 'durationMs' | 'responseBytes' | 'params'>;

/** One literal, every field in one order: the audit log's records keep one shape (fast to build and to read). */
function toolCallRecord(caller: Caller, tool: string, at: number, call: CallOutcome): PendingAuditRecord {
  const { principal } = caller;
  return {
    at,
    kind: 'tool_call',
    userId: principal.userId,
    forgejoLogin: principal.forgejoLogin,
    clientId: principal.clientId,
    era: caller.era,
    sessionRef: caller.sessionRef ?? null,
    tool,
    outcome: call.outcome,
    errorCode: call.errorCode,
    detail: call.detail,
    durationMs: call.durationMs,
    responseBytes: call.responseBytes,
    params: call.params,
  };
}

function outcomeOf(response: ClientResponse): { outcome: AuditOutcome; errorCode: number | null; detail: string | null } {
  if ('error' in response) return { outcome: 'error', errorCode: response.error.code, detail: response.error.message.slice(0, MAX_DETAIL) };
  // A result passed through as the child's bytes is parsed only when it is a tool's error.
  if (passedThrough(response)?.raw.isError === false) return { outcome: 'ok', errorCode: null, detail: null };
  const result = response.result as { isError?: unknown; content?: unknown };
  if (result.isError !== true) return { outcome: 'ok', errorCode: null, detail: null };
  // A tool's own error: its text says what went wrong.
  const first = Array.isArray(result.content) ? (result.content[0] as { type?: unknown; text?: unknown } | undefined) : undefined;
  const text = first?.type === 'text' && typeof first.text === 'string' ? first.text : 'tool error';
  return { outcome: 'error', errorCode: null, detail: text.slice(0, MAX_DETAIL) };
}
