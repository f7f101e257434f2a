import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

import type { AuditDropReason } from '../audit/audit-log.js';
import type { Era, ToolCallEvents } from '../audit/tool-call.js';
import type { RefreshOutcome } from '../forgejo/credentials.js';
import type { AuditOutcome } from '../store/store.js';

/** Tool names a client sends become label values: past this many distinct ones (or an odd name), they count as `other`. */
const MAX_TOOL_LABELS = 500;
const TOOL_LABEL = /^[A-Za-z0-9_.-]{1,64}$/;

/** How a rotation went for one channel: moved to a new child, followed by a shared upstream's session, failed, or ended (revoked). */
export type RotationResult = 'moved' | 'followed' | 'failed' | 'revoked';

/** What the session layer reports as it works. */
export interface SessionEvents {
  sessionStarted(era: 'legacy' | 'modern'): void;
  sessionEnded(era: 'legacy' | 'modern', reason: string): void;
  rotation(result: RotationResult): void;
}

/** Live figures read when Prometheus scrapes. */
export interface SessionGauges {
  readonly active: number;
  readonly activeUserChannels: number;
  readonly inflight: number;
}

/**
 * The broker's Prometheus metrics, in a registry of their own (so tests and
 * several brokers in one process never share counters), plus Node's process
 * metrics (memory, CPU, event-loop lag, handles).
 */
export class BrokerMetrics implements SessionEvents, ToolCallEvents {
  readonly registry = new Registry();
  readonly #started: Counter<'era'>;
  readonly #ended: Counter<'era' | 'reason'>;
  readonly #rotations: Counter<'result'>;
  readonly #httpResponses: Counter<'route' | 'status'>;
  readonly #forgejoRefreshes: Counter<'outcome'>;
  readonly #upstreamRestarts: Counter;
  readonly #childLogSuppressed: Counter;
  readonly #toolCalls: Counter<'tool' | 'outcome' | 'era'>;
  readonly #toolRefusals: Counter<'policy'>;
  readonly #auditDropped: Counter<'reason'>;
  readonly #toolLabels = new Set<string>();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'forgejo_mcp_broker_' });
    this.#started = new Counter({
      name: 'forgejo_mcp_broker_sessions_started_total',
      help: 'MCP sessions (legacy) and per-user channels (modern) started',
      labelNames: ['era'],
      registers,
    });
    this.#ended = new Counter({
      name: 'forgejo_mcp_broker_sessions_ended_total',
      help: 'Sessions and channels ended, by reason',
      labelNames: ['era', 'reason'],
      registers,
    });
    this.#rotations = new Counter({
      name: 'forgejo_mcp_broker_rotations_total',
      help: 'A session moved to a new Forgejo token (a new child, or the next request at a shared upstream), by result',
      labelNames: ['result'],
      registers,
    });
    this.#httpResponses = new Counter({
      name: 'forgejo_mcp_broker_http_responses_total',
      help: 'HTTP responses, by route group and status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.#forgejoRefreshes = new Counter({
      name: 'forgejo_mcp_broker_forgejo_refreshes_total',
      help: 'Refreshes of Forgejo tokens sent to Forgejo, by outcome: ok, refused (the refresh token), unknown (no usable answer)',
      labelNames: ['outcome'],
      registers,
    });
    // Every outcome is exported from the start, so a rate over it is defined before the first refresh.
    for (const outcome of ['ok', 'refused', 'unknown'] satisfies RefreshOutcome[]) this.#forgejoRefreshes.inc({ outcome }, 0);
    this.#upstreamRestarts = new Counter({
      name: 'forgejo_mcp_broker_upstream_restarts_total',
      help: 'Restarts of a shared upstream process (BROKER_UPSTREAM_COMMAND) after it exited unexpectedly',
      registers,
    });
    this.#childLogSuppressed = new Counter({
      name: 'forgejo_mcp_broker_child_log_lines_suppressed_total',
      help: "Log lines of children's output (stderr, stdout garbage) beyond their rate limit, not written",
      registers,
    });
    this.#toolCalls = new Counter({
      name: 'forgejo_mcp_broker_tool_calls_total',
      help: 'tools/call requests, by tool, outcome (ok, error, refused) and era',
      labelNames: ['tool', 'outcome', 'era'],
      registers,
    });
    this.#toolRefusals = new Counter({
      name: 'forgejo_mcp_broker_tool_calls_refused_total',
      help: 'tools/call requests the tool policy refused, by the rule that refused them',
      labelNames: ['policy'],
      registers,
    });
    this.#auditDropped = new Counter({
      name: 'forgejo_mcp_broker_audit_records_dropped_total',
      help: 'Audit records never written: the queue was full, or the store failed',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['queue_full', 'store_failed'] satisfies AuditDropReason[]) this.#auditDropped.inc({ reason }, 0);
  }

  /** Gauges computed at scrape time from the live registry. */
  watch(gauges: SessionGauges): void {
    const registers = [this.registry];
    new Gauge({
      name: 'forgejo_mcp_broker_sessions',
      help: 'Live legacy MCP sessions (one child each)',
      registers,
      collect() {
        this.set(gauges.active);
      },
    });
    new Gauge({
      name: 'forgejo_mcp_broker_user_channels',
      help: 'Live modern per-user channels (one child each)',
      registers,
      collect() {
        this.set(gauges.activeUserChannels);
      },
    });
    new Gauge({
      name: 'forgejo_mcp_broker_inflight_requests',
      help: 'Client requests waiting for a child',
      registers,
      collect() {
        this.set(gauges.inflight);
      },
    });
  }

  sessionStarted(era: 'legacy' | 'modern'): void {
    this.#started.inc({ era });
  }

  sessionEnded(era: 'legacy' | 'modern', reason: string): void {
    this.#ended.inc({ era, reason });
  }

  rotation(result: RotationResult): void {
    this.#rotations.inc({ result });
  }

  upstreamRestarted(): void {
    this.#upstreamRestarts.inc();
  }

  forgejoRefresh(outcome: RefreshOutcome): void {
    this.#forgejoRefreshes.inc({ outcome });
  }

  httpResponse(route: string, status: number): void {
    this.#httpResponses.inc({ route, status: String(status) });
  }

  childLogLinesSuppressed(lines: number): void {
    this.#childLogSuppressed.inc(lines);
  }

  toolCall(tool: string, outcome: AuditOutcome, era: Era): void {
    this.#toolCalls.inc({ tool: this.#toolLabel(tool), outcome, era });
  }

  toolRefused(policy: string): void {
    this.#toolRefusals.inc({ policy });
  }

  auditDropped(reason: AuditDropReason, count: number): void {
    this.#auditDropped.inc({ reason }, count);
  }

  #toolLabel(tool: string): string {
    if (this.#toolLabels.has(tool)) return tool;
    if (!TOOL_LABEL.test(tool) || this.#toolLabels.size >= MAX_TOOL_LABELS) return 'other';
    this.#toolLabels.add(tool);
    return tool;
  }

  /** The exposition, for GET /metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
