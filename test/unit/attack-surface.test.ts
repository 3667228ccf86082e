import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  allowedSyscalls,
  computeAttackSurface,
  parseBehaviour,
  riskScore,
  toStatus,
  writablePathWeight,
  formatSurfaceText,
  DANGEROUS_SYSCALLS,
} from '../../api/attack-surface.js';
import { loadSurfaceReference } from '../../api/attack-surface-data.js';
import { AttackSurface, parsePolicy } from '../../api/policy.js';
import type { OciSeccompProfile } from '../../api/seccomp.js';

const ref = loadSurfaceReference();

function ociProfile(names: string[]): OciSeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names, action: 'SCMP_ACT_ALLOW' }],
  };
}

test('the runtime default on x86_64: 313 syscalls, ptrace/mount/unshare/keyctl in, bpf/init_module out', () => {
  assert.equal(ref.runtimeDefault.size, 313);
  for (const n of ['ptrace', 'mount', 'unshare', 'keyctl', 'setns', 'arch_prctl', 'modify_ldt', 'socket'])
    assert.ok(ref.runtimeDefault.has(n), n);
  for (const n of ['bpf', 'init_module', 'kexec_load', 'userfaultfd', 'open_by_handle_at', '_llseek'])
    assert.ok(!ref.runtimeDefault.has(n), n);
});

test('capabilities unlock the default profile’s conditional rules', async () => {
  const { readFileSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const file = fileURLToPath(
    new URL('../../../api/reference/containers-common-default-seccomp.json', import.meta.url),
  );
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const admin = allowedSyscalls(profile, ref.archSyscalls, { caps: ['CAP_SYS_ADMIN'] });
  assert.ok(admin.has('bpf') && admin.has('setdomainname'));
  assert.ok(!admin.has('init_module'));
  const arm = allowedSyscalls(profile, ref.archSyscalls, { arch: 'SCMP_ARCH_AARCH64' });
  assert.ok(!arm.has('arch_prctl'), 'amd64-only rule must not apply on arm64');
});

test('an OCI allow-list counts its names that exist on the architecture; a permissive default counts the rest', () => {
  assert.deepEqual(
    [...allowedSyscalls(ociProfile(['read', 'write', 'no_such_call', 'mmap2']), ref.archSyscalls)].sort(),
    ['read', 'write'],
  );
  const permissive = allowedSyscalls(
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO' }] },
    ref.archSyscalls,
  );
  assert.equal(permissive.size, ref.archSyscalls.size - 1);
  assert.ok(!permissive.has('ptrace'));
});

test('a learned profile: counts, dangerous still allowed and removed, ports, paths, policy additions', () => {
  const profile = ociProfile(['read', 'write', 'openat', 'close', 'accept4', 'ptrace', 'bpf', 'execve']);
  const behaviour = parseBehaviour({
    execs: ['/usr/bin/python3'],
    files: [
      { path: '/tmp/cache', write: true },
      { path: '/etc/passwd', write: false },
      { path: '/dev/null', write: true },
    ],
    ports: [
      { kind: 'listen', protocol: 'tcp', port: 8080 },
      { kind: 'connect', protocol: 'udp', port: 53 },
      { kind: 'connect', protocol: 'tcp', port: 5432 },
    ],
  });
  const spec = parsePolicy({
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name: 'p' },
    spec: {
      selector: {},
      syscalls: { allow: ['getppid'], deny: ['ptrace'] },
      network: { allowDNS: false, egress: [{ port: 9000, endPort: 9010 }] },
    },
  });
  assert.ok(spec.ok);
  const r = computeAttackSurface({
    container: 'web',
    profile,
    behaviour,
    spec: spec.policy.spec,
    runtimeDefault: ref.runtimeDefault,
    archSyscalls: ref.archSyscalls,
  });
  assert.equal(r.syscallsAllowed, 8); // 8 - ptrace (denied by policy) + getppid
  assert.deepEqual(r.dangerousAllowed, ['bpf']);
  assert.ok(r.dangerousRemoved.includes('ptrace') && r.dangerousRemoved.includes('mount'));
  assert.deepEqual(r.outsideRuntimeDefault, ['bpf']);
  assert.deepEqual(r.listeningPorts, ['8080/tcp']);
  assert.deepEqual(r.egressPorts, ['53/udp', '5432/tcp', '9000-9010/tcp']);
  assert.deepEqual(r.writablePaths, ['/dev/null', '/tmp/cache']);
  assert.deepEqual(r.executables, ['/usr/bin/python3']);
  // syscalls 30*8/313 = 0.77 → 0.8; dangerous bpf 10; network 2*1 + 3*2 + 6*1 = 14; files 0 + 3; execs 1.
  assert.deepEqual(r.riskBreakdown, { syscalls: 0.8, dangerous: 10, network: 14, files: 3, execs: 1 });
  assert.equal(r.riskScore, 28.8);
  assert.ok(r.riskScoreRuntimeDefault > r.riskScore);
  // The status shape is exactly the API's AttackSurface.
  assert.deepEqual(AttackSurface.strict().parse(toStatus(r)), toStatus(r));
  assert.match(formatSurfaceText([r]), /syscalls allowed +8 of 313 in the runtime default \(98% fewer\)/);
});

test('the runtime default itself scores 60 on syscalls alone; an unconfined container the maximum', () => {
  const asDefault = computeAttackSurface({
    container: 'c',
    profile: ociProfile([...ref.runtimeDefault]),
    runtimeDefault: ref.runtimeDefault,
    archSyscalls: ref.archSyscalls,
  });
  assert.equal(asDefault.riskScore, 60);
  assert.equal(asDefault.reductionVsDefault, 0);
  const unconfined = computeAttackSurface({
    container: 'c',
    profile: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] },
    behaviour: parseBehaviour({
      execs: ['/bin/sh', '/a', '/b', '/c', '/d', '/e'],
      files: ['/etc/x', '/usr/y', '/root/z'].map((path) => ({ path, write: true })),
      ports: { listen: [1, 2, 3].map((port) => ({ port })), connect: [4, 5, 6].map((port) => ({ port })) },
    }),
    runtimeDefault: ref.runtimeDefault,
    archSyscalls: ref.archSyscalls,
  });
  assert.equal(unconfined.riskScore, 100);
});

test('behaviour.json variants: maps of path → count, intent strings, grouped ports', () => {
  const b = parseBehaviour({
    execs: { '/bin/busybox': 3 },
    files: { '/var/log/app.log': { intent: 'rw', count: 2 }, '/etc/hosts': { intent: 'r' } },
    network: [
      { op: 'bind', proto: 'UDP', port: 5353 },
      { direction: 'egress', protocol: 'tcp', port: 443 },
      { op: 'connect', port: 'x' },
    ],
  });
  assert.deepEqual(b, {
    execs: ['/bin/busybox'],
    files: [
      { path: '/var/log/app.log', write: true },
      { path: '/etc/hosts', write: false },
    ],
    listening: [{ protocol: 'udp', port: 5353 }],
    egress: [{ protocol: 'tcp', port: 443 }],
  });
  assert.throws(() => parseBehaviour([]), /expected a JSON object/);
});

test('writable path weights: harmless, ordinary, sensitive', () => {
  assert.equal(writablePathWeight('/dev/null'), 0);
  assert.equal(writablePathWeight('/dev/pts/3'), 0);
  assert.equal(writablePathWeight('/tmp/x'), 3);
  assert.equal(writablePathWeight('/etc/shadow'), 6);
  assert.equal(writablePathWeight('/etcetera'), 3);
  assert.equal(writablePathWeight('/var/run/secrets/kubernetes.io/token'), 6);
});

test('the score stays within 0-100 and never drops when more is allowed', () => {
  const names = DANGEROUS_SYSCALLS.map((d) => d.name);
  const parts = fc.record({
    allowed: fc.nat(400),
    dangerous: fc.subarray(names),
    listening: fc.nat(20),
    egressPorts: fc.nat(20),
    egressRanges: fc.nat(5),
    writablePaths: fc.array(fc.constantFrom('/tmp/a', '/etc/b', '/dev/null', '/data/c')),
    executables: fc.array(fc.constantFrom('/bin/sh', '/app/server', '/usr/bin/python3')),
  });
  fc.assert(
    fc.property(parts, fc.constantFrom(...names), fc.nat(50), (p, extra, more) => {
      const base = riskScore({ ...p, runtimeDefault: 313 });
      assert.ok(base.score >= 0 && base.score <= 100);
      const wider = riskScore({
        ...p,
        runtimeDefault: 313,
        allowed: p.allowed + more,
        dangerous: [...new Set([...p.dangerous, extra])],
        listening: p.listening + 1,
        writablePaths: [...p.writablePaths, '/var/x'],
      });
      assert.ok(wider.score >= base.score);
    }),
  );
});

test('behaviour.json as pahlevan record writes it (agent/recorder.ts Behaviour)', async () => {
  const { attackSurfaceOf } = await import('../../api/attack-surface-data.js');
  const recorded = {
    runtime: 'runc',
    command: ['python3', 'service.py'],
    syscalls: ['accept4', 'bind', 'listen', 'read'],
    execs: [{ path: '/usr/bin/python3.11', count: 1 }],
    files: [
      { path: '/usr/lib/python3.11/os.py', read: true, write: false, count: 3 },
      { path: '/tmp/app.sock', read: true, write: true, count: 1 },
    ],
    network: [
      { op: 'bind', protocol: 'tcp', family: 'ipv4', address: '127.0.0.1', port: 8080, count: 1 },
      { op: 'listen', protocol: 'tcp', family: 'ipv4', address: '127.0.0.1', port: 8080, count: 1 },
      { op: 'accept', protocol: 'tcp', family: 'ipv4', address: '127.0.0.1', port: 51234, count: 9 },
      { op: 'connect', protocol: 'udp', family: 'ipv4', address: '10.0.0.10', port: 53, count: 2 },
      { op: 'bind', protocol: 'udp', family: 'ipv4', address: '0.0.0.0', port: 0, count: 2 },
    ],
  };
  const r = attackSurfaceOf('svc', ociProfile(recorded.syscalls), parseBehaviour(recorded));
  assert.deepEqual(r.listeningPorts, ['8080/tcp']); // the accepted peer's port is not a listening port
  assert.deepEqual(r.egressPorts, ['53/udp']);
  assert.deepEqual(r.writablePaths, ['/tmp/app.sock']);
  assert.deepEqual(r.executables, ['/usr/bin/python3.11']);
  assert.equal(r.syscallsAllowed, 4);
});

test('a published profile’s content (the controller’s view) gives the status attack surface', async () => {
  const { surfaceOfContent } = await import('../../api/attack-surface-data.js');
  const { formatSurfaceStatusLines } = await import('../../api/attack-surface.js');
  const content = {
    seccomp: ociProfile(['read', 'write', 'accept4', 'keyctl']),
    execs: ['/app/server'],
    files: [
      { path: '/data/*', write: true },
      { path: '/etc/app.conf', write: false },
    ],
    ports: [
      { direction: 'listen' as const, protocol: 'TCP' as const, port: 8080 },
      { direction: 'egress' as const, protocol: 'TCP' as const, port: 5432 },
      { direction: 'egress' as const, protocol: 'TCP' as const, port: 443, cidr: '10.0.0.0/8' },
    ],
  };
  const spec = parsePolicy({
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name: 'p' },
    spec: { selector: {} },
  });
  assert.ok(spec.ok);
  const r = toStatus(surfaceOfContent('api', content, spec.policy.spec));
  assert.deepEqual(r.listeningPorts, ['8080/tcp']);
  // allowDNS defaults to true: DNS is reachable too.
  assert.deepEqual(r.egressPorts, ['53/tcp', '53/udp', '443/tcp to 10.0.0.0/8', '5432/tcp']);
  assert.deepEqual(r.dangerousAllowed, ['keyctl']);
  assert.deepEqual(r.writablePaths, ['/data/*']);
  const [line] = formatSurfaceStatusLines([r]);
  assert.match(line!, /api: risk [0-9.]+\/100; 4 of 313 syscalls \(dangerous: keyctl\); listens 8080\/tcp/);
});
