import type { JSONRPCRequest } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import { reportedSink, reportRefusal, sessionRef, type Caller, type Era, type ToolCallReporting } from '../audit/tool-call.js';
import type { PolicyKind } from '../config/governance.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { ClientResponse, RequestSink } from '../pool/request-sink.js';
import type { ToolPolicy } from './policy.js';
import type { ToolFilter } from './rules.js';
import { isResultResponse } from '../jsonrpc/messages.js';

/** What the gate makes of a client request: the sink to forward it with, or the answer that refuses it. */
export type GateDecision = { readonly sink: RequestSink } | { readonly refused: ClientResponse };

/** The requests that name one tool, prompt or resource, and where the name is. */
const NAMED: Readonly<Record<string, { kind: PolicyKind; param: 'name' | 'uri' }>> = {
  'tools/call': { kind: 'tools', param: 'name' },
  'prompts/get': { kind: 'prompts', param: 'name' },
  'resources/read': { kind: 'resources', param: 'uri' },
};

/** The list requests, the list in their result and the field naming each entry. */
const LISTS: Readonly<Record<string, { kind: PolicyKind; field: string; key: string }>> = {
  'tools/list': { kind: 'tools', field: 'tools', key: 'name' },
  'prompts/list': { kind: 'prompts', field: 'prompts', key: 'name' },
  'resources/list': { kind: 'resources', field: 'resources', key: 'uri' },
  'resources/templates/list': { kind: 'resources', field: 'resourceTemplates', key: 'uriTemplate' },
};

/**
 * Where every client request of both eras passes before it reaches a child:
 * the tool policy hides what a caller may not use from the lists and refuses
 * calls of it; every `tools/call` is counted and audited. The upstream's
 * list-changed notifications pass untouched: the client lists again and gets
 * the filtered list.
 */
export class CallGate {
  readonly #policy: ToolPolicy;
  readonly #reporting: ToolCallReporting;

  constructor(policy: ToolPolicy, reporting: ToolCallReporting) {
    this.#policy = policy;
    this.#reporting = reporting;
  }

  get policy(): ToolPolicy {
    return this.#policy;
  }

  /** The gate for one caller, with their rules resolved. */
  async caller(principal: Principal, era: Era, sessionId?: string): Promise<CallerGate> {
    const caller: Caller = { principal, era, ...(sessionId === undefined ? {} : { sessionRef: sessionRef(sessionId) }) };
    return new CallerGate(caller, await this.#policy.filterFor(principal), this.#policy, this.#reporting);
  }
}

export class CallerGate {
  #filter: ToolFilter;
  readonly #caller: Caller;
  readonly #policy: ToolPolicy;
  readonly #reporting: ToolCallReporting;

  constructor(caller: Caller, filter: ToolFilter, policy: ToolPolicy, reporting: ToolCallReporting) {
    this.#caller = caller;
    this.#filter = filter;
    this.#policy = policy;
    this.#reporting = reporting;
  }

  /** Re-resolves the caller's rules (a reload, a team membership that changed); cheap when nothing needs asking. */
  async refresh(): Promise<void> {
    this.#filter = await this.#policy.filterFor(this.#caller.principal);
  }

  pass(request: JSONRPCRequest, sink: RequestSink): GateDecision {
    const named = NAMED[request.method];
    if (named !== undefined) {
      const value = request.params?.[named.param];
      const name = typeof value === 'string' ? value : '';
      const policy = this.#filter.refusedBy(named.kind, name);
      if (policy !== undefined) {
        const refused = refusal(request, named.kind, name, policy);
        if (named.kind === 'tools') reportRefusal(request, name, this.#caller, policy, refused, this.#reporting);
        return { refused };
      }
      if (named.kind === 'tools' && (this.#reporting.audit !== undefined || this.#reporting.events !== undefined))
        return { sink: reportedSink(sink, request, name, this.#caller, this.#reporting) };
      return { sink };
    }
    const list = LISTS[request.method];
    if (list !== undefined && this.#filter.filters(list.kind)) return { sink: filteredList(sink, list, this.#filter) };
    return { sink };
  }
}

function refusal(request: JSONRPCRequest, kind: PolicyKind, name: string, policy: string): ClientResponse {
  const what = kind === 'tools' ? 'Tool' : kind === 'prompts' ? 'Prompt' : 'Resource';
  return {
    jsonrpc: '2.0',
    id: request.id,
    error: {
      code: JsonRpcCode.refusedByPolicy,
      message: `${what} "${name}" is not allowed by the broker's tool policy (${policy})`,
      data: { policy, [kind === 'resources' ? 'uri' : 'name']: name },
    },
  };
}

function filteredList(sink: RequestSink, list: { kind: PolicyKind; field: string; key: string }, filter: ToolFilter): RequestSink {
  return {
    notify: (notification) => sink.notify(notification),
    serverRequest: (serverRequest) => sink.serverRequest(serverRequest),
    respond: (response, lineLength) => {
      if (!isResultResponse(response)) {
        sink.respond(response, lineLength);
        return;
      }
      const result = response.result as Record<string, unknown>;
      const entries = result[list.field];
      if (!Array.isArray(entries)) {
        sink.respond(response, lineLength);
        return;
      }
      const kept = entries.filter((entry: Record<string, unknown>) => {
        const name = entry[list.key];
        return typeof name !== 'string' || filter.refusedBy(list.kind, name) === undefined;
      });
      // The line's length no longer describes the answer: the resumption store measures it again.
      sink.respond({ ...response, result: { ...result, [list.field]: kept } });
    },
  };
}
