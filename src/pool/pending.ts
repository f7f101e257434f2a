import type { JSONRPCRequest } from '@modelcontextprotocol/server';
import type { Child } from './child.js';
import type { InflightRequest } from './request-sink.js';

/** A child as the channel uses it: the process plus its bookkeeping. */
export interface Link {
  readonly child: Child;
  readonly generation: number;
  /** Requests forwarded to this child and not yet answered. */
  inflight: number;
  retiring: boolean;
  drained: (() => void) | undefined;
}

export interface Pending extends InflightRequest {
  readonly params: JSONRPCRequest['params'];
  readonly progressToken: string | number | undefined;
  /** True for the broker's own requests (the replay, the modern handshake, the tool list); their answers go to the sink only. */
  readonly internal: boolean;
  link: Link | undefined;
  timer: NodeJS.Timeout | undefined;
}
