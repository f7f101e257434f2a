import type { JSONRPCResultResponse, RequestId } from '@modelcontextprotocol/server';
import type { ClientResponse } from './request-sink.js';

/** From this size on, a child's answer is passed through as bytes rather than parsed and serialised again. */
export const RAW_ANSWER_MIN_BYTES = 64 * 1024;

/** Deeper nesting than this is left to JSON.parse (the scan recurses). */
const MAX_DEPTH = 512;

type Span = readonly [start: number, end: number];

const QUOTE = 0x22;
const CARRIAGE_RETURN = 0x0d;
const BACKSLASH = 0x5c;
const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/**
 * A child's successful answer as the bytes it wrote (the pipe's chunks, never
 * joined), checked to be JSON and scanned only for what the broker needs: the
 * id, and the keys of the result. What the client gets is these bytes with the
 * id replaced (and, in the modern era, a few fields put in front of the
 * result's own): a 10 MB result is neither decoded nor encoded again.
 */
export class RawAnswer {
  readonly #chunks: readonly Buffer[];
  readonly #id: Span;
  readonly #resultOpen: number;
  readonly #resultKeys: ReadonlyMap<string, Span>;
  readonly #end: number;
  #parsed: JSONRPCResultResponse | undefined;

  private constructor(chunks: readonly Buffer[], id: Span, resultOpen: number, resultKeys: ReadonlyMap<string, Span>, end: number) {
    this.#chunks = chunks;
    this.#id = id;
    this.#resultOpen = resultOpen;
    this.#resultKeys = resultKeys;
    this.#end = end;
  }

  /**
   * The answer in a child's line, when it is a JSON-RPC result with a number or
   * string id; undefined for anything else (a request, a notification, an
   * error, JSON that is not valid), which the caller parses as usual.
   */
  static scan(chunks: readonly Buffer[]): RawAnswer | undefined {
    const scanner = new Scanner(chunks);
    const top = scanner.document();
    if (top === undefined) return undefined;
    const id = top.keys.get('id');
    const result = top.keys.get('result');
    const jsonrpc = top.keys.get('jsonrpc');
    if (id === undefined || result === undefined || jsonrpc === undefined || top.keys.has('method') || top.keys.has('error'))
      return undefined;
    if (scanner.text(jsonrpc) !== '"2.0"' || top.resultOpen === undefined) return undefined;
    const idText = scanner.text(id);
    if (!idText.startsWith('"') && !NUMBER.test(idText)) return undefined;
    // A carriage return is JSON whitespace, but ends a line in an SSE event: such an answer is parsed and written anew.
    if (carriageReturnBefore(chunks, top.end)) return undefined;
    return new RawAnswer(chunks, id, top.resultOpen, top.resultKeys, top.end);
  }

  /** The bytes the answer takes on the child's side. */
  get length(): number {
    return this.#end;
  }

  /** The id the child answered under. */
  get id(): RequestId {
    return JSON.parse(new Scanner(this.#chunks).text(this.#id)) as RequestId;
  }

  /** Whether the result has this key at its top level. */
  resultHas(key: string): boolean {
    return this.#resultKeys.has(key);
  }

  /** `result.isError`, read without parsing the result. */
  get isError(): boolean {
    const span = this.#resultKeys.get('isError');
    return span !== undefined && new Scanner(this.#chunks).text(span) === 'true';
  }

  /**
   * The bytes the client gets: the child's, with `id` in place of the child's
   * id and `resultPrefix` (members ending in a comma) at the start of the result.
   */
  bytes(id: RequestId, resultPrefix = ''): Buffer[] {
    const [idStart, idEnd] = this.#id;
    const cuts: { at: number; insert: Buffer | undefined; skipTo: number }[] = [
      { at: idStart, insert: Buffer.from(JSON.stringify(id)), skipTo: idEnd },
      { at: this.#resultOpen + 1, insert: resultPrefix === '' ? undefined : Buffer.from(resultPrefix), skipTo: this.#resultOpen + 1 },
    ].sort((a, b) => a.at - b.at);
    const out: Buffer[] = [];
    let from = 0;
    for (const cut of cuts) {
      out.push(...slice(this.#chunks, from, cut.at));
      if (cut.insert !== undefined) out.push(cut.insert);
      from = cut.skipTo;
    }
    out.push(...slice(this.#chunks, from, this.#end));
    return out;
  }

  /** The answer as an object, for the few who need it (a list filter, a replay); parsed once. */
  message(): JSONRPCResultResponse {
    this.#parsed ??= JSON.parse(Buffer.concat(this.bytes(this.id)).toString('utf8')) as JSONRPCResultResponse;
    return this.#parsed;
  }
}

/** The parts of `chunks` between two offsets, as views (no copy). */
function slice(chunks: readonly Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let base = 0;
  for (const chunk of chunks) {
    const chunkEnd = base + chunk.length;
    if (chunkEnd > start && base < end) out.push(chunk.subarray(Math.max(start - base, 0), Math.min(end - base, chunk.length)));
    base = chunkEnd;
    if (base >= end) break;
  }
  return out;
}

interface TopLevel {
  readonly keys: Map<string, Span>;
  readonly resultOpen: number | undefined;
  readonly resultKeys: Map<string, Span>;
  readonly end: number;
}

class NotJson extends Error {}

/**
 * A validating JSON scan over a list of chunks that records the spans of the
 * top-level members and of the members of `result`. Strings (nearly all of a
 * large result) are skipped with `indexOf`, not byte by byte.
 */
class Scanner {
  readonly #chunks: readonly Buffer[];
  #index = 0;
  #pos = 0;
  #base = 0;
  /** The next backslash of the current chunk (-1: none left), kept across strings: many short strings are still one pass. */
  #escapeIndex = -1;
  #escape = -1;

  constructor(chunks: readonly Buffer[]) {
    this.#chunks = chunks;
  }

  document(): TopLevel | undefined {
    try {
      this.#whitespace();
      if (this.#peek() !== 0x7b) return undefined;
      const keys = new Map<string, Span>();
      const resultKeys = new Map<string, Span>();
      let resultOpen: number | undefined;
      this.#object((key, start) => {
        if (key === 'result' && this.#peek() === 0x7b) {
          resultOpen = this.#offset;
          this.#object((inner, innerStart) => resultKeys.set(inner, [innerStart, this.#valueEnd(2)]));
          keys.set(key, [start, this.#offset]);
          return;
        }
        keys.set(key, [start, this.#valueEnd(1)]);
      });
      const end = this.#offset;
      this.#whitespace();
      if (this.#peek() !== -1) return undefined;
      return { keys, resultOpen, resultKeys, end };
    } catch (error) {
      if (error instanceof NotJson || error instanceof RangeError) return undefined;
      throw error;
    }
  }

  /** The text of a (small) span. */
  text([start, end]: Span): string {
    return Buffer.concat(slice(this.#chunks, start, end)).toString('utf8');
  }

  get #offset(): number {
    return this.#base + this.#pos;
  }

  #peek(): number {
    while (this.#index < this.#chunks.length) {
      const chunk = this.#chunks[this.#index] as Buffer;
      if (this.#pos < chunk.length) return chunk[this.#pos] as number;
      this.#base += chunk.length;
      this.#pos = 0;
      this.#index++;
    }
    return -1;
  }

  #next(): number {
    const byte = this.#peek();
    if (byte === -1) throw new NotJson();
    this.#pos++;
    return byte;
  }

  #whitespace(): void {
    for (let byte = this.#peek(); byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d; byte = this.#peek()) this.#pos++;
  }

  #expect(byte: number): void {
    if (this.#next() !== byte) throw new NotJson();
  }

  /** At an object's `{`; `member` is called at each member's value, with the value's start, and must consume it. */
  #object(member: (key: string, start: number) => void): void {
    this.#expect(0x7b);
    this.#whitespace();
    if (this.#peek() === 0x7d) {
      this.#pos++;
      return;
    }
    for (;;) {
      this.#whitespace();
      const keyStart = this.#offset;
      this.#string();
      const key = JSON.parse(this.text([keyStart, this.#offset])) as string;
      this.#whitespace();
      this.#expect(0x3a);
      this.#whitespace();
      member(key, this.#offset);
      this.#whitespace();
      const byte = this.#next();
      if (byte === 0x7d) return;
      if (byte !== 0x2c) throw new NotJson();
    }
  }

  /** Consumes a value and returns where it ends. */
  #valueEnd(depth: number): number {
    this.#value(depth);
    return this.#offset;
  }

  #value(depth: number): void {
    if (depth > MAX_DEPTH) throw new NotJson();
    const byte = this.#peek();
    if (byte === QUOTE) this.#string();
    else if (byte === 0x7b) this.#object(() => this.#value(depth + 1));
    else if (byte === 0x5b) this.#array(depth);
    else this.#literal();
  }

  #array(depth: number): void {
    this.#expect(0x5b);
    this.#whitespace();
    if (this.#peek() === 0x5d) {
      this.#pos++;
      return;
    }
    for (;;) {
      this.#whitespace();
      this.#value(depth + 1);
      this.#whitespace();
      const byte = this.#next();
      if (byte === 0x5d) return;
      if (byte !== 0x2c) throw new NotJson();
    }
  }

  /** true, false, null or a number. */
  #literal(): void {
    const start = this.#offset;
    for (let byte = this.#peek(); byte !== -1 && /[0-9a-zA-Z.+-]/.test(String.fromCharCode(byte)); byte = this.#peek()) this.#pos++;
    const text = this.text([start, this.#offset]);
    if (text !== 'true' && text !== 'false' && text !== 'null' && !NUMBER.test(text)) throw new NotJson();
  }

  #nextEscape(chunk: Buffer): number {
    if (this.#escapeIndex !== this.#index || (this.#escape !== -1 && this.#escape < this.#pos)) {
      this.#escapeIndex = this.#index;
      this.#escape = chunk.indexOf(BACKSLASH, this.#pos);
    }
    return this.#escape;
  }

  /**
   * At a string's opening quote: skips to after its closing one. The next quote
   * of the chunk is looked up once and kept until an escape passes it, so a
   * string with many escapes is still one pass.
   */
  #string(): void {
    this.#expect(QUOTE);
    let quoteIndex = -1;
    let quote = -1;
    for (;;) {
      if (this.#peek() === -1) throw new NotJson();
      const chunk = this.#chunks[this.#index] as Buffer;
      if (quoteIndex !== this.#index || (quote !== -1 && quote < this.#pos)) {
        quoteIndex = this.#index;
        quote = chunk.indexOf(QUOTE, this.#pos);
      }
      const end = quote === -1 ? chunk.length : quote;
      const escape = this.#nextEscape(chunk);
      if (escape !== -1 && escape < end) {
        this.#pos = escape + 1;
        const escaped = this.#next();
        if (escaped === 0x75) for (let i = 0; i < 4; i++) if (!isHex(this.#next())) throw new NotJson();
        continue;
      }
      this.#pos = end;
      if (quote !== -1) {
        this.#pos++;
        return;
      }
    }
  }
}

function isHex(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

interface PassedThrough {
  readonly raw: RawAnswer;
  /** Members put in front of the result's own (the modern era's stamp). */
  readonly resultPrefix: string;
}

const passed = new WeakMap<ClientResponse, PassedThrough>();

/**
 * A client response whose bytes are the child's answer: writers that know it
 * send `raw.bytes(id, resultPrefix)`; anyone else reading `result` gets it
 * parsed (once) from exactly those bytes.
 */
export function passThrough(raw: RawAnswer, id: RequestId, resultPrefix = ''): ClientResponse {
  let result: Record<string, unknown> | undefined;
  const response = { jsonrpc: '2.0' as const, id } as ClientResponse;
  Object.defineProperty(response, 'result', {
    enumerable: true,
    get: () => (result ??= (JSON.parse(Buffer.concat(raw.bytes(id, resultPrefix)).toString('utf8')) as JSONRPCResultResponse).result),
  });
  passed.set(response, { raw, resultPrefix });
  return response;
}

/** How a response passes a child's answer through; undefined for one made here. */
export function passedThrough(response: ClientResponse): PassedThrough | undefined {
  return passed.get(response);
}

/** The bytes to write for a response that passes a child's answer through; undefined for any other. */
export function passedBytes(response: ClientResponse): Buffer[] | undefined {
  const through = passed.get(response);
  return through?.raw.bytes(response.id, through.resultPrefix);
}

/** The same response under another id, still passed through when it was. */
export function withId(response: ClientResponse, id: RequestId): ClientResponse {
  const through = passed.get(response);
  return through === undefined ? { ...response, id } : passThrough(through.raw, id, through.resultPrefix);
}

/** Writes a list of buffers corked, so they leave as one write. */
export function writeAll(out: { cork(): void; uncork(): void; write(chunk: Buffer): boolean }, bytes: readonly Buffer[]): void {
  out.cork();
  for (const chunk of bytes) out.write(chunk);
  out.uncork();
}

export function byteLength(parts: readonly (string | Buffer)[]): number {
  let length = 0;
  for (const part of parts) length += typeof part === 'string' ? Buffer.byteLength(part) : part.length;
  return length;
}

/** Whether a carriage return comes before byte `end` of the line (one after it, a CRLF line end, is not the answer's). */
function carriageReturnBefore(chunks: readonly Buffer[], end: number): boolean {
  let offset = 0;
  for (const chunk of chunks) {
    if (offset >= end) return false;
    const at = chunk.indexOf(CARRIAGE_RETURN);
    if (at !== -1 && offset + at < end) return true;
    offset += chunk.length;
  }
  return false;
}
