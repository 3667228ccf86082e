// `npm run bench:learner`: what the learner costs a syscall, against an empty program on the same hook,
// measured in the same run with interleaved rounds; then the agent's RSS and the BPF maps' memory with
// 1, 100 and 1000 watched cgroups.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { BPF_OUTPUT_DIR, BpfdClient, bpfObjectPath } from '../agent/bpfd-client.js';
import { cgroup2Root } from '../agent/container.js';
import { Learner, cgroupIdOf } from '../agent/learner.js';

const LOOP = `${BPF_OUTPUT_DIR}syscall-loop`;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21);
// Short runs, many interleaved rounds: on a shared machine a short run is less likely to be preempted,
// and the minimum over rounds is the least disturbed measurement.
const ITERATIONS: Record<string, number> = { getppid: 300_000, openat: 60_000 };
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
  // Interrupted (Ctrl-C, a closed pipe): leave no pinned maps or cgroup behind.
  const bail = (): never => {
    Learner.removePins(pinDir);
    try {
      rmdirSync(cgroupDir);
    } catch {
      // a loop may still be in it; the kernel frees it when that exits
    }
    process.exit(130);
  };
  process.once('SIGINT', bail);
  process.once('SIGTERM', bail);
  process.stdout.on('error', bail);
  const client = await BpfdClient.start();
  const learner = await Learner.start({ client, pinDir });
  await learner.detachAll();
  await client.open('empty', bpfObjectPath('bench_empty'));
  const callerId = cgroupIdOf(cgroupDir);
  await client.stats(true);
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
      // In-kernel time per program run (BPF_ENABLE_STATS): immune to the scheduling noise of a shared
      // machine; counts every run during the loop (the loop makes nearly all of them).
      const progNs: Record<Config, number[]> = {
        'no BPF': [],
        'empty program': [],
        'learner, caller watched': [],
        'learner, caller unwatched': [],
      };
      const progOf = (config: Config): [string, string] | undefined =>
        config === 'empty program'
          ? ['empty', 'empty_sys_enter']
          : config.startsWith('learner')
            ? ['learner', 'learn_sys_enter']
            : undefined;
      for (let round = 0; round < ROUNDS; round++) {
        for (const config of CONFIGS) {
          if (config === 'empty program') await client.attach('empty', 'empty_sys_enter');
          if (config.startsWith('learner')) await learner.attachAll();
          if (config === 'learner, caller watched') await learner.watch(callerId, { requireSeccomp: true });
          try {
            const prog = progOf(config);
            const before = prog ? await client.progInfo(...prog) : undefined;
            samples[config].push(runLoop(cgroupDir, kind));
            if (prog && before) {
              const after = await client.progInfo(...prog);
              progNs[config].push(
                (after.runTimeNs - before.runTimeNs) / Math.max(1, after.runCount - before.runCount),
              );
            }
          } finally {
            if (config === 'empty program') await client.detach('empty', 'empty_sys_enter');
            if (config === 'learner, caller watched') await learner.forget(callerId);
            if (config.startsWith('learner')) await learner.detachAll();
          }
        }
      }
      const base = median(samples['no BPF']);
      const baseMin = Math.min(...samples['no BPF']);
      const emptyAdded = median(samples['empty program']) - base;
      const emptyMinAdded = Math.min(...samples['empty program']) - baseMin;
      const emptyBody = median(progNs['empty program']);
      console.log(`\n${kind} loop (${ITERATIONS[kind]} iterations x ${ROUNDS} interleaved rounds):`);
      for (const config of CONFIGS) {
        const ns = median(samples[config]);
        const minNs = Math.min(...samples[config]);
        let line = `  ${config.padEnd(26)} ns/op median ${ns.toFixed(1).padStart(7)} (+${(ns - base).toFixed(1)}), min ${minNs.toFixed(1).padStart(7)} (+${(minNs - baseMin).toFixed(1)})`;
        if (config.startsWith('learner')) {
          const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a (noise)');
          line += `; added vs empty's added: median ${ratio(ns - base, emptyAdded)}, min ${ratio(minNs - baseMin, emptyMinAdded)}`;
        }
        console.log(line);
      }
      // In-kernel program time is immune to scheduling noise. The hook's own cost (what the empty
      // program adds, from the minimum wall-clock figures) plus the extra body time of the learner
      // over the empty body gives the learner's added cost relative to the empty program's.
      const hookNs = emptyMinAdded;
      console.log(`  program body (BPF stats, ns/run): empty ${emptyBody.toFixed(1)}`);
      for (const config of ['learner, caller watched', 'learner, caller unwatched'] as const) {
        const extra = median(progNs[config]) - emptyBody;
        const estimate = hookNs > 0 ? `${((hookNs + extra) / hookNs).toFixed(2)}x` : 'n/a (noise)';
        console.log(
          `    ${config.padEnd(26)} ${median(progNs[config]).toFixed(1)} ns/run: +${extra.toFixed(1)} ns over the empty body => added cost ${estimate} the empty program's (hook +${hookNs.toFixed(1)} ns)`,
        );
      }
    }

    console.log('\nmemory with N watched cgroups (learner attached):');
    await learner.attachAll();
    const maps = ['watch_slots', 'slot_overflow', 'watched', 'objects', 'events', 'scratch', 'learner_stats'];
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
    await client.stats(false).catch(() => undefined);
    await learner.stop();
    await client.stop();
    Learner.removePins(pinDir);
    rmdirSync(cgroupDir);
  }
}

await main();
