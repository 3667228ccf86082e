// Pure parts of the learner: profile generation, syscall tables, event decoding, behaviour summaries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OciSeccompProfile } from '../../api/seccomp.js';
import { bitmapToNumbers, decodeEvent } from '../../agent/learner.js';
import { buildSeccompProfile, RUNTIME_TIMING_SYSCALLS, SIGNAL_SYSCALLS } from '../../agent/profile.js';
import { behaviourOf } from '../../agent/recorder.js';
import { arm64NamesOf, syscallName, syscallNumber } from '../../agent/syscall-table.js';

describe('syscall tables', () => {
  it('knows x86_64 and arm64 numbers', () => {
    assert.equal(syscallName(0, 'x86_64'), 'read');
    assert.equal(syscallName(59, 'x86_64'), 'execve');
    assert.equal(syscallName(221, 'aarch64'), 'execve');
    assert.equal(syscallNumber('openat', 'x86_64'), 257);
    assert.equal(syscallNumber('openat', 'aarch64'), 56);
  });
  it('maps x86-only syscalls to their arm64 equivalents and drops x86-only ones', () => {
    assert.deepEqual(arm64NamesOf(['open', 'stat', 'read', 'arch_prctl']), ['newfstatat', 'openat', 'read']);
  });
});

describe('buildSeccompProfile', () => {
  it('emits the OCI subset: deny by default, learned names allowed, sorted and unique', () => {
    const p = buildSeccompProfile(['write', 'read', 'read'], { arch: 'x86_64' });
    assert.deepEqual(p, {
      defaultAction: 'SCMP_ACT_ERRNO',
      architectures: ['SCMP_ARCH_X86_64'],
      syscalls: [{ names: ['read', 'restart_syscall', 'rt_sigreturn', 'write'], action: 'SCMP_ACT_ALLOW' }],
    });
    assert.ok(OciSeccompProfile.safeParse(p).success);
  });
  it("adds the runtime's timing-dependent syscalls", () => {
    const p = buildSeccompProfile(['read'], { arch: 'x86_64', runtime: 'runc' });
    for (const s of RUNTIME_TIMING_SYSCALLS.runc) assert.ok(p.syscalls[0]!.names.includes(s), s);
    // crun adds nothing of its own: only what any workload may need when a signal arrives.
    assert.deepEqual(buildSeccompProfile(['read'], { arch: 'x86_64', runtime: 'crun' }).syscalls[0]!.names, [
      'read',
      ...SIGNAL_SYSCALLS,
    ]);
  });
  it("adds other runtimes' calibrated post-filter syscalls and timing floors (portable profiles)", () => {
    const p = buildSeccompProfile(['read'], {
      arch: 'x86_64',
      runtime: 'crun',
      runtimes: ['runc'],
      runtimeSyscalls: ['setgid', 'setuid', 'not a name'],
    });
    const names = p.syscalls[0]!.names;
    for (const s of ['read', 'setgid', 'setuid', ...RUNTIME_TIMING_SYSCALLS.runc])
      assert.ok(names.includes(s), s);
    assert.ok(!names.includes('not a name'));
  });
  it('optionally carries the arm64 names of the same set', () => {
    const p = buildSeccompProfile(['open', 'read'], { arch: 'x86_64', includeArm64: true });
    assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64']);
    assert.deepEqual(p.syscalls[0]!.names, ['open', 'openat', 'read', ...SIGNAL_SYSCALLS]);
  });
  it('refuses an empty set and drops names that are not syscall names', () => {
    assert.throws(() => buildSeccompProfile([], { arch: 'x86_64' }), /no syscalls learned/);
    assert.deepEqual(
      buildSeccompProfile(['read', 'Bad Name', '../x'], { arch: 'x86_64' }).syscalls[0]!.names,
      ['read', ...SIGNAL_SYSCALLS],
    );
  });
});

function event(
  kind: number,
  arg: number,
  path = '',
  net?: { family: number; port: number; proto: number; addr: number[] },
): Buffer {
  const b = Buffer.alloc(48 + 256);
  b.writeBigUInt64LE(4242n, 0);
  b.writeUInt32LE(kind, 8);
  b.writeUInt32LE(77, 12);
  b.writeUInt32LE(arg, 16);
  if (net) {
    b.writeUInt16LE(net.family, 20);
    b.writeUInt16LE(net.port, 22);
    b.writeUInt8(net.proto, 24);
    Buffer.from(net.addr).copy(b, 32);
  }
  b.write(path, 48);
  return b;
}

describe('decodeEvent', () => {
  it('decodes syscall, exec, file and network records', () => {
    assert.deepEqual(decodeEvent(event(1, 59).subarray(0, 48), 'x86_64'), {
      kind: 'syscall',
      cgroupId: 4242n,
      pid: 77,
      nr: 59,
      name: 'execve',
    });
    assert.deepEqual(decodeEvent(event(2, 0, '/bin/sh'), 'x86_64'), {
      kind: 'exec',
      cgroupId: 4242n,
      pid: 77,
      path: '/bin/sh',
    });
    assert.deepEqual(decodeEvent(event(3, 3, '/tmp/x'), 'x86_64'), {
      kind: 'file',
      cgroupId: 4242n,
      pid: 77,
      path: '/tmp/x',
      read: true,
      write: true,
    });
    const v6 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    assert.deepEqual(decodeEvent(event(4, 1, '', { family: 10, port: 443, proto: 6, addr: v6 }), 'x86_64'), {
      kind: 'net',
      cgroupId: 4242n,
      pid: 77,
      op: 'connect',
      protocol: 'tcp',
      family: 'ipv6',
      address: '::1',
      port: 443,
    });
    const v4 = decodeEvent(
      event(4, 3, '', { family: 2, port: 8080, proto: 17, addr: [127, 0, 0, 1] }),
      'x86_64',
    );
    assert.equal(
      v4?.kind === 'net' && `${v4.op} ${v4.protocol} ${v4.address}:${v4.port}`,
      'listen udp 127.0.0.1:8080',
    );
  });
  it('ignores short or unknown records', () => {
    assert.equal(decodeEvent(Buffer.alloc(10)), undefined);
    assert.equal(decodeEvent(event(9, 0)), undefined);
  });
});

describe('bitmaps and behaviour', () => {
  it('reads the syscall numbers of a little-endian bitmap', () => {
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE((1n << 0n) | (1n << 63n), 0);
    b.writeBigUInt64LE(1n << 3n, 8 * 7);
    assert.deepEqual(bitmapToNumbers(b), [0, 63, 451]);
  });
  it('summarises observations by kind, sorted', () => {
    const b = behaviourOf(
      'runc',
      ['sh'],
      ['write', 'read'],
      [
        { kind: 'file', cgroupId: 1n, pid: 1, path: '/b', read: true, write: false, count: 2 },
        { kind: 'file', cgroupId: 1n, pid: 1, path: '/a', read: false, write: true, count: 1 },
        { kind: 'exec', cgroupId: 1n, pid: 1, path: '/bin/sh', count: 1 },
      ],
    );
    assert.deepEqual(b.syscalls, ['read', 'write']);
    assert.deepEqual(
      b.files.map((f) => f.path),
      ['/a', '/b'],
    );
    assert.deepEqual(b.execs, [{ path: '/bin/sh', count: 1 }]);
    assert.deepEqual(b.network, []);
  });
});
