/** Lines from this size on are handed over as the chunks they came in, never joined. */
export interface LargeLines {
  readonly minBytes: number;
  readonly onLine: (chunks: Buffer[]) => void;
}

/**
 * Splits a byte stream into newline-terminated lines. Chunks are kept in a
 * list and joined once per line, so a line of many megabytes costs one copy,
 * not one per chunk.
 */
export class LineSplitter {
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  readonly #maxLineBytes: number;
  readonly #onLine: (line: string) => void;
  readonly #onOverflow: () => void;
  readonly #large: LargeLines | undefined;

  constructor(maxLineBytes: number, onLine: (line: string) => void, onOverflow: () => void, large?: LargeLines) {
    this.#maxLineBytes = maxLineBytes;
    this.#onLine = onLine;
    this.#onOverflow = onOverflow;
    this.#large = large;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.#pendingBytes + piece.length > this.#maxLineBytes) {
        this.#overflow();
        continue;
      }
      const large = this.#large;
      if (large !== undefined && this.#pendingBytes + piece.length >= large.minBytes) {
        const chunks = [...this.#pending, piece];
        this.#pending = [];
        this.#pendingBytes = 0;
        large.onLine(chunks);
        continue;
      }
      let line: Buffer = piece;
      if (this.#pending.length > 0) {
        this.#pending.push(piece);
        line = Buffer.concat(this.#pending, this.#pendingBytes + piece.length);
        this.#pending = [];
        this.#pendingBytes = 0;
      }
      const text = line.toString('utf8');
      this.#onLine(text.endsWith('\r') ? text.slice(0, -1) : text);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.#pendingBytes + rest.length > this.#maxLineBytes) {
        this.#overflow();
        return;
      }
      this.#pending.push(rest);
      this.#pendingBytes += rest.length;
    }
  }

  /** The unterminated rest, if any, at end of stream. */
  flush(): void {
    if (this.#pendingBytes === 0) return;
    const text = Buffer.concat(this.#pending, this.#pendingBytes).toString('utf8');
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#onLine(text);
  }

  #overflow(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#onOverflow();
  }
}
