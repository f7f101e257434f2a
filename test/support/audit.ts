/** The audit log as `admin audit --json` prints it, for the tests that check what was recorded. */
import { adminAudit, type AuditEntry } from '../../src/admin/audit.js';
import type { Store } from '../../src/store/store.js';

/** `admin audit --json` with these arguments, against an opened store. */
export async function auditJson(store: Pick<Store, 'audit'>, args: readonly string[] = []): Promise<AuditEntry[]> {
  let output = '';
  await adminAudit(store, [...args, '--json'], { write: (chunk: string) => (output += chunk) });
  return JSON.parse(output) as AuditEntry[];
}
