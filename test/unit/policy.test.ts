import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicy, parseDurationMs, layerMode } from '../../api/policy.js';

const base = {
  apiVersion: 'pahlevan.io/v1alpha1',
  kind: 'PahlevanPolicy',
  metadata: { name: 'web', namespace: 'shop' },
  spec: { selector: { matchLabels: { app: 'web' } } },
};

test('a minimal policy gets the documented defaults', () => {
  const r = parsePolicy(base);
  assert.ok(r.ok);
  assert.equal(r.policy.spec.learning.duration, '10m');
  assert.equal(r.policy.spec.enforcement.mode, 'Monitor');
  assert.deepEqual(r.policy.spec.enforcement.layers, ['syscalls', 'files', 'execs', 'network']);
  assert.equal(r.policy.spec.network.allowDNS, true);
  assert.equal(layerMode(r.policy.spec, 'files'), 'Monitor');
});

test('a bad duration names the field and the value', () => {
  const r = parsePolicy({ ...base, spec: { ...base.spec, learning: { duration: 'ten' } } });
  assert.ok(!r.ok);
  assert.deepEqual(r.errors, ['spec.learning.duration: expected a duration like 10m, got "ten"']);
});

test('durations parse to milliseconds', () => {
  assert.equal(parseDurationMs('1h30m'), 5_400_000);
  assert.equal(parseDurationMs('250ms'), 250);
  assert.throws(() => parseDurationMs('5 minutes'), /expected a duration/);
});
