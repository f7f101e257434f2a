import type { AuditCostFigure } from './audit-cost.js';
import type { AuthFigure } from './auth-cost.js';
import type { HeapRow } from './heap.js';
import type { FirstCallFigure } from './first-calls.js';
import type { ProfileSummary } from './profile.js';
import type { Summary } from './stats.js';

export interface LatencyFigure {
  /** raw: the harness's minimal client; sdk: the official SDK client. */
  readonly client: 'raw' | 'sdk';
  readonly target: string;
  /** Microseconds, over all rounds. */
  readonly summary: Summary;
  readonly roundP50s: number[];
  readonly errors: number;
  readonly firstError?: string;
}

export interface ThroughputFigure {
  readonly target: string;
  readonly sessions: number;
  readonly concurrency: number;
  /** Requests per second, one per trial. */
  readonly trials: number[];
  readonly medianRps: number;
  readonly p50us: number;
  readonly p99us: number;
  readonly requests: number;
  readonly errors: number;
  readonly firstError?: string;
  /** CPU time per request (µs, median over trials) of the gateway process, of its children, and of the load generator. */
  readonly cpuPerRequestUs: { readonly gateway: number; readonly children: number; readonly client: number };
}

export interface SessionStartFigure {
  readonly target: string;
  readonly samplesMs: number[];
  readonly medianMs: number;
  /** Median over iterations of (this sample − the child-alone sample of the same iteration); undefined for the child itself. */
  readonly overheadMs: number | undefined;
  /** Interquartile range of those paired differences. */
  readonly overheadIqrMs: [number, number] | undefined;
}

export interface MemoryLevel {
  readonly idleSessions: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly childCount: number;
  readonly childrenRss: number;
  /** c=1 echo on one more session, microseconds. */
  readonly latency: Summary;
  /** Time to open this level's new sessions. */
  readonly openMs: number;
}

export interface MemoryFigure {
  readonly gateway: string;
  readonly levels: MemoryLevel[];
  readonly rssBytesPerSession: number;
  readonly heapBytesPerSession: number;
  /** Once every idle session has ended again: what the gateway gave back. */
  readonly afterClose: { readonly rss: number; readonly heapUsed: number; readonly external: number; readonly arrayBuffers: number };
  /** Heap snapshot difference (all idle sessions vs none, after they closed), per session, by constructor. */
  readonly heapPerSession?: { readonly total: number; readonly rows: HeapRow[] };
}

export interface BigFigure {
  readonly target: string;
  readonly bytes: number;
  readonly timesMs: number[];
  readonly medianMs: number;
  readonly peakGrowths: number[];
  readonly medianPeakGrowth: number | undefined;
}

/** One level of the stdio-vs-shared ladder: `users` signed-in users, each holding one idle legacy session. */
export interface UpstreamModeLevel {
  readonly users: number;
  /** false: not measured (the children would not fit in this machine's memory), extrapolated from the last two measured levels. */
  readonly measured: boolean;
  /** The broker process alone: RSS (median of reads after a full GC) and JS heap used + external, bytes. */
  readonly brokerRss: number;
  readonly brokerHeap: number;
  /** File descriptors the broker holds: its children's pipes (stdio mode), its connections to the upstream (shared mode). */
  readonly brokerFds: number;
  /** The broker's descendants: its children (stdio mode) or the upstream (shared mode). */
  readonly processes: number;
  readonly descendantsRss: number;
  /** CPU time the broker and its descendants spend while every session is idle, % of one core each. */
  readonly idleCpuPercent?: { readonly broker: number; readonly descendants: number };
  /** c=1 `echo` on the measuring session (one more user's), microseconds. */
  readonly latency?: Summary;
  /** Time to sign this level's new users in, and to open their sessions. */
  readonly signInMs?: number;
  readonly openMs?: number;
}

/** What one more signed-in user with a session costs, from the slope between two levels. */
export interface UpstreamModeSlope {
  readonly from: number;
  readonly to: number;
  /** Bytes per additional user. */
  readonly brokerRss: number;
  readonly brokerHeap: number;
  readonly totalRss: number;
  /** Processes and broker file descriptors per additional user. */
  readonly processes: number;
  readonly brokerFds: number;
}

export interface UpstreamModeMemory {
  readonly mode: 'stdio' | 'shared';
  /** Only the measuring user's session, before the first level: the projection of what the next level needs starts here. */
  readonly baseline: UpstreamModeLevel;
  readonly levels: UpstreamModeLevel[];
  /** Between consecutive measured levels, then first to last measured level. */
  readonly slopes: UpstreamModeSlope[];
  /** Once every idle session has ended again (the users still signed in). */
  readonly afterClose: UpstreamModeLevel;
  /** Heap snapshot difference (every idle session vs none, after they closed), per session, by constructor. */
  readonly heapPerSession?: { readonly total: number; readonly rows: HeapRow[] };
  /** What the shared upstream counted (its GET /stats) with every session open, and at the end. */
  readonly upstreamStats?: { readonly atTop: Record<string, unknown>; readonly atEnd: Record<string, unknown> };
}

/** Issue 12: the broker with a child per session (stdio) and with one shared HTTP upstream, side by side. */
export interface UpstreamModesResults {
  /** Targets `legacy · stdio`, `legacy · shared`, `modern · stdio`, `modern · shared`. */
  readonly latency: LatencyFigure[];
  readonly throughput: ThroughputFigure[];
  readonly memory: UpstreamModeMemory[];
  /** Targets whose first call failed, with the error: not measured. */
  readonly unavailable: { readonly target: string; readonly error: string }[];
  /** Issue 16: a new user's first call against their next one, per era and mode. */
  readonly firstCalls: FirstCallFigure[];
  /** Issue 16: a 10 MB result on the measuring user's session, per era and mode (older reports have none). */
  readonly big?: BigFigure[];
}

export interface BenchResults {
  readonly meta: {
    date: string;
    node: string;
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    loadAverageAtStart: number[];
    commit: string;
    dirtySrc: number;
    quick: boolean;
    plan: Record<string, unknown>;
    durationS: number;
  };
  readonly latency: LatencyFigure[];
  readonly throughput: ThroughputFigure[];
  readonly sessionStart: SessionStartFigure[];
  readonly memory: MemoryFigure[];
  readonly big: BigFigure[];
  readonly auth: AuthFigure[];
  readonly profiles: (ProfileSummary & { readonly name: string })[];
  readonly upstreamModes: UpstreamModesResults;
  /** `--only=audit`: the audit log's cost on a burst of tool calls. */
  auditCost?: AuditCostFigure;
}
