import type { Logger } from '../log/logger.js';

/** Log lines one child may cause per window; a child writing garbage in a loop must not flood the broker's log. */
export const CHILD_LOG_LINES_PER_WINDOW = 10;
const WINDOW_MS = 1000;

/**
 * The log budget of one child: at most CHILD_LOG_LINES_PER_WINDOW lines per
 * second; the rest are counted, reported to `onSuppressed` (the metric) and
 * summed up in one line when their window ends or the child exits.
 */
export class ChildLogLimiter {
  #windowStart = Number.NEGATIVE_INFINITY;
  #used = 0;
  #suppressed = 0;
  #summary: NodeJS.Timeout | undefined;

  readonly #log: Logger;
  readonly #onSuppressed: (lines: number) => void;

  constructor(log: Logger, onSuppressed: (lines: number) => void) {
    this.#log = log;
    this.#onSuppressed = onSuppressed;
  }

  /** Runs `write` if this window's budget allows, else counts the line. */
  line(write: () => void): void {
    const now = Date.now();
    if (now - this.#windowStart >= WINDOW_MS) {
      this.flush();
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used < CHILD_LOG_LINES_PER_WINDOW) {
      this.#used++;
      write();
      return;
    }
    this.#suppressed++;
    if (this.#summary === undefined) {
      this.#summary = setTimeout(() => this.flush(), this.#windowStart + WINDOW_MS - now);
      this.#summary.unref();
    }
  }

  /** Writes the summary of the lines suppressed so far, if any. */
  flush(): void {
    clearTimeout(this.#summary);
    this.#summary = undefined;
    if (this.#suppressed === 0) return;
    const lines = this.#suppressed;
    this.#suppressed = 0;
    this.#onSuppressed(lines);
    this.#log.warn(
      { event: 'child_log_suppressed', lines, limit: CHILD_LOG_LINES_PER_WINDOW, windowMs: WINDOW_MS },
      'log lines of this child suppressed',
    );
  }
}
