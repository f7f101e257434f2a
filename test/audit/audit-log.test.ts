/** The audit log's writer on its own: batching, its bound, and what it counts when it must drop. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuditLog, type AuditDropReason, type PendingAuditRecord } from '../../src/audit/audit-log.js';
import { auditedSecurityEvents } from '../../src/audit/security-events.js';
import { silentLogger } from '../../src/log/logger.js';
import { BrokerMetrics } from '../../src/metrics/metrics.js';
import type { AuditRecord, AuditRepository } from '../../src/store/store.js';

function call(n: number): PendingAuditRecord {
  return {
    at: n,
    kind: 'tool_call',
    userId: '1',
    forgejoLogin: 'alice',
    clientId: 'c',
    era: 'legacy',
    sessionRef: null,
    tool: 'echo',
    outcome: 'ok',
    errorCode: null,
    detail: null,
    durationMs: 1,
    responseBytes: 10,
    params: { name: 'echo', arguments: { text: String(n) } },
  };
}

/** A repository whose writes wait until the test lets them through. */
function heldRepository(): { repository: AuditRepository; written: AuditRecord[][]; release: () => void } {
  const written: AuditRecord[][] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    written,
    release: () => release(),
    repository: {
      append: async (records) => {
        await gate;
        written.push([...records]);
      },
      list: () => Promise.resolve([]),
      deleteBefore: () => Promise.resolve(0),
    },
  };
}

function options(repository: AuditRepository, maxQueued: number) {
  return {
    repository,
    log: silentLogger(),
    storeArguments: false,
    retentionMs: 1000,
    maxQueued,
    batchSize: 2,
    flushMs: 1,
    purgeIntervalMs: 3_600_000,
  };
}

test('beyond its bound the queue drops records and counts them, and the metric shows it; the rest are written in batches', async () => {
  const held = heldRepository();
  const audit = new AuditLog(options(held.repository, 3));
  const metrics = new BrokerMetrics();
  const drops: AuditDropReason[] = [];
  audit.onDropped((reason, count) => {
    drops.push(reason);
    metrics.auditDropped(reason, count);
  });
  // The first flush takes two records and waits on the store; three more fit the queue, two do not.
  audit.record(call(1));
  audit.record(call(2));
  const flushing = audit.flush();
  for (let n = 3; n <= 7; n++) audit.record(call(n));
  assert.equal(audit.dropped, 2);
  assert.deepEqual(drops, ['queue_full', 'queue_full']);
  assert.match((await metrics.render()).body, /forgejo_mcp_broker_audit_records_dropped_total\{reason="queue_full"\} 2/);
  held.release();
  await flushing;
  await audit.flush();
  assert.deepEqual(
    held.written.map((batch) => batch.map((record) => record.at)),
    [[1, 2], [3, 4], [5]],
  );
});

test('records are completed at write time: digest, request size, client name and the login of a security event', async () => {
  const held = heldRepository();
  held.release();
  const audit = new AuditLog({
    ...options(held.repository, 10),
    clientName: (id) => Promise.resolve(`${id}-name`),
    userLogin: (id) => Promise.resolve(id === '7' ? 'grace' : undefined),
  });
  audit.record(call(1));
  auditedSecurityEvents(audit, () => 5)({ kind: 'sign_in', userId: '7', clientId: 'c', detail: 'authorization code issued' });
  await audit.close();
  const [first, second] = held.written.flat();
  assert.equal(first?.clientName, 'c-name');
  assert.equal(first?.argumentsSha256?.length, 64);
  assert.equal(first?.arguments, null);
  assert.ok((first?.requestBytes ?? 0) > 0);
  assert.equal(second?.kind, 'sign_in');
  assert.equal(second?.forgejoLogin, 'grace');
  assert.equal(second?.argumentsSha256, null);
  audit.record(call(3));
  assert.equal(audit.queued, 0, 'a closed log takes nothing');
});
