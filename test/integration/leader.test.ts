// Lease-based leader election, driven round by round with a fake clock against the stand-in API server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { LeaderElector } from '../../webhook/controller/leader.js';

let api: FakeApiServer;
before(async () => {
  api = await FakeApiServer.start();
});
after(async () => {
  await api.stop();
});

function elector(identity: string, clock: { ms: number }, log: string[], name: string) {
  return new LeaderElector({
    kubeConfig: api.kubeConfig(),
    namespace: 'default',
    name,
    identity,
    leaseDurationSeconds: 10,
    renewDeadlineMs: 5000,
    retryPeriodMs: 1000,
    now: () => clock.ms,
    onStartedLeading: () => log.push(`${identity} started`),
    onStoppedLeading: () => log.push(`${identity} stopped`),
  });
}

test('a candidate waits a full lease duration of its own observation before taking over', async () => {
  const clock = { ms: Date.parse('2026-01-01T00:00:00Z') };
  const log: string[] = [];
  const a = elector('a', clock, log, 'lease-1');
  const b = elector('b', clock, log, 'lease-1');
  assert.equal(await a.tryAcquireOrRenew(), true);
  assert.equal(await b.tryAcquireOrRenew(), false);
  clock.ms += 9000;
  assert.equal(
    await b.tryAcquireOrRenew(),
    false,
    'a renewed nothing, but 9 s < 10 s since b first saw the record',
  );
  clock.ms += 500; // t = 9.5 s
  assert.equal(await a.tryAcquireOrRenew(), true, 'a renews');
  clock.ms += 500; // t = 10 s: b sees the renewed record; its wait starts again from here
  assert.equal(await b.tryAcquireOrRenew(), false);
  clock.ms += 9000; // t = 19 s
  assert.equal(await b.tryAcquireOrRenew(), false, 'the renewal restarted b’s wait');
  clock.ms += 1000; // t = 20 s: 10 s without a change seen by b
  assert.equal(await b.tryAcquireOrRenew(), true, 'a stopped renewing: b takes over');
  const lease = await api
    .kubeConfig()
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: 'lease-1', namespace: 'default' });
  assert.equal(lease.spec!.holderIdentity, 'b');
  assert.equal(lease.spec!.leaseTransitions, 1);
  assert.equal(await a.tryAcquireOrRenew(), false, 'a sees b holding it and steps down');
  assert.deepEqual(log, ['a started', 'b started', 'a stopped']);
});

test('the leader steps down when it cannot renew within the renew deadline', async () => {
  const clock = { ms: Date.parse('2026-01-01T00:00:00Z') };
  const log: string[] = [];
  const a = elector('a', clock, log, 'lease-2');
  assert.equal(await a.tryAcquireOrRenew(), true);
  api.setAvailable(false);
  try {
    clock.ms += 3000;
    assert.equal(await a.tryAcquireOrRenew(), true, 'within the deadline it still leads');
    clock.ms += 2500;
    assert.equal(await a.tryAcquireOrRenew(), false, 'past the deadline it gives up');
    assert.equal(a.isLeader, false);
  } finally {
    api.setAvailable(true);
  }
  assert.deepEqual(log, ['a started', 'a stopped']);
});

test('two candidates racing for a free lease: exactly one wins (resourceVersion conflict)', async () => {
  const clock = { ms: Date.parse('2026-01-01T00:00:00Z') };
  const log: string[] = [];
  const a = elector('a', clock, log, 'lease-3');
  const b = elector('b', clock, log, 'lease-3');
  const results = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
  assert.deepEqual(results.filter(Boolean).length, 1);
  // Released: the other candidate takes over at once, without waiting for expiry.
  const winner = results[0] ? a : b;
  const loser = results[0] ? b : a;
  await winner.stop(true);
  assert.equal(await loser.tryAcquireOrRenew(), true);
});
