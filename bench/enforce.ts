// `npm run bench:enforce`: the cost of enforcement, each figure against a baseline measured in the same run
// (interleaved rounds, medians; the machine is shared, so absolute numbers move, ratios much less).
// 1. open() loop in a runc container: no enforcement vs file enforcement by fanotify (this kernel), plus
//    a host process's open() while the fanotify listener runs (it must not pay);
// 2. open() loop in the qemu-booted BPF-LSM kernel: outside vs inside an enforced cgroup (reported apart:
//    TCG emulation, not this machine's CPU);
// 3. connect() loop (UDP, no handshake): no programs, hooks attached but cgroup unwatched, enforced;
// 4. iperf3 TCP over a veth pair between two network namespaces: without vs with TC + cgroup enforcement.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroup2Root, runContainer } from '../agent/container.js';
import { DEFAULT_HELPER_PATH } from '../agent/bpfd-client.js';
import { Enforcer, containerPolicy } from '../agent/enforcer.js';
import { layerModes, startEnforced } from '../cli/enforce-run.js';
import {
  buildInitramfs,
  ensureEnforceLoop,
  guestPlan,
  missingPrerequisites,
  runGuest,
} from '../test/lsm-qemu/harness.js';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (n: number): string => n.toFixed(1).padStart(10);
const rows: Array<{ bench: string; variant: string; value: number; unit: string; ratio?: number }> = [];
function report(bench: string, unit: string, baseline: string, variants: Record<string, number[]>): void {
  const base = median(variants[baseline]!);
  for (const [variant, xs] of Object.entries(variants)) {
    const value = median(xs);
    rows.push({ bench, variant, value, unit, ratio: value / base });
    console.log(
      `${bench.padEnd(28)} ${variant.padEnd(34)} ${fmt(value)} ${unit.padEnd(8)} ${(value / base).toFixed(3)}x`,
    );
  }
}

function sh(args: string[], opts: { input?: string } = {}): string {
  const r = spawnSync(args[0]!, args.slice(1), {
    encoding: 'utf8',
    ...(opts.input ? { input: opts.input } : {}),
  });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout;
}

/** Runs argv inside a cgroup v2 directory (joins first, then execs). */
function inCgroup(cgroupDir: string, argv: string[]): string {
  return sh(['sh', '-c', `echo $$ > ${cgroupDir}/cgroup.procs && exec "$@"`, 'sh', ...argv]);
}

const loop = ensureEnforceLoop();
const work = mkdtempSync(join(tmpdir(), 'pvb-enforce-'));
const dataDir = join(work, 'data');
mkdirSync(dataDir);
writeFileSync(join(dataDir, 'file.txt'), 'bench\n');
const { root: cgRoot } = cgroup2Root();
const attachDir = join(cgRoot, 'pahlevan');
const ROUNDS = Number(process.env.PAHLEVAN_BENCH_ROUNDS ?? 3);

async function openLoopFanotify(): Promise<void> {
  const iterations = Number(process.env.PAHLEVAN_BENCH_OPENS ?? 20000);
  const profileDir = join(work, 'profile');
  mkdirSync(profileDir, { recursive: true });
  writeFileSync(
    join(profileDir, 'seccomp.json'),
    JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] }),
  );
  writeFileSync(
    join(profileDir, 'behaviour.json'),
    JSON.stringify({
      execs: [{ path: loop, count: 1 }],
      // runc's init reads these in the container before it execs the command (a recording learns them).
      files: ['/pvt/file.txt', '/etc/passwd', '/etc/group'].map((path) => ({ path, read: true })),
      network: [],
    }),
  );
  const mounts = [{ destination: '/pvt', type: 'bind', source: dataDir, options: ['rbind', 'ro'] }];
  const command = [loop, 'open', '/pvt/file.txt', String(iterations)];
  const variants: Record<string, number[]> = {
    'container, no enforcement': [],
    'container, fanotify files+execs': [],
    'host process, no listener': [],
    'host process, listener running': [],
  };
  for (let r = 0; r < ROUNDS; r++) {
    const plain = await runContainer({ runtime: 'runc', command, mounts, net: 'host' });
    variants['container, no enforcement']!.push(Number(plain.stdout.trim()));
    variants['host process, no listener']!.push(
      Number(sh([loop, 'open', join(dataDir, 'file.txt'), String(iterations * 5)])),
    );
    const enforcer = await Enforcer.start({
      cgroupAttachDir: attachDir,
      only: ['files', 'execs'],
      forceFanotify: true,
    });
    try {
      variants['host process, listener running']!.push(
        Number(sh([loop, 'open', join(dataDir, 'file.txt'), String(iterations * 5)])),
      );
      const c = await startEnforced({
        command,
        profileDir,
        runtime: 'runc',
        net: 'host',
        mode: 'Enforce',
        layers: ['files', 'execs'],
        enforcer,
        mounts,
      });
      let out = '';
      c.container.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      const exit = await c.container.exited;
      await c.close();
      if (exit.code !== 0 || c.violations.length)
        throw new Error(`enforced open loop failed: ${out} ${c.violations.map((v) => v.what)}`);
      variants['container, fanotify files+execs']!.push(Number(out.trim()));
    } finally {
      await enforcer.stop();
    }
  }
  report('open() loop', 'ns/op', 'container, no enforcement', {
    'container, no enforcement': variants['container, no enforcement']!,
    'container, fanotify files+execs': variants['container, fanotify files+execs']!,
  });
  report('open() loop, host process', 'ns/op', 'host process, no listener', {
    'host process, no listener': variants['host process, no listener']!,
    'host process, listener running': variants['host process, listener running']!,
  });
}

async function openLoopLsmQemu(): Promise<void> {
  const missing = missingPrerequisites();
  if (missing.length) {
    console.log(`open() loop, BPF-LSM (qemu)   not measured: ${missing.join('; ')}`);
    return;
  }
  const initramfs = join(work, 'initramfs.gz');
  writeFileSync(initramfs, buildInitramfs(guestPlan()));
  const loops = Number(process.env.PAHLEVAN_BENCH_QEMU_OPENS ?? 100000);
  const { result } = await runGuest(initramfs, {
    cmdline: `PAHLEVAN_OPEN_LOOPS=${loops}`,
    timeoutMs: 300_000,
  });
  if (!result.openLoop) {
    console.log(`open() loop, BPF-LSM (qemu)   failed: ${result.error ?? 'no openLoop in the result'}`);
    return;
  }
  report('open() loop, BPF-LSM (qemu)', 'ns/op', 'outside enforced cgroup', {
    'outside enforced cgroup': result.openLoop.baselineNs,
    'inside, lsm file_open allow-list': result.openLoop.enforcedNs,
  });
}

async function connectLoop(): Promise<void> {
  const iterations = Number(process.env.PAHLEVAN_BENCH_CONNECTS ?? 200000);
  const cg = join(attachDir, `bench-connect-${process.pid}`);
  mkdirSync(cg, { recursive: true });
  const cgid = statSync(cg, { bigint: true }).ino;
  const port = 9;
  const run = (): number =>
    Number(inCgroup(cg, [loop, 'connect-udp', '127.0.0.1', String(port), String(iterations)]));
  const variants: Record<string, number[]> = {
    'no programs': [],
    'hooks attached, unwatched': [],
    'enforced (rule lookup)': [],
  };
  const policy = containerPolicy({ execs: [], files: [], network: [] }, layerModes('Enforce', ['network']), {
    // allowLoopback off: the full rule path runs (the flag would return early).
    network: { allowLoopback: false, egress: [{ protocol: 'UDP', port }] },
  });
  try {
    for (let r = 0; r < ROUNDS; r++) {
      variants['no programs']!.push(run());
      const enforcer = await Enforcer.start({ cgroupAttachDir: attachDir, only: ['network'] });
      try {
        variants['hooks attached, unwatched']!.push(run());
        await enforcer.enforce({ cgroupId: cgid, name: 'bench' }, policy);
        variants['enforced (rule lookup)']!.push(run());
        const counts = await enforcer.counters(cgid);
        if (counts.network?.connect) throw new Error('the allowed connect loop was refused');
      } finally {
        await enforcer.stop();
      }
    }
  } finally {
    rmdirSync(cg);
  }
  report('connect() loop (UDP)', 'ns/op', 'no programs', variants);
}

async function iperf(): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status !== 0) {
    console.log('iperf3 TCP over veth          not measured: iperf3 not found (Debian package iperf3)');
    return;
  }
  const tag = (process.pid % 10000).toString(16).padStart(4, '0');
  const [nsA, nsB] = [`pvb-${process.pid}-a`, `pvb-${process.pid}-b`];
  const [ifA, ifB] = [`pvba${tag}`, `pvbb${tag}`];
  const [addrA, addrB] = ['10.214.0.1', '10.214.0.2'];
  const cgServer = join(attachDir, `bench-iperf-s-${process.pid}`);
  const cgClient = join(attachDir, `bench-iperf-c-${process.pid}`);
  const wrapper = join(work, 'bpfd-in-ns-b');
  const seconds = Number(process.env.PAHLEVAN_BENCH_IPERF_SECONDS ?? 3);
  const variants: Record<string, number[]> = { 'no enforcement': [], 'tc ingress + cgroup hooks': [] };
  try {
    sh(['ip', 'netns', 'add', nsA]);
    sh(['ip', 'netns', 'add', nsB]);
    sh(['ip', 'link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    for (const [ns, dev, addr] of [
      [nsA, ifA, addrA],
      [nsB, ifB, addrB],
    ] as const) {
      sh(['ip', '-n', ns, 'addr', 'add', `${addr}/30`, 'dev', dev]);
      sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
      sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    mkdirSync(cgServer, { recursive: true });
    mkdirSync(cgClient, { recursive: true });
    // The helper must attach TC inside namespace B: run it there (nsenter keeps our mounts and cgroups).
    writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=/run/netns/${nsB} ${DEFAULT_HELPER_PATH} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const ifindexB = JSON.parse(sh(['ip', '-n', nsB, '-j', 'link', 'show', ifB]))[0].ifindex as number;
    const once = (): number => {
      const server = spawnSync('sh', [
        '-c',
        `echo $$ > ${cgServer}/cgroup.procs && exec nsenter --net=/run/netns/${nsB} iperf3 -s -1 -p 5201 -B ${addrB} -D -I ${work}/iperf.pid`,
      ]);
      if (server.status !== 0) throw new Error(`iperf3 server: ${server.stderr}`);
      spawnSync('sleep', ['0.3']);
      const out = inCgroup(cgClient, [
        'nsenter',
        `--net=/run/netns/${nsA}`,
        'iperf3',
        '-c',
        addrB,
        '-p',
        '5201',
        '-t',
        String(seconds),
        '-J',
      ]);
      return (JSON.parse(out).end.sum_received.bits_per_second as number) / 1e6;
    };
    for (let r = 0; r < Math.max(2, ROUNDS - 1); r++) {
      variants['no enforcement']!.push(once());
      const enforcer = await Enforcer.start({
        cgroupAttachDir: attachDir,
        only: ['network'],
        helperPath: wrapper,
      });
      try {
        const modes = layerModes('Enforce', ['network']);
        const serverId = statSync(cgServer, { bigint: true }).ino;
        const clientId = statSync(cgClient, { bigint: true }).ino;
        await enforcer.enforce(
          { cgroupId: serverId, name: 'iperf-server' },
          containerPolicy(
            { execs: [], files: [], network: [{ op: 'bind', protocol: 'tcp', port: 5201 }] },
            modes,
          ),
        );
        await enforcer.enforce(
          { cgroupId: clientId, name: 'iperf-client' },
          containerPolicy(
            { execs: [], files: [], network: [{ op: 'connect', protocol: 'tcp', port: 5201 }] },
            modes,
          ),
        );
        await enforcer.attachInterface(serverId, ifB, 'ingress', ifindexB);
        variants['tc ingress + cgroup hooks']!.push(once());
        const s = await enforcer.counters(serverId);
        const c = await enforcer.counters(clientId);
        if (s.network?.ingress || s.network?.bind || c.network?.connect)
          throw new Error('iperf3 traffic was refused');
      } finally {
        await enforcer.stop();
      }
    }
  } finally {
    spawnSync('ip', ['netns', 'del', nsA]);
    spawnSync('ip', ['netns', 'del', nsB]);
    for (const d of [cgServer, cgClient]) {
      try {
        rmdirSync(d);
      } catch {
        // already gone
      }
    }
  }
  report('iperf3 TCP over veth', 'Mbit/s', 'no enforcement', variants);
}

try {
  if (process.getuid?.() !== 0)
    throw new Error('bench:enforce needs root (containers, BPF, network namespaces)');
  console.log(
    `bench:enforce: ${ROUNDS} interleaved rounds, medians; ratio = variant / baseline of the same run\n`,
  );
  await openLoopFanotify();
  await connectLoop();
  await iperf();
  await openLoopLsmQemu();
  console.log(`\nbench:enforce json ${JSON.stringify(rows)}`);
} catch (err) {
  console.error(`bench:enforce: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
