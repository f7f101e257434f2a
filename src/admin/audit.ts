/**
 * `forgejo-mcp-broker admin audit [--user LOGIN] [--tool GLOB] [--since 1h] [--limit N] [--json]`:
 * the audit log, newest first, from the store the configuration names.
 */
import { parseDuration } from '../config/duration.js';
import { BrokerError } from '../errors/errors.js';
import type { AuditQuery, Store, StoredAuditRecord } from '../store/store.js';

export interface AdminAuditArgs {
  readonly user?: string;
  readonly tool?: string;
  /** How far back, as a duration (`1h`, `7d`). */
  readonly sinceMs?: number;
  readonly limit: number;
  readonly json: boolean;
}

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

export const ADMIN_AUDIT_USAGE =
  'usage: forgejo-mcp-broker admin audit [--user LOGIN] [--tool GLOB] [--since DURATION] [--limit N] [--json]';

/** Parses the command's arguments (`--flag value` or `--flag=value`); a mistake is a `bad_request` BrokerError naming it. */
export function parseAdminAuditArgs(args: readonly string[]): AdminAuditArgs {
  let user: string | undefined;
  let tool: string | undefined;
  let sinceMs: number | undefined;
  let limit = DEFAULT_LIMIT;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const value = (): string => {
      const given = eq < 0 ? args[++i] : arg.slice(eq + 1);
      if (given === undefined || given === '') throw new BrokerError('bad_request', `${flag} needs a value\n${ADMIN_AUDIT_USAGE}`);
      return given;
    };
    switch (flag) {
      case '--user':
        user = value();
        break;
      case '--tool':
        tool = value();
        break;
      case '--since': {
        const text = value();
        sinceMs = parseDuration(text);
        if (sinceMs === undefined) throw new BrokerError('bad_request', `--since "${text}" is not a duration (like 30m, 1h, 7d)`);
        break;
      }
      case '--limit': {
        const text = value();
        limit = Number(text);
        if (!/^\d+$/.test(text) || limit < 1) throw new BrokerError('bad_request', `--limit "${text}" is not a whole number of at least 1`);
        break;
      }
      case '--json':
        json = true;
        break;
      default:
        throw new BrokerError('bad_request', `unknown argument ${arg}\n${ADMIN_AUDIT_USAGE}`);
    }
  }
  return {
    ...(user === undefined ? {} : { user }),
    ...(tool === undefined ? {} : { tool }),
    ...(sinceMs === undefined ? {} : { sinceMs }),
    limit,
    json,
  };
}

/** Runs `admin audit` against an opened store, writing to `out`. */
export async function adminAudit(
  store: Pick<Store, 'audit'>,
  args: readonly string[],
  out: { write(text: string): unknown },
  now: () => number = Date.now,
): Promise<void> {
  const parsed = parseAdminAuditArgs(args);
  const query: AuditQuery = {
    limit: parsed.limit,
    ...(parsed.user === undefined ? {} : { forgejoLogin: parsed.user }),
    ...(parsed.tool === undefined ? {} : { toolGlob: parsed.tool }),
    ...(parsed.sinceMs === undefined ? {} : { since: now() - parsed.sinceMs }),
  };
  const entries = (await store.audit.list(query)).map(auditEntry);
  out.write(parsed.json ? renderAuditJson(entries) : renderAuditText(entries));
}

export function auditEntry(record: StoredAuditRecord): AuditEntry {
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

export function renderAuditJson(entries: readonly AuditEntry[]): string {
  return `${JSON.stringify(entries, null, 2)}\n`;
}

/** A table for people: one line per record, newest first. */
export function renderAuditText(entries: readonly AuditEntry[]): string {
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
