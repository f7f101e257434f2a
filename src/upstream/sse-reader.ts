/** One server-sent event, as MCP uses them: its type, its data lines joined, and the stream's last event id when it has one. */
export interface SseEvent {
  readonly event: string | undefined;
  readonly data: string;
  readonly id: string | undefined;
}

/**
 * The SSE wire format, read as text arrives: events end on a blank line,
 * `data:` lines join with "\n", `id:` and `event:` are kept, comments and
 * `retry:` are skipped. Lines end with "\n" or "\r\n" (what every MCP
 * server writes; a lone "\r" is not a line end here). A chunk without a line
 * end is only kept, so a 10 MB event arriving in 64 KB chunks is scanned once.
 */
export class SseReader {
  readonly #onEvent: (event: SseEvent) => void;
  /** The current line's text so far, when a chunk ended inside it. */
  #partial: string[] = [];
  #data: string[] = [];
  #event: string | undefined;
  #lastEventId: string | undefined;

  constructor(onEvent: (event: SseEvent) => void) {
    this.#onEvent = onEvent;
  }

  /** The id of the last event that named one: where a resumption would start. */
  get lastEventId(): string | undefined {
    return this.#lastEventId;
  }

  push(chunk: string): void {
    let start = 0;
    let end = chunk.indexOf('\n');
    if (end === -1) {
      this.#partial.push(chunk);
      return;
    }
    if (this.#partial.length > 0) {
      this.#partial.push(chunk.slice(0, end));
      this.#line(this.#partial.join(''));
      this.#partial = [];
      start = end + 1;
      end = chunk.indexOf('\n', start);
    }
    while (end !== -1) {
      this.#line(chunk.slice(start, end));
      start = end + 1;
      end = chunk.indexOf('\n', start);
    }
    if (start < chunk.length) this.#partial.push(chunk.slice(start));
  }

  #line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
    else if (field === 'id' && !value.includes('\0')) this.#lastEventId = value;
  }

  #dispatch(): void {
    const data = this.#data;
    const event = this.#event;
    this.#data = [];
    this.#event = undefined;
    if (data.length === 0) return;
    this.#onEvent({ event, data: data.length === 1 ? (data[0] as string) : data.join('\n'), id: this.#lastEventId });
  }
}
