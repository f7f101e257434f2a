import { randomBytes } from 'node:crypto';
import type { EventId, EventStore, JSONRPCMessage, StreamId } from '@modelcontextprotocol/server';

interface StoredEvent {
  readonly streamId: StreamId;
  readonly seq: number;
  readonly message: JSONRPCMessage;
  readonly at: number;
  readonly size: number;
}

/** What a message of unknown size is counted as: the small ones (progress, logs) are. */
const ASSUMED_EVENT_SIZE = 1024;

export interface EventStoreLimits {
  readonly maxEvents: number;
  readonly maxAgeMs: number;
  /** Bound on the kept messages' size; a message larger than this alone is sent but not kept. */
  readonly maxBytes: number;
}

const DEFAULT_LIMITS: EventStoreLimits = { maxEvents: 256, maxAgeMs: 5 * 60_000, maxBytes: 16 * 1024 * 1024 };

/**
 * One session's SSE events, kept so a client that lost a stream can resume
 * it with `Last-Event-ID` (2025-11-25 resumability). Bounded in count, age
 * and size (a few large tool results must not pin memory for minutes): a
 * client that stays away longer re-sends its request instead.
 * Event ids are `<stream>#<store>.<sequence>`, so the stream of any id is
 * known, and an id of another store (the session carried on by another
 * process, whose events died with the first) is refused with 400 rather than
 * resumed into a stream whose answer never comes: the client's request fails
 * instead of hanging.
 */
export class SessionEventStore implements EventStore {
  #seq = 0;
  readonly #epoch = randomBytes(4).toString('hex');
  readonly #events: StoredEvent[] = [];
  #bytes = 0;
  /** Sizes the bridge knows (a child's line length), keyed by the message the transport will store. */
  readonly #sizeHints = new WeakMap<JSONRPCMessage, number>();

  readonly #limits: EventStoreLimits;
  readonly #now: () => number;

  constructor(limits: EventStoreLimits = DEFAULT_LIMITS, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /** Tells the store the size of a message about to be sent, so it is counted as what it is. */
  hintSize(message: JSONRPCMessage, size: number): void {
    this.#sizeHints.set(message, size);
  }

  get storedBytes(): number {
    return this.#bytes;
  }

  storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const seq = ++this.#seq;
    const at = this.#now();
    const size = this.#sizeHints.get(message) ?? ASSUMED_EVENT_SIZE;
    // Too large to keep: the id is still handed out (the event is sent), replay just skips it.
    if (size <= this.#limits.maxBytes) {
      this.#events.push({ streamId, seq, message, at, size });
      this.#bytes += size;
    }
    let drop = 0;
    let dropped = 0;
    while (drop < this.#events.length) {
      const oldest = this.#events[drop] as StoredEvent;
      const overLimit = this.#events.length - drop > this.#limits.maxEvents || this.#bytes - dropped > this.#limits.maxBytes;
      if (!overLimit && oldest.at >= at - this.#limits.maxAgeMs) break;
      dropped += oldest.size;
      drop++;
    }
    if (drop > 0) {
      this.#events.splice(0, drop);
      this.#bytes -= dropped;
    }
    return Promise.resolve(this.#eventId(streamId, seq));
  }

  getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return Promise.resolve(this.#parse(eventId)?.streamId);
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const last = this.#parse(lastEventId);
    if (last === undefined) throw new Error('unknown event id');
    for (const event of this.#events) {
      // The priming event carries no message; nothing to replay for it.
      if (event.streamId !== last.streamId || event.seq <= last.seq || !('jsonrpc' in event.message)) continue;
      await send(this.#eventId(event.streamId, event.seq), event.message);
    }
    return last.streamId;
  }

  #eventId(streamId: StreamId, seq: number): EventId {
    return `${streamId}#${this.#epoch}.${seq}`;
  }

  /** The stream and sequence of one of this store's ids; undefined for any other (another process's, after a restart or on another replica). */
  #parse(eventId: EventId): { streamId: StreamId; seq: number } | undefined {
    const hash = eventId.lastIndexOf('#');
    const [epoch, sequence] = eventId.slice(hash + 1).split('.');
    const seq = Number(sequence);
    if (hash <= 0 || epoch !== this.#epoch || !Number.isSafeInteger(seq)) return undefined;
    return { streamId: eventId.slice(0, hash), seq };
  }
}
