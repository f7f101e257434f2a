import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import type { RawAnswer } from './raw-answer.js';

/** How a child ended. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * One upstream MCP server, seen as a message pipe. The channel only knows
 * this interface: production passes processes (src/supervisor), the unit
 * tests an in-memory child.
 */
export interface Child {
  readonly pid: number | undefined;
  /** Writes one message to the child; false once the child is gone. */
  send(message: JSONRPCMessage): boolean;
  /**
   * Set by the owner; called for each JSON-RPC message the child sends, with
   * the length of its line (what the message costs to keep or resend).
   */
  onmessage: ((message: JSONRPCMessage, lineLength: number) => void) | undefined;
  /**
   * Set by the owner; a child that can hands a large successful answer here as
   * the bytes it wrote instead of to `onmessage` (a child that cannot never calls it).
   */
  onanswer?: ((answer: RawAnswer) => void) | undefined;
  /** Settles once the child has exited (the `done` signal). */
  readonly exited: Promise<ChildExit>;
  /** Stops the child; idempotent; resolves when it is gone. */
  stop(): Promise<ChildExit>;
  /**
   * Present on a child that sends each request with the token it is given (a
   * session at a shared upstream): a rotation hands it the new token instead
   * of moving the channel to a new child.
   */
  useToken?(token: string): void;
  /**
   * Present on a child that holds its stream of messages that belong to no
   * request only on demand (a session at a shared upstream): a client now
   * listens for them; resolves once they can reach it.
   */
  listen?(): Promise<void>;
}

/** Who a child is for; everything a spawner needs to start one. */
export interface ChildSpec {
  /** The channel's name: a legacy session id, or `modern:<user>`. */
  readonly sessionId: string;
  readonly userId: string;
  readonly forgejoLogin: string;
  readonly forgejoToken: string;
}

/** Starts a child for a spec; injected into the pool. */
export type SpawnFunc = (spec: ChildSpec) => Promise<Child>;
