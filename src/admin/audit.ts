/**
 * `forgejo-mcp-broker admin audit [--user LOGIN] [--tool GLOB] [--since 1h] [--limit N] [--json]`:
 * the audit log, newest first, from the store the configuration names.
 */
import { ConfigError } from '../config/config.js';
import type { AuditQuery, StoredAuditRecord } from '../store/store.js';
import { durationFlag, valueFlag, type AdminArguments } from './arguments.js';
import type { AdminCommand } from './commands.js';

/** One record as `--json` prints it. */
export interface AuditEntry {
  readonly id: number;
  readonly time: string;
  readonly kind: StoredAuditRecord['kind'];
  readonly login: string | null;
  readonly userId: string | null;
  readonly clientId: string | null;
  readonly clientName: string | null;
  readonly era: StoredAuditRecord['era'];
  readonly session: string | null;
  readonly tool: string | null;
  readonly outcome: StoredAuditRecord['outcome'];
  readonly errorCode: number | null;
  readonly detail: string | null;
  readonly durationMs: number | null;
  readonly requestBytes: number | null;
  readonly responseBytes: number | null;
  readonly argumentsSha256: string | null;
  /** Only with BROKER_AUDIT_ARGUMENTS=true when the call was recorded; secrets redacted. */
  readonly arguments: unknown;
}

const DEFAULT_LIMIT = 100;

export const audit: AdminCommand = {
  summary: 'Show the audit log (tool calls, refusals, sign-ins, consents, revocations), newest first.',
  synopsis: 'audit [--user LOGIN] [--tool GLOB] [--since DURATION] [--limit N] [--json]',
  details: [
    'OUTCOME is ok, error (with its JSON-RPC code) or refused (the tool policy); arguments appear only with',
    'BROKER_AUDIT_ARGUMENTS=true, secrets redacted.',
    '',
  ],
  flags: ['json', 'user', 'tool', 'since', 'limit'],
  run: async ({ store, now }, args) => {
    const user = valueFlag(args, 'user');
    const tool = valueFlag(args, 'tool');
    const sinceMs = args.flags.has('since') ? durationFlag(args, 'since', 0) : undefined;
    const query: AuditQuery = {
      limit: limitFlag(args),
      ...(user === undefined ? {} : { forgejoLogin: user }),
      ...(tool === undefined ? {} : { toolGlob: tool }),
      ...(sinceMs === undefined ? {} : { since: now() - sinceMs }),
    };
    const entries = (await store.audit.list(query)).map(auditEntry);
    return { json: entries, text: renderAuditText(entries) };
  },
};

function limitFlag(args: AdminArguments): number {
  const text = valueFlag(args, 'limit');
  if (text === undefined) return DEFAULT_LIMIT;
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1) throw new ConfigError('--limit', `"${text}" is not a whole number of at least 1`);
  return limit;
}

function auditEntry(record: StoredAuditRecord): AuditEntry {
  return {
    id: record.id,
    time: new Date(record.at).toISOString(),
    kind: record.kind,
    login: record.forgejoLogin,
    userId: record.userId,
    clientId: record.clientId,
    clientName: record.clientName,
    era: record.era,
    session: record.sessionRef,
    tool: record.tool,
    outcome: record.outcome,
    errorCode: record.errorCode,
    detail: record.detail,
    durationMs: record.durationMs,
    requestBytes: record.requestBytes,
    responseBytes: record.responseBytes,
    argumentsSha256: record.argumentsSha256,
    arguments: record.arguments === null ? null : (JSON.parse(record.arguments) as unknown),
  };
}

/** A table for people: one line per record, newest first. */
function renderAuditText(entries: readonly AuditEntry[]): string {
  if (entries.length === 0) return 'No audit records.\n';
  const header = ['TIME', 'USER', 'CLIENT', 'ERA', 'TOOL / EVENT', 'OUTCOME', 'MS', 'DETAIL'];
  const rows = entries.map((entry) => [
    entry.time,
    entry.login ?? entry.userId ?? '-',
    entry.clientName ?? entry.clientId ?? '-',
    entry.era ?? '-',
    entry.tool ?? entry.kind,
    entry.errorCode === null ? entry.outcome : `${entry.outcome} ${entry.errorCode}`,
    entry.durationMs === null ? '-' : String(entry.durationMs),
    entry.detail ?? '',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] as string).length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] as number)))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}
