import { randomBytes } from 'node:crypto';
import type { EventId, EventStore, JSONRPCMessage, RequestId, StreamId } from '@modelcontextprotocol/server';

interface StoredEvent {
  readonly streamId: StreamId;
  readonly seq: number;
  /** The request ids the stream answers, encoded; empty for the GET stream and untagged streams. */
  readonly tag: string;
  /** `{}` for a priming event, which opens a stream and is never replayed. */
  readonly message: JSONRPCMessage | PrimingEvent;
  readonly at: number;
  readonly size: number;
}

type PrimingEvent = Record<string, never>;

function isPriming(message: JSONRPCMessage | PrimingEvent): message is PrimingEvent {
  return !('jsonrpc' in message);
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
 * Event ids are `<stream>#<store>.<sequence>[.<requests>]`, so the stream of
 * any id is known, and an id of another store (the session carried on by
 * another process, whose events died with the first) is never resumed into a
 * stream whose answer cannot come. `<requests>` names the JSON-RPC ids a POST
 * stream answers: whoever gets the resumption of a stream whose process died
 * (another replica, the next process) can still answer those calls, with an
 * error, rather than leave the client waiting for its own timeout.
 */
export class SessionEventStore implements EventStore {
  #seq = 0;
  readonly #epoch = randomBytes(4).toString('hex');
  readonly #events: StoredEvent[] = [];
  #bytes = 0;
  /** Sizes the bridge knows (a child's line length), keyed by the message the transport will store. */
  readonly #sizeHints = new WeakMap<JSONRPCMessage, number>();
  /** The request ids of POSTs on their way to the transport, whose stream is not open yet. */
  readonly #expected = new Set<readonly RequestId[]>();
  /** The tag of each open POST stream, until its last answer is stored. */
  readonly #streams = new Map<StreamId, { readonly tag: string; readonly unanswered: Set<RequestId> }>();

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

  /**
   * Announces a POST carrying these requests, about to reach the transport: the
   * stream it opens next is tagged with their ids. Call the returned function
   * once the transport has answered the POST. With two POSTs of one session
   * between announcement and stream at once, which stream is whose is not
   * known, and neither is tagged: a tag is never wrong, at worst absent.
   */
  expectStream(requestIds: readonly RequestId[]): () => void {
    const ids = [...requestIds];
    this.#expected.add(ids);
    return () => this.#expected.delete(ids);
  }

  storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    return Promise.resolve(this.append(streamId, this.#tagFor(streamId, message), message, this.#sizeHints.get(message)));
  }

  /**
   * Stores an event of a stream whose tag the caller knows (the session's own
   * POST streams, `tagOf`), at once: it writes the event in the same tick.
   * The priming event is `{}`, as the SDK transport stores it.
   */
  append(streamId: StreamId, tag: string, message: JSONRPCMessage | PrimingEvent, size = ASSUMED_EVENT_SIZE): EventId {
    const seq = ++this.#seq;
    const at = this.#now();
    // Too large to keep: the id is still handed out (the event is sent), replay just skips it.
    if (size <= this.#limits.maxBytes) {
      this.#events.push({ streamId, seq, tag, message, at, size });
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
    return this.#eventId(streamId, seq, tag);
  }

  /** A priming event (no message) opens a POST's stream and takes the one announced POST's tag; its answers close it. */
  #tagFor(streamId: StreamId, message: JSONRPCMessage): string {
    const open = this.#streams.get(streamId);
    if (open !== undefined) {
      if ('id' in message && !('method' in message)) open.unanswered.delete(message.id as RequestId);
      if (open.unanswered.size === 0) this.#streams.delete(streamId);
      return open.tag;
    }
    if ('jsonrpc' in message || this.#expected.size !== 1) return '';
    const [ids] = this.#expected as Set<RequestId[]>;
    this.#expected.clear();
    if (ids === undefined || ids.length === 0) return '';
    const tag = tagOf(ids);
    this.#streams.set(streamId, { tag, unanswered: new Set(ids) });
    return tag;
  }

  getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return Promise.resolve(this.streamOf(eventId));
  }

  /** The stream of one of this store's event ids; undefined for any other id. */
  streamOf(eventId: EventId): StreamId | undefined {
    return this.#parse(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const last = this.#parse(lastEventId);
    if (last === undefined) throw new Error('unknown event id');
    for (const [eventId, message] of this.eventsAfter(lastEventId)) await send(eventId, message);
    return last.streamId;
  }

  /** The kept events of the stream of `lastEventId` that came after it, with their ids; none for an id not of this store. */
  eventsAfter(lastEventId: EventId): [EventId, JSONRPCMessage][] {
    const last = this.#parse(lastEventId);
    if (last === undefined) return [];
    const after: [EventId, JSONRPCMessage][] = [];
    for (const event of this.#events) {
      // The priming event carries no message; nothing to replay for it.
      const { message } = event;
      if (event.streamId !== last.streamId || event.seq <= last.seq || isPriming(message)) continue;
      after.push([this.#eventId(event.streamId, event.seq, event.tag), message]);
    }
    return after;
  }

  /** Whether an event id is one of this store's (else another process's, after a restart or on another replica). */
  holds(eventId: EventId): boolean {
    return this.#parse(eventId) !== undefined;
  }

  #eventId(streamId: StreamId, seq: number, tag: string): EventId {
    return tag === '' ? `${streamId}#${this.#epoch}.${seq}` : `${streamId}#${this.#epoch}.${seq}.${tag}`;
  }

  /** The stream and sequence of one of this store's ids; undefined for any other. */
  #parse(eventId: EventId): { streamId: StreamId; seq: number } | undefined {
    const hash = eventId.lastIndexOf('#');
    const [epoch, sequence] = eventId.slice(hash + 1).split('.');
    const seq = Number(sequence);
    if (hash <= 0 || epoch !== this.#epoch || !Number.isSafeInteger(seq)) return undefined;
    return { streamId: eventId.slice(0, hash), seq };
  }
}

/** The tag of a POST stream's event ids: the ids of the requests it answers, for `requestIdsOfEventId`. */
export function tagOf(requestIds: readonly RequestId[]): string {
  return requestIds.length === 0 ? '' : Buffer.from(JSON.stringify(requestIds)).toString('base64url');
}

/** At most this many request ids are read from an event id (a batch's worth). */
const MAX_TAGGED_REQUESTS = 64;

/**
 * The JSON-RPC ids of the requests whose POST stream an event id belongs to,
 * from any store's id; undefined when it names none (the GET stream, an
 * untagged stream, or not one of ours).
 */
export function requestIdsOfEventId(eventId: string): RequestId[] | undefined {
  const hash = eventId.lastIndexOf('#');
  const tag = hash <= 0 ? undefined : eventId.slice(hash + 1).split('.')[2];
  if (tag === undefined || tag === '' || tag.length > 4096) return undefined;
  let ids: unknown;
  try {
    ids = JSON.parse(Buffer.from(tag, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_TAGGED_REQUESTS) return undefined;
  const valid = ids.every((id) => (typeof id === 'string' && id.length <= 256) || (typeof id === 'number' && Number.isSafeInteger(id)));
  return valid ? (ids as RequestId[]) : undefined;
}
