import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { EventId, JSONRPCMessage, RequestId } from '@modelcontextprotocol/server';
import { byteLength, passedBytes } from '../pool/raw-answer.js';
import type { ClientResponse } from '../pool/request-sink.js';
import { tagOf, type SessionEventStore } from './event-store.js';

/** What a client is told to wait before reconnecting a lost SSE stream. */
export const SSE_RETRY_MS = 500;

/** A comment line this often keeps an idle stream's connection from being cut (the SDK transport's interval). */
const KEEP_ALIVE_MS = 15_000;

/**
 * How long a POST stream's head and priming event wait for the stream's first
 * message, to leave with it in one write (one wake-up of the client, one
 * segment), before they go alone.
 */
const PRIMING_HOLD_MS = 50;

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

export interface PostStreamOptions {
  readonly events: SessionEventStore;
  readonly sessionId: string;
  /** The requests of the POST, which the stream answers. */
  readonly requestIds: readonly RequestId[];
  /** Called once no answer is owed any more: every request answered (or cancelled), or the stream closed. */
  readonly onDone: (stream: PostStream) => void;
}

/**
 * The SSE stream of one legacy POST, written by the session itself rather
 * than through the SDK transport: every event is stored (with the POST's
 * request ids in its id, as the SDK path tags them) before it is written, so
 * a client that lost the connection resumes it with `Last-Event-ID` and
 * misses nothing, and the stream ends with its last answer. A child's answer
 * that passes through is written as the child's bytes, never serialised.
 */
export class PostStream {
  readonly id: string = randomUUID();
  readonly #tag: string;
  readonly #unanswered: Set<RequestId>;
  /** The connection the events go to; none while the client is away (the events are only stored). */
  #res: ServerResponse | undefined;
  #keepAliveTimer: NodeJS.Timeout | undefined;
  /** The priming event while it waits for the first message, with the head (`PRIMING_HOLD_MS`). */
  #primingHeld: string | undefined;
  #primingTimer: NodeJS.Timeout | undefined;
  #done = false;

  readonly #options: PostStreamOptions;

  constructor(options: PostStreamOptions) {
    this.#options = options;
    this.#tag = tagOf(options.requestIds);
    this.#unanswered = new Set(options.requestIds);
  }

  /** Whether a connection is attached. */
  get connected(): boolean {
    return this.#res !== undefined;
  }

  /**
   * Answers the POST with the stream. `primed`: the client's protocol version
   * takes an empty priming event (2025-11-25 on), whose id lets it resume even
   * before the first message. Without one, the head waits for the first
   * event, as on the transport's streams.
   */
  open(res: ServerResponse, primed: boolean): void {
    this.#attach(res);
    if (!primed) {
      this.#keepAlive(res);
      return;
    }
    const eventId = this.#options.events.append(this.id, this.#tag, {});
    if (this.#res === undefined) return;
    // The head and the priming event wait a moment for the first message: a quick answer leaves with them in one
    // write, the whole stream with its length. Either way the head never leaves without the event id to resume with.
    this.#primingHeld = `id: ${eventId}\nretry: ${SSE_RETRY_MS}\ndata: \n\n`;
    this.#primingTimer = setTimeout(() => this.#releasePriming(), PRIMING_HOLD_MS);
  }

  /** The first message did not come in time: the head and the priming event leave, and the stream is kept alive. */
  #releasePriming(): void {
    const priming = this.#takePriming();
    const res = this.#res;
    if (priming === undefined || res === undefined) return;
    res.write(priming);
    this.#keepAlive(res);
  }

  /** The priming event still held, if any; it is the caller's to write now. */
  #takePriming(): string | undefined {
    const priming = this.#primingHeld;
    clearTimeout(this.#primingTimer);
    this.#primingTimer = undefined;
    this.#primingHeld = undefined;
    return priming;
  }

  /** A resumption (`Last-Event-ID`) while answers are still owed: what was missed, then the stream goes on here. */
  resume(res: ServerResponse, lastEventId: EventId): void {
    this.#attach(res);
    this.#keepAlive(res);
    res.cork();
    for (const [eventId, message] of this.#options.events.eventsAfter(lastEventId)) {
      for (const part of eventParts(eventId, message)) res.write(part);
    }
    res.flushHeaders();
    res.uncork();
  }

  /** One message of the stream, answers included; `size` is its length on the child's side, when known. */
  send(message: JSONRPCMessage, size?: number): void {
    const eventId = this.#options.events.append(this.id, this.#tag, message, size);
    const answer = 'id' in message && !('method' in message);
    const res = this.#res;
    if (res !== undefined) {
      const priming = this.#takePriming();
      const parts = eventParts(eventId, message);
      if (priming !== undefined) parts.unshift(priming);
      // Nothing written yet and this answer ends the stream: the whole stream is known, and goes with its length.
      const whole = priming !== undefined && answer && this.#unanswered.size === 1 && this.#unanswered.has(message.id as RequestId);
      if (whole) res.setHeader('content-length', byteLength(parts));
      // Corked until the end of the response when this is the last answer: events and end leave as one write.
      res.cork();
      for (const part of parts) res.write(part);
    }
    if (answer) this.#answered(message.id as RequestId);
    if (res !== undefined && !res.writableEnded) {
      res.uncork();
      this.#keepAlive(res);
    }
  }

  /** The client cancelled one of the requests: no answer is owed for it, and the connection ends (it may resume for the others). */
  cancel(requestId: RequestId): void {
    if (!this.#unanswered.has(requestId)) return;
    this.#detach()?.end();
    this.#answered(requestId);
  }

  /** The session ended: the connection ends, nothing more is owed. */
  close(): void {
    this.#detach()?.end();
    this.#finish();
  }

  #answered(requestId: RequestId): void {
    this.#unanswered.delete(requestId);
    if (this.#unanswered.size > 0) return;
    this.#detach()?.end();
    this.#finish();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#options.onDone(this);
  }

  #attach(res: ServerResponse): void {
    // Set, not written: the head is made with the first write, which decides between a length and chunks.
    res.statusCode = 200;
    for (const [name, value] of Object.entries(SSE_HEADERS)) res.setHeader(name, value);
    res.setHeader('mcp-session-id', this.#options.sessionId);
    // Gone before its stream opened (its 'close' has passed): the events are only stored, for a resumption.
    if (res.destroyed) return;
    this.#res = res;
    res.once('close', () => {
      if (this.#res === res) this.#detach();
    });
  }

  /** A comment now and then, while the stream waits; not for a quick answer's stream, which ends before the first. */
  #keepAlive(res: ServerResponse): void {
    if (this.#res !== res || this.#keepAliveTimer !== undefined) return;
    this.#keepAliveTimer = setInterval(() => res.write(': keepalive\n\n'), KEEP_ALIVE_MS);
    this.#keepAliveTimer.unref();
  }

  /** Lets go of the connection (without ending it) and returns it. */
  #detach(): ServerResponse | undefined {
    const res = this.#res;
    this.#res = undefined;
    this.#takePriming();
    clearInterval(this.#keepAliveTimer);
    this.#keepAliveTimer = undefined;
    return res;
  }
}

/**
 * One event's text: a passed-through answer's bytes as they are, not
 * flattened into a string with the event's lines (written corked, the parts
 * still leave together).
 */
function eventParts(eventId: EventId, message: JSONRPCMessage): (string | Buffer)[] {
  const bytes = 'id' in message ? passedBytes(message as ClientResponse) : undefined;
  if (bytes === undefined) return [`event: message\nid: ${eventId}\ndata: ${JSON.stringify(message)}\n\n`];
  return [`event: message\nid: ${eventId}\ndata: `, ...bytes, '\n\n'];
}
