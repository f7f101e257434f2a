import type {
  JSONRPCErrorResponse,
  JSONRPCNotification,
  JSONRPCRequest,
  JSONRPCResultResponse,
  RequestId,
} from '@modelcontextprotocol/server';

/** A final answer to a client request: a JSON-RPC result or error, carrying the client's own id. */
export type ClientResponse = JSONRPCResultResponse | (JSONRPCErrorResponse & { id: RequestId });

/**
 * Where the messages that belong to one client request go. The legacy front
 * writes them to the session's SSE streams, the modern front to that
 * request's own HTTP response.
 */
export interface RequestSink {
  /** A notification the child sent while working on this request (progress, log). */
  notify(notification: JSONRPCNotification): void;
  /** A request the child sent while working on this request (elicitation, sampling, roots); its id is the broker's. */
  serverRequest(request: JSONRPCRequest): void;
  /** The final answer, under the client's id; `lineLength` is its size on the child's stdout, when it came from the child. */
  respond(response: ClientResponse, lineLength?: number): void;
}

/** A client request in flight through the channel. */
export interface InflightRequest {
  readonly clientId: RequestId;
  readonly method: string;
  /** Replaced when a modern client re-attaches to a request parked for its input. */
  sink: RequestSink;
}
