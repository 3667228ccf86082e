import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressBytes,
  decodeNetEvent,
  fanAllowWords,
  formatAddress,
  kernelDev,
  lsmAllowKey,
  npRuleKey,
  parseCidr,
  planLsm,
  planNetwork,
  protocolLines,
} from '../../agent/enforce-maps.js';
import { containerPolicy, elfInterpreter } from '../../agent/enforcer.js';
import { policyFromProfile } from '../../agent/enforcer-port.js';
import { layerModes, parseLayers, parseMode, seccompFor } from '../../cli/enforce-run.js';

test('addresses: IPv4 is v4-mapped like the BPF side, IPv6 parses with ::, both format back', () => {
  assert.equal(addressBytes('10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203');
  assert.equal(addressBytes('fd00::1').toString('hex'), 'fd000000000000000000000000000001');
  assert.equal(formatAddress(addressBytes('192.168.0.9')), '192.168.0.9');
  assert.throws(() => addressBytes('300.1.1.1'), /bad IPv4/);
  assert.throws(() => addressBytes('fd00::1::2'), /bad IPv6/);
  assert.deepEqual(parseCidr('10.0.0.0/8').bits, 104);
  assert.deepEqual(parseCidr('fd00::/8').bits, 8);
  assert.throws(() => parseCidr('10.0.0.0/33'), /bad CIDR/);
});

test('rule keys: 32 bytes, prefix covers dir/proto/port/cgroup (96 bits) plus the CIDR, host bits zeroed', () => {
  const k = npRuleKey(0x1122n, 'egress', 6, 8080, '10.9.8.7/24');
  assert.equal(k.length, 32);
  assert.equal(k.readUInt32LE(0), 96 + 96 + 24);
  assert.deepEqual([k[4], k[5], k.readUInt16LE(6)], [1, 6, 8080]);
  assert.equal(k.readBigUInt64LE(8), 0x1122n);
  assert.equal(k.subarray(16).toString('hex'), '00000000000000000000ffff0a090800');
  assert.equal(npRuleKey(1n, 'bind', 17, 53).readUInt32LE(0), 96, 'no CIDR: any address');
});

test('a network plan writes rules first and the config (which turns enforcement on) last', () => {
  const writes = planNetwork({
    cgid: 7n,
    mode: 'Enforce',
    allowDNS: true,
    allowLoopback: false,
    egress: [{ protocol: 'TCP', port: 443 }],
    ingress: [{ protocol: 'TCP', port: 8080, endPort: 8081 }],
  });
  assert.deepEqual(
    writes.map((w) => w.map),
    ['np_rules', 'np_rules', 'np_rules', 'np_rules', 'np_rules', 'np_counters', 'np_config'],
  );
  assert.equal(writes.at(-1)!.value.toString('hex'), '0200000001000000');
  assert.equal(writes.at(-2)!.flag, 'noexist', 'counters survive a re-plan');
  assert.throws(
    () =>
      planNetwork({
        cgid: 1n,
        mode: 'Enforce',
        allowDNS: true,
        allowLoopback: true,
        egress: [{ protocol: 'TCP', port: 1, endPort: 65535 }],
        ingress: [],
      }),
    /wider than/,
  );
});

test('lsm and fanotify get the same allow-list entries', () => {
  const allow = [
    { kind: 'file' as const, dev: (8 << 20) | 1, ino: 42n, subtree: false },
    { kind: 'exec' as const, dev: (8 << 20) | 1, ino: 7n, subtree: true },
  ];
  const writes = planLsm({ cgid: 5n, fileMode: 'Monitor', execMode: 'Alert', allow });
  assert.equal(writes[0]!.key.toString('hex'), lsmAllowKey(5n, allow[0]!).toString('hex'));
  assert.equal(writes[0]!.key.length, 24);
  assert.equal(writes[1]!.value[0], 3, 'subtree entries carry both flags');
  assert.equal(writes.at(-1)!.value.toString('hex'), '0100000003000000');
  assert.deepEqual(fanAllowWords(allow), [`1:${(8 << 20) | 1}:42:1`, `2:${(8 << 20) | 1}:7:3`]);
  assert.match(protocolLines(writes, 10)[0]!, /^10 map_update lsm lsm_allow [0-9a-f]{48} 01 any$/);
});

test("kernelDev converts glibc's st_dev to the kernel's major<<20|minor", () => {
  assert.equal(kernelDev(0x801), (8 << 20) | 1);
  assert.equal(kernelDev((259n << 8n) | 5n), (259 << 20) | 5);
  assert.equal(kernelDev(0x1234_5678n), kernelDev(0x1234_5678n) >>> 0);
});

test('network events decode to what was refused', () => {
  const ev = Buffer.alloc(56);
  ev.writeBigUInt64LE(9n, 0);
  ev[8] = 1; // connect
  ev[9] = 1; // denied
  ev[10] = 6;
  ev[11] = 2;
  ev.writeUInt16LE(8082, 12);
  ev.writeUInt32LE(1234, 16);
  addressBytes('10.213.0.1').copy(ev, 20);
  ev.write('python3', 36);
  const v = decodeNetEvent(ev);
  assert.deepEqual(
    { what: v.what, denied: v.denied, mode: v.mode, pid: v.pid, comm: v.comm, kind: v.kind },
    {
      what: 'tcp 10.213.0.1:8082',
      denied: true,
      mode: 'Enforce',
      pid: 1234,
      comm: 'python3',
      kind: 'connect',
    },
  );
});

test('learned behaviour + rules -> container policy', () => {
  const p = containerPolicy(
    {
      execs: [{ path: '/usr/bin/python3' }],
      files: [
        { path: '/etc/hosts', read: true },
        { path: '/var/log/app/x.log', write: true },
      ],
      network: [
        { op: 'connect', protocol: 'tcp', port: 5432 },
        { op: 'listen', protocol: 'tcp', port: 8080 },
        { op: 'accept', protocol: 'tcp', port: 8080 },
        { op: 'connect', protocol: 'udp', port: 53 },
        { op: 'connect', protocol: 'tcp', port: 0 },
      ],
    },
    layerModes('Enforce', ['network', 'files']),
    {
      network: { allowDNS: false, egress: [{ protocol: 'TCP', port: 443, cidr: '10.0.0.0/8' }] },
      files: { allow: ['/data/**'] },
    },
  );
  assert.deepEqual(p.network.egress, [
    { protocol: 'UDP', port: 53 },
    { protocol: 'TCP', port: 443, cidr: '10.0.0.0/8' },
    { protocol: 'TCP', port: 5432 },
  ]);
  assert.deepEqual(p.network.ingress, [{ protocol: 'TCP', port: 8080 }]);
  assert.equal(p.network.allowDNS, false);
  assert.equal(p.network.allowLoopback, true);
  assert.deepEqual(p.files.map((e) => `${e.path}${e.subtree ? '/**' : ''}`).sort(), [
    '/data/**',
    '/etc/hosts',
    '/var/log/app/**',
  ]);
  assert.deepEqual(p.modes, { syscalls: 'Off', files: 'Enforce', execs: 'Off', network: 'Enforce' });
});

test('a published profile -> container policy (cluster agent)', () => {
  const p = policyFromProfile(
    {
      seccomp: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] },
      execs: ['/usr/bin/*', '/app/server'],
      files: [{ path: '/etc/app.conf', write: false }],
      ports: [
        { direction: 'listen', protocol: 'TCP', port: 8080 },
        { direction: 'egress', protocol: 'UDP', port: 53 },
      ],
    },
    layerModes('Monitor', ['files', 'execs', 'network']),
  );
  assert.deepEqual(p.execs.map((e) => [e.path, e.subtree]).sort(), [
    ['/app/server', false],
    ['/usr/bin', true],
  ]);
  assert.deepEqual(p.network.ingress, [{ protocol: 'TCP', port: 8080 }]);
  assert.deepEqual(p.network.egress, [{ protocol: 'UDP', port: 53 }]);
});

test('run flags: modes, layers and the seccomp filter per syscalls mode', () => {
  assert.equal(parseMode('enforce'), 'Enforce');
  assert.throws(() => parseMode('block'), /--mode must be one of/);
  assert.deepEqual(parseLayers('files,network'), ['files', 'network']);
  assert.deepEqual(parseLayers('all'), ['syscalls', 'files', 'execs', 'network']);
  assert.throws(() => parseLayers('files,disk'), /unknown layer "disk"/);
  const profile = {
    defaultAction: 'SCMP_ACT_ERRNO' as const,
    syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' as const }],
  };
  assert.equal(seccompFor(profile, 'Monitor')?.defaultAction, 'SCMP_ACT_LOG');
  assert.equal(seccompFor(profile, 'Enforce'), profile);
  assert.equal(seccompFor(profile, 'Off'), undefined);
});

test('the ELF interpreter of a dynamic binary is found, static binaries have none', () => {
  assert.match(elfInterpreter('/usr/bin/python3') ?? '', /ld-linux/);
  assert.equal(elfInterpreter('/bin/busybox'), undefined);
  assert.equal(elfInterpreter('/etc/hostname'), undefined);
});
