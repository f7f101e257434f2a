import { byteLength } from '../pool/raw-answer.js';

/**
 * One server-sent event, as MCP uses them: its type, its data lines joined,
 * and the stream's last event id when it has one. `data` is the bytes as
 * they arrived (views into the stream's chunks, never joined), so a 10 MB
 * answer can pass on without being decoded; `text()` decodes it.
 */
export interface SseEvent {
  readonly event: string | undefined;
  readonly data: readonly Buffer[];
  /** Bytes of data. */
  readonly length: number;
  readonly id: string | undefined;
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
/** A field name MCP uses is at most 5 bytes (`event`); the longest prefix read to find it (`event: ` and a bit). */
const FIELD_PREFIX_BYTES = 8;
const LINE_FEED = Buffer.from('\n');

/** The text of an event's data. */
export function eventText(event: SseEvent): string {
  return event.data.length === 1 ? (event.data[0] as Buffer).toString('utf8') : Buffer.concat(event.data).toString('utf8');
}

/**
 * The SSE wire format, read as bytes arrive: events end on a blank line,
 * `data:` lines join with "\n", `id:` and `event:` are kept, comments and
 * `retry:` are skipped. Lines end with "\n" or "\r\n" (what every MCP
 * server writes; a lone "\r" is not a line end here). A chunk without a line
 * end is only kept, so a 10 MB event arriving in 64 KB chunks is scanned
 * once and never copied: its data is the chunks themselves.
 */
export class SseReader {
  readonly #onEvent: (event: SseEvent) => void;
  /** The current line's bytes so far, when a chunk ended inside it. */
  #partial: Buffer[] = [];
  #data: Buffer[] = [];
  #dataLength = 0;
  #dataLines = 0;
  #event: string | undefined;
  #lastEventId: string | undefined;

  constructor(onEvent: (event: SseEvent) => void) {
    this.#onEvent = onEvent;
  }

  /** The id of the last event that named one: where a resumption would start. */
  get lastEventId(): string | undefined {
    return this.#lastEventId;
  }

  push(chunk: Buffer): void {
    let start = 0;
    let end = chunk.indexOf(NEWLINE);
    if (end === -1) {
      if (chunk.length > 0) this.#partial.push(chunk);
      return;
    }
    if (this.#partial.length > 0) {
      this.#partial.push(chunk.subarray(0, end));
      const line = this.#partial;
      this.#partial = [];
      this.#line(line);
      start = end + 1;
      end = chunk.indexOf(NEWLINE, start);
    }
    while (end !== -1) {
      this.#line([chunk.subarray(start, end)]);
      start = end + 1;
      end = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.#partial.push(chunk.subarray(start));
  }

  #line(pieces: Buffer[]): void {
    const line = withoutCarriageReturn(pieces);
    const length = byteLength(line);
    if (length === 0) {
      this.#dispatch();
      return;
    }
    const prefix = leading(line, FIELD_PREFIX_BYTES);
    if (prefix[0] === COLON) return;
    const colon = prefix.indexOf(COLON);
    if (colon === -1) {
      // A field name alone (or one longer than any MCP uses): only `data` means something, an empty line of data.
      if (length === 4 && prefix.toString('latin1') === 'data') this.#addData([]);
      return;
    }
    const field = prefix.toString('latin1', 0, colon);
    const valueStart = colon + 1 + (prefix[colon + 1] === SPACE ? 1 : 0);
    if (field === 'data') {
      this.#addData(skip(line, valueStart));
      return;
    }
    if (field !== 'event' && field !== 'id') return;
    const value = Buffer.concat(line).toString('utf8', valueStart);
    if (field === 'event') this.#event = value;
    else if (!value.includes('\0')) this.#lastEventId = value;
  }

  #addData(value: Buffer[]): void {
    if (this.#dataLines > 0) {
      this.#data.push(LINE_FEED);
      this.#dataLength += 1;
    }
    this.#data.push(...value);
    this.#dataLength += byteLength(value);
    this.#dataLines++;
  }

  #dispatch(): void {
    const data = this.#data;
    const lines = this.#dataLines;
    const length = this.#dataLength;
    const event = this.#event;
    this.#data = [];
    this.#dataLines = 0;
    this.#dataLength = 0;
    this.#event = undefined;
    if (lines === 0) return;
    this.#onEvent({ event, data, length, id: this.#lastEventId });
  }
}

/** The line without the "\r" of a CRLF line end (in the last non-empty piece). */
function withoutCarriageReturn(pieces: Buffer[]): Buffer[] {
  for (let index = pieces.length - 1; index >= 0; index--) {
    const piece = pieces[index] as Buffer;
    if (piece.length === 0) continue;
    if (piece[piece.length - 1] !== CARRIAGE_RETURN) return pieces;
    return [...pieces.slice(0, index), piece.subarray(0, piece.length - 1)];
  }
  return pieces;
}

/** Up to `count` bytes from the line's start (copied only when its first piece is shorter). */
function leading(pieces: readonly Buffer[], count: number): Buffer {
  const first = pieces[0] as Buffer;
  if (first.length >= count || pieces.length === 1) return first.subarray(0, count);
  const taken: Buffer[] = [];
  let length = 0;
  for (const piece of pieces) {
    if (length >= count) break;
    taken.push(piece.subarray(0, count - length));
    length += Math.min(piece.length, count - length);
  }
  return Buffer.concat(taken);
}

/** The line from byte `offset` on, as views. */
function skip(pieces: readonly Buffer[], offset: number): Buffer[] {
  const out: Buffer[] = [];
  let left = offset;
  for (const piece of pieces) {
    if (left >= piece.length) {
      left -= piece.length;
      continue;
    }
    out.push(left === 0 ? piece : piece.subarray(left));
    left = 0;
  }
  return out;
}
