import { ALWAYS_ALLOWED_SYSCALLS } from '../../api/seccomp.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolicySpec } from '../../api/policy.js';
import type { ContainerObservation, ObservationSpec } from '../../api/observation.js';
import {
  allowancesFromDenied,
  globToRegExp,
  mergeObservations,
  syscallCoverage,
} from '../../webhook/controller/merge.js';

const spec = (extra: object = {}) => PolicySpec.parse({ selector: {}, ...extra });

function container(
  name: string,
  syscalls: string[],
  more: Partial<ContainerObservation> = {},
): ContainerObservation {
  return {
    name,
    images: ['img:1'],
    pods: [`${name}-pod`],
    syscalls: Object.fromEntries(syscalls.map((s) => [s, { count: 1, pods: 1 }])),
    execs: {},
    files: {},
    ports: [],
    ...more,
  };
}

function obs(node: string, containers: ContainerObservation[]): ObservationSpec {
  return {
    policy: 'p',
    node,
    containers,
    violations: { total: 0, byLayer: {}, denied: [] },
    layers: { active: [], missing: [] },
    installed: [],
  };
}

const allNames = (m: ReturnType<typeof mergeObservations>, c = 0) =>
  m.containers[c]!.content.seccomp.syscalls.flatMap((r) => r.names);
/** What the profile allows beyond the syscalls every profile carries (api/seccomp.ts). */
const allowed = (m: ReturnType<typeof mergeObservations>, c = 0) =>
  allNames(m, c).filter((n) => !ALWAYS_ALLOWED_SYSCALLS.includes(n));

test('union over nodes with per-syscall coverage of nodes and pods', () => {
  const m = mergeObservations(spec(), [
    obs('n1', [
      container('web', ['read', 'write'], {
        pods: ['a', 'b'],
        syscalls: { read: { count: 5, pods: 2 }, write: { count: 1, pods: 1 } },
      }),
    ]),
    obs('n2', [container('web', ['read', 'openat'], { pods: ['c'] }), container('side', ['nanosleep'])]),
  ]);
  assert.deepEqual(
    m.containers.map((c) => c.container),
    ['side', 'web'],
  );
  const web = m.containers[1]!;
  assert.deepEqual(allowed(m, 1), ['openat', 'read', 'write']);
  assert.deepEqual(syscallCoverage(web), {
    openat: { nodes: 1, pods: 1 },
    read: { nodes: 2, pods: 3 },
    write: { nodes: 1, pods: 1 },
  });
  assert.equal(web.nodes, 2);
  assert.equal(web.pods, 3);
  assert.equal(m.podsObserved, 4);
  assert.deepEqual(m.totals, { syscalls: 4, execs: 0, files: 0, ports: 0 });
  assert.equal(m.containers[1]!.content.seccomp.defaultAction, 'SCMP_ACT_ERRNO');
});

test('explicit allow adds, explicit deny wins over learned and allowed', () => {
  const m = mergeObservations(
    spec({ syscalls: { allow: ['keyctl', 'ptrace'], deny: ['ptrace', 'mount', 'futex'] } }),
    [obs('n1', [container('web', ['read', 'mount'])])],
  );
  assert.deepEqual(allowed(m), ['keyctl', 'read']);
  // Deny wins even over the syscalls every profile carries.
  assert.ok(!allNames(m).includes('futex'));
  for (const s of ALWAYS_ALLOWED_SYSCALLS.filter((n) => n !== 'futex')) assert.ok(allNames(m).includes(s), s);
});

test('files: write intent is an OR over nodes, deny globs remove, allow adds writable', () => {
  const m = mergeObservations(spec({ files: { allow: ['/data/**'], deny: ['/etc/shadow', '/secret/*'] } }), [
    obs('n1', [
      container('web', [], {
        files: {
          '/etc/hosts': { count: 1, pods: 1, write: false },
          '/etc/shadow': { count: 1, pods: 1, write: false },
        },
      }),
    ]),
    obs('n2', [
      container('web', [], {
        files: {
          '/etc/hosts': { count: 1, pods: 1, write: true },
          '/secret/key': { count: 1, pods: 1, write: false },
        },
      }),
    ]),
  ]);
  assert.deepEqual(m.containers[0]!.content.files, [
    { path: '/data/**', write: true },
    { path: '/etc/hosts', write: true },
  ]);
  assert.ok(globToRegExp('/secret/*').test('/secret/key'));
  assert.ok(!globToRegExp('/secret/*').test('/secret/a/b'));
  assert.ok(globToRegExp('/a/**').test('/a/b/c'));
});

test('ports: learned, explicit rules, DNS and loopback unless disabled', () => {
  const ports = [{ direction: 'listen' as const, protocol: 'TCP' as const, port: 8080, count: 1, pods: 1 }];
  const on = mergeObservations(spec(), [obs('n1', [container('web', [], { ports })])]).containers[0]!.content
    .ports;
  assert.ok(on.some((p) => p.direction === 'listen' && p.port === 8080));
  assert.ok(on.some((p) => p.direction === 'egress' && p.protocol === 'UDP' && p.port === 53));
  assert.ok(on.some((p) => p.cidr === '127.0.0.0/8'));
  const off = mergeObservations(
    spec({ network: { allowDNS: false, allowLoopback: false, egress: [{ port: 443, cidr: '10.0.0.0/8' }] } }),
    [obs('n1', [container('web', [], { ports })])],
  ).containers[0]!.content.ports;
  assert.deepEqual(off, [
    { direction: 'egress', protocol: 'TCP', port: 443, cidr: '10.0.0.0/8' },
    { direction: 'listen', protocol: 'TCP', port: 8080 },
  ]);
});

test('deterministic: any order of nodes and keys gives the same content and hash', () => {
  const names = fc.uniqueArray(fc.constantFrom('read', 'write', 'openat', 'close', 'mmap', 'futex', 'brk'), {
    minLength: 1,
  });
  fc.assert(
    fc.property(fc.array(names, { minLength: 1, maxLength: 6 }), fc.integer(), (perNode, seed) => {
      const observations = perNode.map((s, i) => obs(`n${i}`, [container('web', s)]));
      const shuffled = [...observations]
        .map((o, i) => ({ o, k: (i * 7919 + seed) % 1009 }))
        .sort((a, b) => a.k - b.k)
        .map(({ o }) => ({
          ...o,
          containers: o.containers.map((c) => ({
            ...c,
            syscalls: Object.fromEntries(Object.entries(c.syscalls).reverse()),
          })),
        }));
      const a = mergeObservations(spec(), observations);
      const b = mergeObservations(spec(), shuffled);
      assert.equal(a.containers[0]!.hash, b.containers[0]!.hash);
      assert.deepEqual(a.containers[0]!.content, b.containers[0]!.content);
      assert.deepEqual(
        allowed(a),
        [...new Set(perNode.flat())].filter((n) => !ALWAYS_ALLOWED_SYSCALLS.includes(n)).sort(),
      );
    }),
  );
});

test('behaviour hash changes with new behaviour, not with explicit policy additions', () => {
  const base = [obs('n1', [container('web', ['read'])])];
  const a = mergeObservations(spec(), base).containers[0]!;
  const b = mergeObservations(spec({ syscalls: { allow: ['keyctl'] } }), base).containers[0]!;
  const c = mergeObservations(spec(), [obs('n1', [container('web', ['read', 'write'])])]).containers[0]!;
  assert.equal(a.behaviourHash, b.behaviourHash);
  assert.notEqual(a.hash, b.hash);
  assert.notEqual(a.behaviourHash, c.behaviourHash);
});

test('Relax understands the agent enforcer texts', () => {
  const d = (layer: 'syscalls' | 'files' | 'execs' | 'network', what: string) => ({
    container: 'web',
    layer,
    what,
    count: 1,
  });
  assert.deepEqual(
    allowancesFromDenied(
      [
        d('syscalls', 'ioprio_set (251) -> -1'),
        d('execs', '/bin/nc (allowed: Monitor)'),
        d('files', '/etc/shadow'),
        d('network', 'tcp bind :8080'),
        d('network', 'udp from 10.0.0.9 to port 53'),
        d('network', 'tcp 93.184.216.34:443'),
        d('network', 'tcp [fd00::1]:8443'),
        d('network', 'garbage'),
        { ...d('syscalls', 'ptrace'), container: 'other' },
      ],
      'web',
    ),
    {
      syscalls: ['ioprio_set'],
      execs: ['/bin/nc'],
      files: [{ path: '/etc/shadow', write: true }],
      ports: [
        { direction: 'egress', protocol: 'TCP', port: 443, cidr: '93.184.216.34/32' },
        { direction: 'egress', protocol: 'TCP', port: 8443, cidr: 'fd00::1/128' },
        { direction: 'listen', protocol: 'UDP', port: 53 },
        { direction: 'listen', protocol: 'TCP', port: 8080 },
      ],
    },
  );
});

test('violations: denied behaviour summed over nodes and turned into allowances for Relax', () => {
  const o1 = obs('n1', []);
  o1.violations = {
    total: 3,
    byLayer: { syscalls: 3 },
    denied: [{ container: 'web', layer: 'syscalls', what: 'ptrace', count: 3 }],
  };
  const o2 = obs('n2', []);
  o2.violations = {
    total: 4,
    byLayer: { syscalls: 2, network: 2 },
    denied: [
      { container: 'web', layer: 'syscalls', what: 'ptrace', count: 2 },
      { container: 'web', layer: 'network', what: 'egress/TCP/443', count: 2 },
    ],
  };
  const m = mergeObservations(spec(), [o1, o2]);
  assert.deepEqual(
    m.denied.map((d) => [d.what, d.count]),
    [
      ['egress/TCP/443', 2],
      ['ptrace', 5],
    ],
  );
  assert.deepEqual(allowancesFromDenied(m.denied, 'web'), {
    syscalls: ['ptrace'],
    execs: [],
    files: [],
    ports: [{ direction: 'egress', protocol: 'TCP', port: 443 }],
  });
});
