/**
 * `node dist/bench/tools/audit-records.js [records] [rounds]`: the CPU one
 * audit record costs the broker, from the call's hand-over to its row in a
 * real SQLite store: `AuditLog.record` for each of a burst of tool calls, then
 * the batched flush (the record built, its arguments digested, the insert).
 * Prints µs of process CPU per record, round by round (the first rounds warm
 * the JIT up).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, type PendingAuditRecord } from '../../src/audit/audit-log.js';
import { AUDIT_BATCH_SIZE } from '../../src/config/defaults.js';
import { silentLogger } from '../../src/log/logger.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const [records = '20000', rounds = '5'] = process.argv.slice(2);
const dataDir = await mkdtemp(join(tmpdir(), 'bench-audit-'));
const store = await openSqliteStore({ dataDir, encryptionKey: randomBytes(32) });
const audit = new AuditLog({
  repository: store.audit,
  log: silentLogger(),
  storeArguments: false,
  retentionMs: Number.MAX_SAFE_INTEGER,
  maxQueued: Number(records),
  batchSize: AUDIT_BATCH_SIZE,
  // Flushed by hand below, once per burst.
  flushMs: 2 ** 31 - 1,
  purgeIntervalMs: 2 ** 31 - 1,
  clientName: () => Promise.resolve('bench client'),
});

/** A `tools/call` of `echo` as the broker's gate hands it over. */
function call(i: number): PendingAuditRecord {
  return {
    at: Date.now(),
    kind: 'tool_call',
    userId: '1',
    forgejoLogin: 'alice',
    clientId: 'bench-client',
    era: 'legacy',
    sessionRef: '0123456789abcdef',
    tool: 'echo',
    outcome: 'ok',
    errorCode: null,
    detail: null,
    durationMs: 1,
    responseBytes: 120,
    params: { name: 'echo', arguments: { text: `hello from the bench ${i}` } },
  };
}

try {
  for (let round = 1; round <= Number(rounds); round++) {
    const before = process.cpuUsage();
    for (let i = 0; i < Number(records); i++) audit.record(call(i));
    await audit.flush();
    const used = process.cpuUsage(before);
    process.stdout.write(`round ${round}: ${((used.user + used.system) / Number(records)).toFixed(1)} µs CPU per record\n`);
  }
} finally {
  await audit.close();
  await store.close();
  await rm(dataDir, { recursive: true, force: true });
}
