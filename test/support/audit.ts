/** The audit log as `admin audit` answers it, for the tests that check what was recorded. */
import { parseAdminArguments } from '../../src/admin/arguments.js';
import { audit, type AuditEntry } from '../../src/admin/audit.js';
import type { Store } from '../../src/store/store.js';

/** `admin audit` with these arguments against an opened store, as the dispatcher runs it: its JSON and its table. */
export async function adminAudit(
  store: Store,
  args: readonly string[] = [],
  now: () => number = Date.now,
): Promise<{ readonly json: AuditEntry[]; readonly text: string }> {
  const result = await audit.run({ store, now }, parseAdminArguments('audit', args, audit.flags));
  return { json: result.json as AuditEntry[], text: result.text };
}

/** `admin audit --json` with these arguments, against an opened store. */
export async function auditJson(store: Store, args: readonly string[] = []): Promise<AuditEntry[]> {
  return (await adminAudit(store, args)).json;
}
