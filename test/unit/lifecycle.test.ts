import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolicySpec, type PolicyStatus } from '../../api/policy.js';
import {
  endLearningRequested,
  reconcilePolicy,
  type DesiredProfile,
  type LifecycleInput,
  type LifecycleResult,
} from '../../webhook/controller/lifecycle.js';

const MIN = 60_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');

function desired(container: string, hash: string, images = ['img:1']): DesiredProfile {
  return {
    container,
    hash,
    images,
    syscalls: 10,
    profileName: `p.${container}.${hash.slice(0, 16)}`,
    localhostProfile: `pahlevan/ns/p/${container}-${hash.slice(0, 16)}.json`,
  };
}

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);

/** A small world the tests advance step by step, feeding each result's status into the next call. */
class World {
  status: PolicyStatus | undefined;
  generation = 1;
  nowMs = T0;
  containers = [desired('web', HASH_A)];
  totals = { syscalls: 10, execs: 0, files: 0, ports: 0 };
  ready = ['n1', 'n2'];
  installed = new Map<string, Set<string>>();
  inWindow = 0;
  relaxed: DesiredProfile[] | undefined;
  endLearning = false;
  events: string[] = [];
  last!: LifecycleResult;
  constructor(
    public spec = PolicySpec.parse({
      selector: {},
      learning: { duration: '10m', window: '1m', stableWindows: 3 },
    }),
  ) {}

  step(advanceMs = 0): LifecycleResult {
    this.nowMs += advanceMs;
    const input: LifecycleInput = {
      nowMs: this.nowMs,
      generation: this.generation,
      spec: this.spec,
      status: this.status,
      endLearningRequested: this.endLearning,
      merged: { containers: this.containers, podsObserved: 2, nodesReporting: 2, totals: { ...this.totals } },
      relaxed: this.relaxed,
      readyNodes: this.ready,
      installedByNode: this.installed,
      nodeLayers: [{ node: 'n1', active: ['syscalls'], missing: [] }],
      violations: { inWindow: this.inWindow, total: this.inWindow, byLayer: {}, denied: [] },
    };
    this.last = reconcilePolicy(input);
    this.status = this.last.status;
    this.events.push(...this.last.events.map((e) => e.reason));
    return this.last;
  }

  ack(node: string, hash: string) {
    (this.installed.get(node) ?? this.installed.set(node, new Set()).get(node)!).add(hash);
  }

  cond(type: string) {
    return this.status!.conditions!.find((c) => c.type === type)!;
  }
}

test('stays Learning until the duration has passed, even when stable', () => {
  const w = new World();
  w.step();
  assert.equal(w.status!.phase, 'Learning');
  w.step(5 * MIN);
  assert.equal(w.status!.learning!.stableWindows, 5);
  assert.equal(w.status!.phase, 'Learning', 'duration 10m not reached');
  const r = w.step(5 * MIN);
  assert.equal(w.status!.phase, 'Monitoring');
  assert.deepEqual(r.publish, ['web']);
  assert.equal(w.status!.profiles![0]!.hash, HASH_A);
  assert.equal(w.cond('Enforcing').reason, 'AwaitingApproval');
});

test('new behaviour resets the stable window count; publication waits for N clean windows', () => {
  const w = new World();
  w.step();
  w.step(9 * MIN);
  w.totals.syscalls = 11; // a new syscall shows up at 9m
  w.step(MIN);
  assert.equal(w.status!.learning!.stableWindows, 0);
  assert.equal(w.status!.phase, 'Learning');
  w.step(2 * MIN);
  assert.equal(w.status!.learning!.stableWindows, 2);
  assert.equal(w.status!.phase, 'Learning');
  w.step(MIN);
  assert.equal(w.status!.phase, 'Monitoring');
});

test('autoEnforce promotes to Enforcing; profiles are usable only when every ready node acked', () => {
  const w = new World(
    PolicySpec.parse({
      selector: {},
      learning: { duration: '1m', window: '1m', stableWindows: 1, autoEnforce: true },
    }),
  );
  w.step();
  w.step(MIN);
  assert.equal(w.status!.phase, 'Enforcing');
  assert.equal(w.status!.profiles![0]!.usable, false);
  assert.equal(w.cond('ProfilesReady').reason, 'WaitingForAcks');
  w.ack('n1', HASH_A);
  w.step(1000);
  assert.equal(w.status!.profiles![0]!.nodesInstalled, 1);
  assert.equal(w.status!.profiles![0]!.usable, false);
  w.ack('n2', HASH_A);
  w.step(1000);
  assert.equal(w.status!.profiles![0]!.usable, true);
  assert.equal(w.cond('ProfilesReady').status, 'True');
  assert.ok(w.events.includes('ProfileUsable'));
  w.ready = ['n1', 'n2', 'n3']; // a new node without the profile: no longer usable everywhere
  w.step(1000);
  assert.equal(w.status!.profiles![0]!.usable, false);
});

test('waiting for the admin: setting autoEnforce later enforces', () => {
  const w = new World(
    PolicySpec.parse({ selector: {}, learning: { duration: '1m', window: '1m', stableWindows: 1 } }),
  );
  w.step();
  w.step(MIN);
  assert.equal(w.status!.phase, 'Monitoring');
  w.spec = PolicySpec.parse({
    selector: {},
    learning: { duration: '1m', window: '1m', stableWindows: 1, autoEnforce: true },
  });
  w.generation = 2;
  w.step(1000);
  assert.equal(w.status!.phase, 'Enforcing');
  assert.equal(w.cond('Enforcing').observedGeneration, 2);
});

test('end of learning on request publishes at once', () => {
  const w = new World();
  w.step();
  w.endLearning = true;
  const r = w.step(1000);
  assert.deepEqual(r.publish, ['web']);
  assert.equal(w.status!.phase, 'Monitoring');
});

test('a new version keeps the previous usable one until it is acked everywhere', () => {
  const w = new World(
    PolicySpec.parse({
      selector: {},
      learning: { duration: '1m', window: '1m', stableWindows: 1, autoEnforce: true },
    }),
  );
  w.step();
  w.step(MIN);
  w.ack('n1', HASH_A);
  w.ack('n2', HASH_A);
  w.step(1000);
  w.containers = [desired('web', HASH_B)];
  w.totals.syscalls = 11;
  w.step(1000);
  assert.deepEqual(w.last.publish, [], 'not republished before behaviour is stable again');
  w.step(MIN);
  assert.deepEqual(w.last.publish, ['web']);
  assert.deepEqual(
    w.status!.profiles!.map((p) => [p.hash, p.usable]),
    [
      [HASH_A, true],
      [HASH_B, false],
    ],
  );
  w.ack('n1', HASH_B);
  w.ack('n2', HASH_B);
  w.step(1000);
  assert.deepEqual(
    w.status!.profiles!.map((p) => [p.hash, p.usable]),
    [[HASH_B, true]],
  );
});

test('image drift marks the profile stale, restarts stability, republishes covering the new image', () => {
  const w = new World(
    PolicySpec.parse({
      selector: {},
      learning: { duration: '1m', window: '1m', stableWindows: 2, autoEnforce: true },
    }),
  );
  w.step();
  w.step(2 * MIN);
  w.ack('n1', HASH_A);
  w.ack('n2', HASH_A);
  w.step(1000);
  // The agents report a second image; the merged content (whose hash covers the images) changes.
  w.containers = [desired('web', HASH_B, ['img:1', 'img:2'])];
  w.step(1000);
  assert.equal(w.status!.profiles![0]!.stale, true);
  assert.equal(w.cond('Drifted').status, 'True');
  assert.ok(w.events.includes('ImageDrift'));
  assert.equal(w.status!.profiles![0]!.usable, true, 'the previous profile stays attached meanwhile');
  w.step(MIN);
  assert.equal(w.status!.profiles![0]!.stale, true, 'not before stableWindows');
  w.step(MIN);
  assert.deepEqual(w.last.publish, ['web']);
  const [old, next] = w.status!.profiles!;
  assert.deepEqual(
    [old!.hash, old!.stale, old!.usable],
    [HASH_A, true, true],
    'old version attached until acked',
  );
  assert.deepEqual([next!.hash, next!.image, next!.usable], [HASH_B, 'img:2', false]);
  w.ack('n1', HASH_B);
  w.ack('n2', HASH_B);
  w.step(1000);
  assert.deepEqual(
    w.status!.profiles!.map((p) => [p.hash, p.stale, p.usable]),
    [[HASH_B, false, true]],
  );
  assert.equal(w.cond('Drifted').status, 'False');
  assert.equal(w.events.filter((e) => e === 'ImageDrift').length, 1);
});

function enforcing(strategy: string) {
  const w = new World(
    PolicySpec.parse({
      selector: {},
      learning: { duration: '1m', window: '1m', stableWindows: 1, autoEnforce: true },
      selfHealing: { threshold: 10, strategy, cooldown: '5m' },
    }),
  );
  w.step();
  w.step(MIN);
  w.ack('n1', HASH_A);
  w.ack('n2', HASH_A);
  w.step(1000);
  assert.equal(w.status!.phase, 'Enforcing');
  w.step(MIN); // violations count once a full self-healing window was enforced
  return w;
}

test('self-healing Rollback: at the threshold, once, sticky until the spec changes', () => {
  const w = enforcing('Rollback');
  w.inWindow = 9;
  w.step(1000);
  assert.equal(w.status!.phase, 'Enforcing');
  w.inWindow = 10;
  const r = w.step(1000);
  assert.equal(r.action, 'Rollback');
  assert.equal(w.status!.phase, 'RolledBack');
  assert.equal(w.status!.selfHealing!.lastAction, 'Rollback');
  assert.ok(r.events.some((e) => e.type === 'Warning' && e.reason === 'RolledBack'));
  w.inWindow = 0;
  for (let i = 0; i < 3; i++) w.step(MIN);
  assert.equal(w.status!.phase, 'RolledBack', 'no flapping back by itself');
  w.generation = 2;
  w.step(1000);
  assert.equal(w.status!.phase, 'Enforcing');
  w.inWindow = 50;
  assert.equal(w.step(1000).action, undefined, 'cooldown: no second action within 5m');
  assert.equal(w.status!.phase, 'Enforcing');
  assert.equal(w.step(2 * MIN).action, 'Rollback');
});

test('self-healing Relax publishes the relaxed profile; Relearn goes back to Learning', () => {
  const w = enforcing('Relax');
  w.relaxed = [desired('web', HASH_B)];
  w.inWindow = 12;
  const r = w.step(1000);
  assert.equal(r.action, 'Relax');
  assert.deepEqual(r.publish, ['web']);
  assert.equal(w.status!.phase, 'Enforcing');
  assert.deepEqual(
    w.status!.profiles!.map((p) => p.hash),
    [HASH_A, HASH_B],
  );

  const v = enforcing('Relearn');
  v.inWindow = 12;
  const r2 = v.step(1000);
  assert.equal(r2.action, 'Relearn');
  assert.equal(v.status!.phase, 'Learning');
  assert.equal(v.status!.learning!.stableWindows, 0);
  assert.equal(v.status!.learning!.startedAt, new Date(v.nowMs).toISOString());
});

test('conditions follow conventions: lastTransitionTime moves only when status flips', () => {
  const w = new World();
  w.step();
  const t1 = w.cond('Learning').lastTransitionTime;
  w.step(MIN);
  assert.equal(w.cond('Learning').lastTransitionTime, t1);
  w.step(10 * MIN);
  assert.equal(w.cond('Learning').status, 'False');
  assert.notEqual(w.cond('Learning').lastTransitionTime, t1);
  for (const c of w.status!.conditions!) {
    assert.match(c.reason, /^[A-Z][A-Za-z]*$/, 'reasons are CamelCase');
    assert.equal(c.observedGeneration, 1);
  }
});

test('the end-learning stamp ends only the learning run it was given in', () => {
  assert.equal(endLearningRequested(undefined, '2026-01-01T00:00:00Z'), false);
  assert.equal(endLearningRequested('2026-01-01T00:05:00Z', '2026-01-01T00:00:00Z'), true);
  assert.equal(
    endLearningRequested('2026-01-01T00:05:00Z', '2026-01-01T01:00:00Z'),
    false,
    'a later Relearn',
  );
  assert.equal(
    endLearningRequested('yes', '2026-01-01T00:00:00Z'),
    true,
    'any other value ends learning now',
  );
});

test('property: whatever the violations and timing, actions respect the cooldown and RolledBack is left only on a spec change', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('Rollback', 'Relax', 'Relearn'),
      fc.array(
        fc.record({
          advanceMs: fc.integer({ min: 0, max: 3 * MIN }),
          inWindow: fc.integer({ min: 0, max: 30 }),
          bumpGeneration: fc.boolean(),
          newBehaviour: fc.boolean(),
        }),
        { maxLength: 40 },
      ),
      (strategy, steps) => {
        const w = enforcing(strategy);
        let lastActionMs: number | undefined;
        for (const s of steps) {
          const phaseBefore = w.status!.phase;
          if (s.bumpGeneration) w.generation++;
          if (s.newBehaviour) w.totals.syscalls++;
          w.inWindow = s.inWindow;
          const r = w.step(s.advanceMs);
          if (r.action) {
            assert.ok(lastActionMs === undefined || w.nowMs - lastActionMs >= 5 * MIN, 'cooldown respected');
            assert.ok(s.inWindow >= 10, 'only at the threshold');
            assert.equal(phaseBefore, 'Enforcing', 'only while enforcing');
            lastActionMs = w.nowMs;
          }
          if (phaseBefore === 'RolledBack' && w.status!.phase !== 'RolledBack')
            assert.ok(s.bumpGeneration, 'left RolledBack only after a spec change');
        }
      },
    ),
    { numRuns: 200 },
  );
});
