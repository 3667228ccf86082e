// Enforcement on the real kernel with real runc containers: the probe server is recorded, then run
// under its learned policy in its own network namespace (a veth pair to the host: two namespaces), and
// asked for what it learned and for what it never did.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { cgroup2Root } from '../../agent/container.js';
import { bpfObjectPath } from '../../agent/bpfd-client.js';
import { Enforcer } from '../../agent/enforcer.js';
import { hostVethOf } from '../../agent/enforcer-port.js';
import { startEnforced, type EnforcedContainer } from '../../cli/enforce-run.js';
import {
  PROBE_SERVER,
  UNLEARNED_SYSCALL_NR,
  listen,
  probe,
  recordProbe,
  tcpAttempt,
  type RecordedProbe,
} from '../helpers/enforce-fixture.js';

let recorded: RecordedProbe;
let enforcer: Enforcer;
let c: EnforcedContainer;
const servers: Server[] = [];
const UNLEARNED_EGRESS = 7;
const UNLEARNED_LISTEN = 9;
const UNLEARNED_INGRESS = 11;
const LOOPBACK_PORT = 13;

before(async () => {
  recorded = await recordProbe();
  enforcer = await Enforcer.start({ cgroupAttachDir: join(cgroup2Root().root, 'pahlevan') });
});

after(async () => {
  for (const s of servers) s.close();
  await c?.close();
  await enforcer?.stop();
  recorded?.cleanup();
});

const port = (offset: number): number => recorded.serverPort + 100 + offset;

async function ask(path: string) {
  return probe(c.veth!.containerAddress, recorded.serverPort, path);
}

async function start(rules?: { network?: { allowDNS?: boolean; allowLoopback?: boolean } }) {
  return startEnforced({
    command: ['python3', '-S', PROBE_SERVER, String(recorded.serverPort)],
    profileDir: recorded.profileDir,
    runtime: 'runc',
    net: 'veth',
    mode: 'Enforce',
    layers: ['syscalls', 'files', 'execs', 'network'],
    enforcer,
    mounts: recorded.mounts,
    ...(rules ? { rules } : {}),
  });
}

test('every layer is probed by loading and reported', () => {
  const layers = enforcer.layers();
  assert.deepEqual(
    layers.map((l) => l.layer),
    ['syscalls', 'network', 'files', 'execs'],
  );
  for (const l of layers) assert.ok(l.active, `${l.layer} inactive: ${l.reason}`);
  // This VM refuses LSM programs at load: files and execs fall back to fanotify and say why.
  const files = layers.find((l) => l.layer === 'files')!;
  if (files.mechanism === 'fanotify') assert.match(files.reason ?? '', /BPF-LSM unavailable/);
});

test('an enforced container keeps serving while unlearned egress, bind and ingress are refused, each counted once', async () => {
  c = await start();
  const v = c.veth!;
  assert.ok(['tcx', 'clsact'].includes(v.tc), `tc attach: ${v.tc}`);
  // The cluster agent finds a pod's host-side veth the same way.
  assert.equal(hostVethOf(c.pid!)?.ifname, v.hostIf);
  servers.push(await listen(v.hostAddress, recorded.learnedEgressPort));
  servers.push(await listen(v.hostAddress, port(UNLEARNED_EGRESS)));
  // Normal traffic: learned ingress port, learned egress port, learned file and exec.
  for (let i = 0; i < 5; i++) assert.deepEqual(await ask('/ping'), { ok: true });
  assert.deepEqual(await ask(`/connect?host=${v.hostAddress}&port=${recorded.learnedEgressPort}`), {
    ok: true,
  });
  assert.deepEqual(await ask('/open?path=/pvt/learned.txt'), { ok: true });
  assert.deepEqual(await ask('/exec?path=/bin/true'), { ok: true });
  // Unlearned egress: the host listens, the container is refused by the connect hook.
  assert.deepEqual(await ask(`/connect?host=${v.hostAddress}&port=${port(UNLEARNED_EGRESS)}`), {
    ok: false,
    errno: 'EPERM',
  });
  // Unlearned listening port.
  assert.deepEqual(await ask(`/bind?port=${port(UNLEARNED_LISTEN)}`), { ok: false, errno: 'EPERM' });
  // Ingress to an unlearned port: the SYN is dropped by TC (no RST comes back), and retransmits count once.
  assert.equal(await tcpAttempt(v.containerAddress, port(UNLEARNED_INGRESS), 2500), 'timeout');
  // DNS and loopback are allowed by default flags: a UDP datagram to port 53 goes out, loopback to a closed
  // port is refused by the peer (ECONNREFUSED), not by us (EPERM).
  assert.deepEqual(await ask(`/connect?proto=udp&host=${v.hostAddress}&port=53`), { ok: true });
  assert.deepEqual(await ask(`/connect?host=127.0.0.1&port=${port(LOOPBACK_PORT)}`), {
    ok: false,
    errno: 'ECONNREFUSED',
  });
  const counts = await c.counters();
  assert.equal(counts.network?.connect, 1n);
  assert.equal(counts.network?.bind, 1n);
  assert.equal(counts.network?.ingress, 1n);
  assert.equal(counts.network?.sendmsg, 0n);
  const reported = c.violations.filter((x) => x.layer === 'network');
  assert.deepEqual(reported.map((x) => x.kind).sort(), ['bind', 'connect', 'ingress']);
  assert.ok(reported.every((x) => x.denied && x.mode === 'Enforce'));
  assert.ok(reported.some((x) => x.what === `tcp ${v.hostAddress}:${port(UNLEARNED_EGRESS)}`));
});

test("TC passes allowed packets on to the next program (a CNI's), dropped ones never reach it", async () => {
  assert.ok(c, 'needs the container of the previous test');
  const v = c.veth!;
  const client = enforcer.client;
  await client.open('tc_neighbour', bpfObjectPath('tc_neighbour'));
  try {
    assert.equal(await client.attachTc('tc_neighbour', 'neighbour_count', v.hostIf, 'egress'), v.tc);
    for (let i = 0; i < 3; i++) assert.deepEqual(await ask('/ping'), { ok: true });
    assert.equal(await tcpAttempt(v.containerAddress, port(UNLEARNED_INGRESS + 1), 1500), 'timeout');
    const seen = new Map(
      (await client.mapDump('tc_neighbour', 'seen_by_port')).map(([k, val]) => [
        k.readUInt16LE(0),
        val.readBigUInt64LE(0),
      ]),
    );
    assert.ok((seen.get(recorded.serverPort) ?? 0n) > 0n, 'allowed packets reach the next program');
    assert.equal(seen.get(port(UNLEARNED_INGRESS + 1)), undefined, 'dropped SYNs do not');
  } finally {
    await client.close('tc_neighbour');
  }
  assert.equal((await c.counters()).network?.ingress, 2n);
});

test('reading an unlearned file and executing an unlearned binary are denied (fanotify here), counted once', async () => {
  assert.ok(c, 'needs the container of the previous test');
  assert.deepEqual(await ask('/open?path=/pvt/secret.txt'), { ok: false, errno: 'EPERM' });
  assert.deepEqual(await ask('/exec?path=/bin/false'), { ok: false, errno: 'EPERM' });
  assert.deepEqual(await ask('/open?path=/pvt/learned.txt'), { ok: true });
  await new Promise((r) => setTimeout(r, 200));
  const counts = await c.counters();
  assert.equal(counts.files, 1n);
  assert.equal(counts.execs, 1n);
  const files = c.violations.filter((x) => x.layer === 'files');
  const execs = c.violations.filter((x) => x.layer === 'execs');
  assert.equal(files.length, 1, files.map((x) => `${x.what} ${x.comm} ${x.mode}`).join('; '));
  assert.equal(execs.length, 1, execs.map((x) => `${x.what} ${x.comm} ${x.mode}`).join('; '));
  assert.ok(files[0]!.what.endsWith('/secret.txt') && files[0]!.denied, files[0]!.what);
  assert.ok(execs[0]!.what.endsWith('/false') && execs[0]!.denied, execs[0]!.what);
});

test('Enforce -> Monitor -> Enforce switches live, without restarting the container', async () => {
  assert.ok(c, 'needs the running container');
  const pid = c.pid;
  const v = c.veth!;
  const before = await c.counters();
  let t = Date.now();
  await c.setMode('Monitor');
  const switchedMs = Date.now() - t;
  assert.deepEqual(await ask(`/connect?host=${v.hostAddress}&port=${port(UNLEARNED_EGRESS)}`), { ok: true });
  assert.deepEqual(await ask('/open?path=/pvt/secret.txt'), { ok: true });
  assert.deepEqual(await ask('/exec?path=/bin/false'), { ok: false, errno: 'exit1' }, '/bin/false ran');
  t = Date.now();
  await c.setMode('Enforce');
  const backMs = Date.now() - t;
  assert.deepEqual(await ask(`/connect?host=${v.hostAddress}&port=${port(UNLEARNED_EGRESS)}`), {
    ok: false,
    errno: 'EPERM',
  });
  assert.deepEqual(await ask('/open?path=/pvt/secret.txt'), { ok: false, errno: 'EPERM' });
  assert.equal(c.pid, pid);
  assert.equal(c.container.process.exitCode, null, 'the container kept running');
  const after = await c.counters();
  // Monitor still counts (allowed), Enforce counts (denied): two of each.
  assert.equal(after.network!.connect - before.network!.connect, 2n);
  assert.equal(after.files - before.files, 2n);
  assert.equal(after.execs - before.execs, 1n);
  const monitorReports = c.violations.filter((x) => x.mode === 'Monitor');
  assert.ok(monitorReports.length >= 3 && monitorReports.every((x) => !x.denied));
  console.log(`mode switch took ${switchedMs} ms (to Monitor) and ${backMs} ms (back to Enforce)`);
});

test('Alert denies like Enforce and marks each report as an alert', async () => {
  assert.ok(c, 'needs the running container');
  const v = c.veth!;
  const seen = c.violations.length;
  await c.setMode('Alert');
  try {
    assert.deepEqual(await ask(`/connect?host=${v.hostAddress}&port=${port(UNLEARNED_EGRESS)}`), {
      ok: false,
      errno: 'EPERM',
    });
    assert.deepEqual(await ask('/open?path=/pvt/secret.txt'), { ok: false, errno: 'EPERM' });
    await new Promise((r) => setTimeout(r, 200));
    const fresh = c.violations.slice(seen);
    assert.deepEqual(fresh.map((x) => x.layer).sort(), ['files', 'network']);
    assert.ok(fresh.every((x) => x.mode === 'Alert' && x.denied));
  } finally {
    await c.setMode('Enforce');
  }
});

test('a burst of 100,000 seccomp-denied syscalls is counted exactly', async () => {
  assert.ok(c, 'needs the running container');
  const r = await probe(
    c.veth!.containerAddress,
    recorded.serverPort,
    `/burst?nr=${UNLEARNED_SYSCALL_NR}&n=100000`,
    60000,
  );
  assert.deepEqual(r, { ok: true }, 'all 100,000 calls failed with the profile');
  const counts = await c.counters();
  assert.equal(counts.syscalls?.bySyscall.keyctl, 100000n);
  assert.equal(counts.syscalls?.pairsLost, 0n);
  assert.ok(c.violations.some((x) => x.layer === 'syscalls' && x.what.startsWith('keyctl')));
});

test('DNS and loopback follow the policy flags', async () => {
  await c?.close();
  c = await start({ network: { allowDNS: false, allowLoopback: false } });
  const v = c.veth!;
  assert.deepEqual(await ask('/ping'), { ok: true });
  assert.deepEqual(await ask(`/connect?proto=udp&host=${v.hostAddress}&port=53`), {
    ok: false,
    errno: 'EPERM',
  });
  assert.deepEqual(await ask(`/connect?host=127.0.0.1&port=${port(LOOPBACK_PORT)}`), {
    ok: false,
    errno: 'EPERM',
  });
  const counts = await c.counters();
  assert.equal(counts.network?.sendmsg, 1n);
  assert.equal(counts.network?.connect, 1n);
});

test('with crun (recorded with crun): unlearned file, exec, egress port and listening port are denied', async () => {
  await c?.close();
  const crunRecorded = await recordProbe('crun');
  try {
    c = await startEnforced({
      command: ['python3', '-S', PROBE_SERVER, String(crunRecorded.serverPort)],
      profileDir: crunRecorded.profileDir,
      runtime: 'crun',
      net: 'veth',
      mode: 'Enforce',
      layers: ['syscalls', 'files', 'execs', 'network'],
      enforcer,
      mounts: crunRecorded.mounts,
    });
    const v = c.veth!;
    const askCrun = (path: string) => probe(v.containerAddress, crunRecorded.serverPort, path);
    servers.push(await listen(v.hostAddress, crunRecorded.learnedEgressPort));
    assert.deepEqual(await askCrun('/ping'), { ok: true });
    assert.deepEqual(await askCrun(`/connect?host=${v.hostAddress}&port=${crunRecorded.learnedEgressPort}`), {
      ok: true,
    });
    assert.deepEqual(await askCrun('/open?path=/pvt/learned.txt'), { ok: true });
    assert.deepEqual(await askCrun('/open?path=/pvt/secret.txt'), { ok: false, errno: 'EPERM' });
    assert.deepEqual(await askCrun('/exec?path=/bin/false'), { ok: false, errno: 'EPERM' });
    assert.deepEqual(await askCrun(`/connect?host=${v.hostAddress}&port=${port(UNLEARNED_EGRESS)}`), {
      ok: false,
      errno: 'EPERM',
    });
    assert.deepEqual(await askCrun(`/bind?port=${port(UNLEARNED_LISTEN)}`), { ok: false, errno: 'EPERM' });
    const counts = await c.counters();
    assert.deepEqual(
      [counts.files, counts.execs, counts.network?.connect, counts.network?.bind],
      [1n, 1n, 1n, 1n],
    );
  } finally {
    await c?.close();
    c = undefined as unknown as EnforcedContainer;
    crunRecorded.cleanup();
  }
});
