import { test } from 'node:test';
import assert from 'node:assert/strict';
import { behaviourOf, enforcerPolicy } from '../../agent/cluster/adapters.js';
import { enforcementFor, isLearning, type EnforcementTarget } from '../../agent/cluster/agent.js';
import { parsePolicy, type PahlevanPolicy } from '../../api/policy.js';
import { buildProfileSpec, type PahlevanProfile } from '../../api/profile.js';

test('learner events become observed behaviour; what observations do not record is dropped', () => {
  const base = { cgroupId: 1n, pid: 2 };
  assert.deepEqual(behaviourOf({ ...base, kind: 'syscall', nr: 0, name: 'read' }), {
    kind: 'syscall',
    name: 'read',
  });
  assert.deepEqual(behaviourOf({ ...base, kind: 'exec', path: '/bin/sh' }), {
    kind: 'exec',
    path: '/bin/sh',
  });
  assert.deepEqual(behaviourOf({ ...base, kind: 'file', path: '/etc/x', read: true, write: false }), {
    kind: 'file',
    path: '/etc/x',
    write: false,
  });
  const net = { ...base, kind: 'net' as const, family: 'ipv4' as const, address: '10.0.0.2' };
  assert.deepEqual(behaviourOf({ ...net, op: 'connect', protocol: 'tcp', port: 5432 }), {
    kind: 'port',
    direction: 'egress',
    protocol: 'TCP',
    port: 5432,
    address: '10.0.0.2',
  });
  assert.deepEqual(behaviourOf({ ...net, op: 'listen', protocol: 'tcp', port: 8080 }), {
    kind: 'port',
    direction: 'listen',
    protocol: 'TCP',
    port: 8080,
  });
  assert.deepEqual(behaviourOf({ ...net, op: 'bind', protocol: 'udp', port: 53 }), {
    kind: 'port',
    direction: 'listen',
    protocol: 'UDP',
    port: 53,
  });
  assert.equal(behaviourOf({ ...net, op: 'bind', protocol: 'tcp', port: 0 }), undefined, 'ephemeral bind');
  assert.equal(behaviourOf({ ...net, op: 'connect', protocol: 'ip-1', port: 0 }), undefined, 'ICMP');
  assert.equal(behaviourOf({ ...base, kind: 'exec', path: '' }), undefined);
});

function policy(status: PahlevanPolicy['status'], enforcement: object = {}): PahlevanPolicy {
  const r = parsePolicy({
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { selector: {}, enforcement: { mode: 'Enforce', layers: ['syscalls', 'network'], ...enforcement } },
    status,
  });
  assert.ok(r.ok, r.ok ? '' : r.errors.join());
  return r.policy;
}

const content = {
  seccomp: {
    defaultAction: 'SCMP_ACT_ERRNO' as const,
    syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' as const }],
  },
  execs: ['/bin/sh'],
  files: [{ path: '/etc/**', write: false }],
  ports: [
    { direction: 'listen' as const, protocol: 'TCP' as const, port: 8080 },
    { direction: 'egress' as const, protocol: 'UDP' as const, port: 53 },
    { direction: 'egress' as const, protocol: 'TCP' as const, port: 1, endPort: 65535, cidr: '127.0.0.0/8' },
  ],
};
const spec = buildProfileSpec('shop', 'web', 'app', content);
const profiles = new Map<string, PahlevanProfile>([
  [
    'shop/web.app.x',
    {
      apiVersion: 'pahlevan.io/v1alpha1',
      kind: 'PahlevanProfile',
      metadata: { name: 'web.app.x', namespace: 'shop' },
      spec,
    },
  ],
]);
const published = {
  container: 'app',
  hash: spec.hash,
  localhostProfile: spec.localhostProfile,
  profileName: 'web.app.x',
  syscalls: 1,
  nodesInstalled: 2,
  nodesReady: 2,
  usable: true,
};

test('what is enforced follows the phase: nothing while learning, the spec modes when enforcing, Monitor after a rollback', () => {
  assert.equal(
    enforcementFor(policy({ phase: 'Learning', profiles: [published] }), 'app', profiles),
    undefined,
  );
  assert.equal(
    enforcementFor(
      policy({ phase: 'Enforcing', profiles: [{ ...published, usable: false }] }),
      'app',
      profiles,
    ),
    undefined,
  );
  assert.equal(
    enforcementFor(policy({ phase: 'Enforcing', profiles: [published] }), 'other', profiles),
    undefined,
  );
  const enforcing = enforcementFor(policy({ phase: 'Enforcing', profiles: [published] }), 'app', profiles)!;
  assert.deepEqual(enforcing.modes, { syscalls: 'Enforce', network: 'Enforce', files: 'Off', execs: 'Off' });
  assert.deepEqual(enforcing.profile.execs, ['/bin/sh']);
  const rolledBack = enforcementFor(policy({ phase: 'RolledBack', profiles: [published] }), 'app', profiles)!;
  assert.deepEqual(rolledBack.modes, { syscalls: 'Monitor', network: 'Monitor', files: 'Off', execs: 'Off' });
});

test('a published profile becomes the enforcer policy; loopback is a flag, unexpandable ranges only monitor', () => {
  const target: EnforcementTarget = {
    namespace: 'shop',
    policy: 'web',
    container: 'app',
    ...enforcementFor(policy({ phase: 'Enforcing', profiles: [published] }), 'app', profiles)!,
  };
  const { policy: p, warnings } = enforcerPolicy(target);
  assert.deepEqual(p.network.ingress, [{ protocol: 'TCP', port: 8080 }]);
  assert.deepEqual(p.network.egress, [{ protocol: 'UDP', port: 53 }]);
  assert.equal(p.network.allowLoopback, true);
  assert.equal(p.modes.network, 'Enforce');
  assert.deepEqual(warnings, []);
  assert.deepEqual(
    p.execs.map((e) => e.path),
    ['/bin/sh'],
  );

  const wide = enforcerPolicy({ ...target, network: { allowDNS: true, allowLoopback: false } });
  assert.equal(wide.policy.modes.network, 'Monitor');
  assert.match(wide.warnings[0]!, /wider than 4096 ports: network layer only monitors/);
});

test('after publication, a new image or a stale profile is learned again and only monitored meanwhile', () => {
  const withImage = { ...published, image: 'busybox:1.36' };
  const p = policy({ phase: 'Enforcing', profiles: [withImage] });
  assert.equal(isLearning(p, 'app', 'busybox:1.36'), false, 'covered: enforcing, not learning');
  assert.equal(enforcementFor(p, 'app', profiles, 'busybox:1.36')!.modes.syscalls, 'Enforce');
  assert.equal(isLearning(p, 'app', 'busybox:1.37'), true, 'drift: learn the new image');
  assert.equal(
    enforcementFor(p, 'app', profiles, 'busybox:1.37')!.modes.syscalls,
    'Monitor',
    'previous profile, Monitor',
  );
  assert.equal(isLearning(p, 'sidecar', 'x'), true, 'a container with no profile yet is learned');
  const stale = policy({ phase: 'Enforcing', profiles: [{ ...withImage, stale: true }] });
  assert.equal(isLearning(stale, 'app', 'busybox:1.36'), true);
  assert.equal(enforcementFor(stale, 'app', profiles, 'busybox:1.36')!.modes.syscalls, 'Monitor');
  assert.equal(isLearning(policy({ phase: 'Learning' }), 'app'), true);
  assert.equal(isLearning(policy({ phase: 'Failed' }), 'app'), false);
  assert.equal(isLearning(undefined, 'app'), false);
});
