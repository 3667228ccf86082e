import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ociConfig, packageRootBinds } from '../../agent/container.js';

test('a checkout under /tmp is bound into host-root containers after their own /tmp; elsewhere nothing', () => {
  assert.deepEqual(packageRootBinds('/work/pahlevan'), []);
  const binds = packageRootBinds('/tmp/fresh');
  assert.deepEqual(binds, [
    { destination: '/tmp/fresh', type: 'bind', source: '/tmp/fresh', options: ['rbind', 'ro'] },
  ]);
  const config = ociConfig({ runtime: 'runc', command: ['true'], mounts: binds }, '/pahlevan/x') as {
    mounts: Array<{ destination: string }>;
  };
  const order = config.mounts.map((m) => m.destination);
  assert.ok(
    order.indexOf('/tmp/fresh') > order.indexOf('/tmp'),
    `the bind must follow the tmpfs: ${order.join(' ')}`,
  );
});
