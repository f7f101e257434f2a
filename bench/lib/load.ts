/** Closed-loop load: N workers, each sending its next request when the last is answered; bounded in count and time. */

export interface LoadOptions {
  readonly concurrency: number;
  /** Stop after this many requests in all. */
  readonly maxRequests: number;
  /** ...or after this long, whichever comes first. */
  readonly maxMs: number;
  /** Requests sent and not recorded first (JIT, connections). */
  readonly warmup?: number;
  /** Called once the warm-up is done, just before the measured requests; its result is passed to `onEnd`. */
  readonly onStart?: () => unknown;
  readonly onEnd?: (started: unknown, completed: number) => void;
}

export interface LoadResult {
  /** Per-request latency, microseconds. */
  readonly latenciesUs: number[];
  readonly completed: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly elapsedMs: number;
  /** completed / elapsed, requests per second. */
  readonly throughput: number;
}

/** `op(i)` runs request number i; a worker picks the next number when its request is done. */
export async function closedLoop(op: (i: number) => Promise<unknown>, options: LoadOptions): Promise<LoadResult> {
  const warmup = options.warmup ?? 0;
  let next = 0;
  const warm = async (): Promise<void> => {
    while (next < warmup) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, Math.max(1, warmup)) }, warm));
  const latenciesUs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let issued = 0;
  const started = options.onStart?.();
  const start = performance.now();
  const deadline = start + options.maxMs;
  const worker = async (): Promise<void> => {
    while (issued < options.maxRequests && performance.now() < deadline) {
      const i = next++;
      issued++;
      const t0 = performance.now();
      try {
        await op(i);
        latenciesUs.push((performance.now() - t0) * 1000);
      } catch (error) {
        errors++;
        firstError ??= String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const elapsedMs = performance.now() - start;
  options.onEnd?.(started, latenciesUs.length);
  return {
    latenciesUs,
    completed: latenciesUs.length,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    elapsedMs,
    throughput: (latenciesUs.length / elapsedMs) * 1000,
  };
}
