import type { JSONRPCMessage, JSONRPCRequest, RequestId } from '@modelcontextprotocol/server';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { ClientState } from '../pool/client-state.js';
import type { RawAnswer } from '../pool/raw-answer.js';
import type { ClientResponse } from '../pool/request-sink.js';
import { isErrorResponse, isResultResponse } from '../jsonrpc/messages.js';

const REPLAY_ID_PREFIX = 'broker-upstream-replay-';

/** Where what the upstream answers goes on: the session's owner (the channel). */
export interface AnswerOutlet {
  message(message: JSONRPCMessage, length: number): void;
  answer(answer: RawAnswer): void;
}

/**
 * The requests an upstream session waits on the answer of: its client's (by
 * the id the upstream sees), and the broker's own replays to a new upstream
 * session. Every answer settles one of them once; a request that cannot be
 * answered any more gets an error of the broker's, unless it is being sent
 * again on a new upstream session.
 */
export class AwaitedRequests {
  readonly #client = new Map<RequestId, { readonly method: string; readonly params: JSONRPCRequest['params'] }>();
  /** Requests being sent again on a new upstream session; the old one's end does not fail them. */
  readonly #resending = new Set<RequestId>();
  readonly #replies = new Map<string, (response: ClientResponse) => void>();
  #nextReplayId = 1;
  readonly #state: ClientState;
  readonly #out: AnswerOutlet;

  constructor(state: ClientState, out: AnswerOutlet) {
    this.#state = state;
    this.#out = out;
  }

  sent(request: JSONRPCRequest): void {
    this.#client.set(request.id, { method: request.method, params: request.params });
  }

  resending(id: RequestId, now: boolean): void {
    if (now) this.#resending.add(id);
    else this.#resending.delete(id);
  }

  /** A request of the broker's own, sent by `send`; resolves with its answer. */
  replay(send: (request: JSONRPCRequest) => Promise<void>, method: string, params: JSONRPCRequest['params']): Promise<ClientResponse> {
    const id = `${REPLAY_ID_PREFIX}${this.#nextReplayId++}`;
    return new Promise<ClientResponse>((resolve, reject) => {
      this.#replies.set(id, resolve);
      send({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }).catch((error: unknown) => {
        this.#replies.delete(id);
        reject(error instanceof Error ? error : new Error(String(error)));
      });
    });
  }

  /** A message of the upstream: an answer settles its request, anything else goes on. Returns the protocol version an initialize agreed to. */
  received(message: JSONRPCMessage, length: number): string | undefined {
    let agreed: string | undefined;
    if (isResultResponse(message) || isErrorResponse(message)) {
      const reply = typeof message.id === 'string' ? this.#replies.get(message.id) : undefined;
      if (reply !== undefined) {
        this.#replies.delete(message.id as string);
        reply(message as ClientResponse);
        return isResultResponse(message) ? protocolVersionOf(message.result) : undefined;
      }
      const id = message.id;
      const request = id === undefined ? undefined : this.#client.get(id);
      if (id === undefined || request === undefined) return undefined; // answered already (an error on our side), or not ours
      this.#client.delete(id);
      if (isResultResponse(message)) {
        this.#state.succeeded(request.method, request.params, message.result);
        if (request.method === 'initialize') agreed = protocolVersionOf(message.result);
      }
    }
    this.#out.message(message, length);
    return agreed;
  }

  /** A large answer kept as the upstream's bytes: the same bookkeeping as a parsed one, then handed on as it is. */
  receivedAnswer(answer: RawAnswer): string | undefined {
    const id = answer.id;
    const request = this.#client.get(id);
    // The broker's own replayed requests and an initialize (whose result is read) take it parsed.
    if (request === undefined || request.method === 'initialize') return this.received(answer.message(), answer.length);
    this.#client.delete(id);
    // Only initialize's result is kept; the rest of the client state is the requests' params.
    this.#state.succeeded(request.method, request.params, undefined);
    this.#out.answer(answer);
    return undefined;
  }

  /** A request's response stream ended: without its answer, the request failed (cut by the upstream, or it died). */
  streamEnded(id: RequestId): void {
    if (this.#resending.has(id) || !this.#client.has(id)) return;
    this.fail(id, 'The MCP server ended the response before it answered');
  }

  /** Every client request still waiting, except those being sent again, gets an error. */
  failAll(reason: string): void {
    for (const id of [...this.#client.keys()]) if (!this.#resending.has(id)) this.fail(id, reason);
  }

  fail(id: RequestId, reason: string): void {
    if (!this.#client.delete(id)) return;
    const response: ClientResponse = { jsonrpc: '2.0', id, error: { code: JsonRpcCode.internalError, message: reason } };
    this.#out.message(response, reason.length);
  }
}

function protocolVersionOf(result: unknown): string | undefined {
  const version = (result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
  return typeof version === 'string' ? version : undefined;
}
