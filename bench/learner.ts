// `npm run bench:learner`: what the learner costs a syscall, against an empty program on the same hook,
// measured in the same run with interleaved rounds; then the agent's RSS and the BPF maps' memory with
// 1, 100 and 1000 watched cgroups.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { BPF_OUTPUT_DIR, BpfdClient, bpfObjectPath } from '../agent/bpfd-client.js';
import { cgroup2Root } from '../agent/container.js';
import { Learner, cgroupIdOf } from '../agent/learner.js';

const LOOP = `${BPF_OUTPUT_DIR}syscall-loop`;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11);
const ITERATIONS: Record<string, number> = { getppid: 1_000_000, openat: 200_000 };
type Config = 'no BPF' | 'empty program' | 'learner, caller watched' | 'learner, caller unwatched';
const CONFIGS: Config[] = ['no BPF', 'empty program', 'learner, caller watched', 'learner, caller unwatched'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Runs the C loop inside the cgroup, under an allow-all seccomp filter (as in a container). */
function runLoop(cgroupDir: string, kind: string): number {
  const r = spawnSync(
    'sh',
    ['-c', `echo $$ > ${cgroupDir}/cgroup.procs && exec ${LOOP} ${kind} ${ITERATIONS[kind]} --seccomp`],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`syscall-loop failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:learner must run as root');
  const { root } = cgroup2Root();
  const cgroupDir = `${root}/pvt-bench-learner-${process.pid}`;
  const pinDir = `/sys/fs/bpf/pahlevan-bench-learner-${process.pid}`;
  mkdirSync(cgroupDir);
  const client = await BpfdClient.start();
  const learner = await Learner.start({ client, pinDir });
  await learner.detachAll();
  await client.open('empty', bpfObjectPath('bench_empty'));
  const callerId = cgroupIdOf(cgroupDir);
  // Another watched cgroup, so the unwatched case runs with a non-empty watch set.
  await learner.watch(callerId + 1_000_003n, { requireSeccomp: true });
  try {
    for (const kind of ['getppid', 'openat']) {
      const samples: Record<Config, number[]> = {
        'no BPF': [],
        'empty program': [],
        'learner, caller watched': [],
        'learner, caller unwatched': [],
      };
      for (let round = 0; round < ROUNDS; round++) {
        for (const config of CONFIGS) {
          if (config === 'empty program') await client.attach('empty', 'empty_sys_enter');
          if (config.startsWith('learner')) await learner.attachAll();
          if (config === 'learner, caller watched') await learner.watch(callerId, { requireSeccomp: true });
          try {
            samples[config].push(runLoop(cgroupDir, kind));
          } finally {
            if (config === 'empty program') await client.detach('empty', 'empty_sys_enter');
            if (config === 'learner, caller watched') await learner.forget(callerId);
            if (config.startsWith('learner')) await learner.detachAll();
          }
        }
      }
      const base = median(samples['no BPF']);
      const emptyAdded = median(samples['empty program']) - base;
      console.log(`\n${kind} loop (${ITERATIONS[kind]} iterations x ${ROUNDS} interleaved rounds, medians):`);
      for (const config of CONFIGS) {
        const ns = median(samples[config]);
        const added = ns - base;
        const vsEmpty = config.startsWith('learner')
          ? `  added/empty-added = ${(added / emptyAdded).toFixed(2)}x`
          : '';
        console.log(
          `  ${config.padEnd(27)} ${ns.toFixed(1).padStart(8)} ns/op  (${(ns / base).toFixed(3)}x no BPF, +${added.toFixed(1)} ns)${vsEmpty}`,
        );
      }
    }

    console.log('\nmemory with N watched cgroups (learner attached):');
    await learner.attachAll();
    const maps = ['watched', 'watch_filter', 'objects', 'events', 'scratch', 'learner_stats'];
    let watchedSoFar = 0;
    for (const n of [1, 100, 1000]) {
      for (; watchedSoFar < n; watchedSoFar++) await learner.watch(10_000_000n + BigInt(watchedSoFar));
      let mapBytes = 0;
      const parts: string[] = [];
      for (const m of maps) {
        const info = await client.mapInfo('learner', m);
        mapBytes += info.memlockBytes;
        parts.push(`${m} ${(info.memlockBytes / 1024).toFixed(0)} KiB`);
      }
      const agentRss = process.memoryUsage().rss;
      const helperRss = client.pid ? rssBytes(client.pid) : 0;
      console.log(
        `  ${String(n).padStart(4)} watched: agent RSS ${(agentRss / 2 ** 20).toFixed(1)} MiB + helper RSS ${(helperRss / 2 ** 20).toFixed(1)} MiB; BPF maps ${(mapBytes / 2 ** 20).toFixed(2)} MiB (${parts.join(', ')})`,
      );
    }
  } finally {
    await learner.stop();
    await client.stop();
    Learner.removePins(pinDir);
    rmdirSync(cgroupDir);
  }
}

await main();
