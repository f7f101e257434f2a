import type { EventId, EventStore, JSONRPCMessage, StreamId } from '@modelcontextprotocol/server';

interface StoredEvent {
  readonly streamId: StreamId;
  readonly seq: number;
  readonly message: JSONRPCMessage;
  readonly at: number;
}

/**
 * One session's SSE events, kept so a client that lost a stream can resume
 * it with `Last-Event-ID` (2025-11-25 resumability). Bounded in count and
 * age: a client that stays away longer re-sends its request instead.
 * Event ids are `<stream>#<sequence>`, so the stream of any id is known.
 */
export class SessionEventStore implements EventStore {
  private seq = 0;
  private readonly events: StoredEvent[] = [];

  constructor(
    private readonly maxEvents = 256,
    private readonly maxAgeMs = 5 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const seq = ++this.seq;
    const at = this.now();
    this.events.push({ streamId, seq, message, at });
    let drop = 0;
    while (drop < this.events.length && (this.events.length - drop > this.maxEvents || (this.events[drop] as StoredEvent).at < at - this.maxAgeMs)) drop++;
    if (drop > 0) this.events.splice(0, drop);
    return Promise.resolve(`${streamId}#${seq}`);
  }

  getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return Promise.resolve(parseEventId(eventId)?.streamId);
  }

  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    const last = parseEventId(lastEventId);
    if (last === undefined) throw new Error('unknown event id');
    for (const event of this.events) {
      // The priming event carries no message; nothing to replay for it.
      if (event.streamId !== last.streamId || event.seq <= last.seq || !('jsonrpc' in event.message)) continue;
      await send(`${event.streamId}#${event.seq}`, event.message);
    }
    return last.streamId;
  }
}

function parseEventId(eventId: EventId): { streamId: StreamId; seq: number } | undefined {
  const hash = eventId.lastIndexOf('#');
  const seq = Number(eventId.slice(hash + 1));
  if (hash <= 0 || !Number.isSafeInteger(seq)) return undefined;
  return { streamId: eventId.slice(0, hash), seq };
}
