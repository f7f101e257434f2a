/**
 * The channel pool with in-memory children: caps, the idle reaper, token
 * rotation, a revoked credential, stop. It knows no era: these tests borrow
 * channels as a front would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isBrokerError } from '../../src/errors/errors.js';
import { silentLogger } from '../../src/log/logger.js';
import type { ChildChannel } from '../../src/pool/channel.js';
import { ChannelPool, type ChannelLease, type PoolOptions } from '../../src/pool/pool.js';
import { FakeCredentials, InMemorySpawner } from './in-memory-child.js';

const ALICE = { userId: '1', forgejoLogin: 'alice' };
const BOB = { userId: '2', forgejoLogin: 'bob' };
const CAROL = { userId: '3', forgejoLogin: 'carol' };

interface Fixture {
  readonly pool: ChannelPool;
  readonly spawner: InMemorySpawner;
  readonly credentials: FakeCredentials;
  /** The pool's clock; tests move it. */
  readonly clock: { now: number };
  readonly rotations: string[];
}

function fixture(options: Partial<PoolOptions> = {}): Fixture {
  const spawner = new InMemorySpawner();
  const credentials = new FakeCredentials();
  credentials.tokens.set(ALICE.userId, 'alice-1');
  credentials.tokens.set(BOB.userId, 'bob-1');
  credentials.tokens.set(CAROL.userId, 'carol-1');
  const clock = { now: 1_000_000 };
  const rotations: string[] = [];
  const pool = new ChannelPool({
    spawn: spawner.spawn,
    credentials,
    log: silentLogger(),
    maxChannels: 0,
    maxChannelsPerUser: 0,
    idleTimeoutMs: 60_000,
    refreshLeadMs: 0,
    requestTimeoutMs: 60_000,
    drainGraceMs: 60_000,
    now: () => clock.now,
    events: { rotation: (result) => rotations.push(result) },
    ...options,
  });
  return { pool, spawner, credentials, clock, rotations };
}

/** Borrows a live channel, as a front does once its channel serves. */
async function borrow(
  pool: ChannelPool,
  owner: typeof ALICE,
  name = `c-${owner.userId}`,
  busy?: () => boolean,
): Promise<{ lease: ChannelLease; channel: ChildChannel; ended: Promise<string> }> {
  const lease = await pool.reserve(owner, name);
  let onEnded: (reason: string) => void = () => undefined;
  const ended = new Promise<string>((resolve) => (onEnded = resolve));
  const channel = await lease.open({ log: silentLogger(), onEnded, onUnrelated: () => undefined });
  lease.commit(busy === undefined ? {} : { busy });
  return { lease, channel, ended };
}

function capacityRefusal(error: unknown): boolean {
  return isBrokerError(error, 'capacity');
}

test('the caps count live channels and reservations, overall and per user; a released reservation frees its place', async () => {
  const { pool } = fixture({ maxChannels: 2, maxChannelsPerUser: 1 });
  await borrow(pool, ALICE);
  await assert.rejects(pool.reserve(ALICE, 'second'), capacityRefusal);
  const reserved = await pool.reserve(BOB, 'bob');
  await assert.rejects(pool.reserve(CAROL, 'carol'), capacityRefusal);
  reserved.release();
  reserved.release();
  (await pool.reserve(CAROL, 'carol')).release();
});

test('a credential Forgejo refused is refused at the reservation, before any child starts, and leaves no place taken', async () => {
  const { pool, spawner, credentials } = fixture({ maxChannels: 1 });
  credentials.tokens.delete(ALICE.userId);
  await assert.rejects(pool.reserve(ALICE, 'a'), (error) => isBrokerError(error, 'credential_revoked'));
  assert.equal(spawner.children.length, 0);
  await borrow(pool, BOB);
});

test('a channel ending leaves the pool', async () => {
  const { pool, spawner } = fixture({ maxChannels: 1 });
  const { ended } = await borrow(pool, ALICE);
  assert.equal(pool.size, 1);
  spawner.children[0]?.crash();
  assert.equal(await ended, 'child_exit');
  assert.equal(pool.size, 0);
  await borrow(pool, BOB);
});

test('the reaper ends channels idle past the timeout and spares used, busy and working ones', async () => {
  const { pool, spawner, clock } = fixture();
  const idle = await borrow(pool, ALICE, 'idle');
  const used = await borrow(pool, ALICE, 'used');
  const listening = await borrow(pool, BOB, 'listening', () => true);
  const working = await borrow(pool, BOB, 'working');
  spawner.children[3]?.holding.add('tools/call');
  working.channel.request(
    { jsonrpc: '2.0', id: 1, method: 'tools/call' },
    { notify: () => undefined, serverRequest: () => undefined, respond: () => undefined },
  );
  clock.now += 60_001;
  used.lease.touch();
  assert.equal(await pool.reapIdle(), 1);
  assert.equal(await idle.ended, 'idle');
  assert.equal(spawner.children[0]?.stopped, true);
  for (const kept of [used, listening, working]) assert.equal(kept.channel.ended, false);
  assert.equal(pool.size, 3);
});

test('a rotation moves every channel of the user that holds an older token onto a child with the new one, keeping the channel', async () => {
  const { pool, spawner, credentials, rotations } = fixture();
  const first = await borrow(pool, ALICE, 'a1');
  const second = await borrow(pool, ALICE, 'a2');
  const bob = await borrow(pool, BOB, 'b');
  credentials.tokens.set(ALICE.userId, 'alice-2');
  await pool.rotateUser(ALICE.userId);
  const spawned = spawner.children.slice(3);
  assert.deepEqual(spawned.map((child) => [child.spec.sessionId, child.spec.forgejoToken]).sort(), [
    ['a1', 'alice-2'],
    ['a2', 'alice-2'],
  ]);
  assert.deepEqual(rotations, ['moved', 'moved']);
  for (const { channel } of [first, second])
    assert.equal(spawner.children.find((child) => child === channel.child)?.spec.forgejoToken, 'alice-2');
  assert.equal(bob.channel.child, spawner.children[2]);
  // Nothing to do when every child already holds the current token.
  await pool.rotateUser(ALICE.userId);
  assert.equal(spawner.children.length, 5);
});

test('a channel that went live while a rotation was collecting is rotated after it', async () => {
  const { pool, spawner, credentials } = fixture();
  await borrow(pool, ALICE, 'early');
  // Reserved (and its token read) before the rotation, live only after it collected the channels.
  const late = await pool.reserve(ALICE, 'late');
  const channel = await late.open({ log: silentLogger(), onEnded: () => undefined, onUnrelated: () => undefined });
  credentials.tokens.set(ALICE.userId, 'alice-2');
  await pool.rotateUser(ALICE.userId);
  late.commit();
  await spawner.child(3);
  while (channel.child === spawner.children[1]) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(spawner.children[3]?.spec.sessionId, 'late');
  assert.equal(spawner.children[3]?.spec.forgejoToken, 'alice-2');
});

test('a rotation whose spawn fails keeps the old child', async () => {
  const { pool, spawner, credentials, rotations } = fixture();
  const { channel } = await borrow(pool, ALICE);
  credentials.tokens.set(ALICE.userId, 'alice-2');
  spawner.failure = new Error('no more processes');
  await pool.rotateUser(ALICE.userId);
  assert.deepEqual(rotations, ['failed']);
  assert.equal(channel.child, spawner.children[0]);
  assert.equal(channel.ended, false);
});

test('a credential refused at rotation ends the user’s channels; one Forgejo did not answer for keeps them', async () => {
  const { pool, credentials, rotations } = fixture();
  const alice = await borrow(pool, ALICE);
  const bob = await borrow(pool, BOB);
  credentials.failing.add(BOB.userId);
  credentials.tokens.delete(ALICE.userId);
  await pool.rotateDue();
  assert.equal(await alice.ended, 'credential_revoked');
  assert.equal(bob.channel.ended, false);
  assert.deepEqual(rotations, ['revoked']);
});

test('stop ends every live channel and refuses new reservations', async () => {
  const { pool, spawner } = fixture();
  const alice = await borrow(pool, ALICE);
  const bob = await borrow(pool, BOB);
  await pool.stop();
  assert.equal(await alice.ended, 'broker_stopping');
  assert.equal(await bob.ended, 'broker_stopping');
  assert.ok(spawner.children.every((child) => child.stopped));
  await assert.rejects(pool.reserve(ALICE, 'again'), (error) => isBrokerError(error, 'unavailable'));
});
