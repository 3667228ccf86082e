// npm run bench:merge — 1,000 nodes x 50 containers of observations merged into per-container profiles.
// Prints the merge time and memory, and the ratio against a baseline measured in the same run: one plain pass
// over every observed item (the least any merge has to do). Goal: merge <= 1 s.
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ContainerObservation, ObservationSpec } from '../api/observation.js';
import { PolicySpec } from '../api/policy.js';
import { cpus, loadavg } from 'node:os';
import { mergeObservations } from '../webhook/controller/merge.js';

const NODES = Number(process.env.BENCH_NODES ?? 1000);
const CONTAINERS = Number(process.env.BENCH_CONTAINERS ?? 50);
const SYSCALLS_PER_CONTAINER = 100;
const FILES_PER_CONTAINER = 20;

// Deterministic pseudo-random numbers, so every run merges the same data.
let seed = 42;
const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;

const syscallPool = Array.from({ length: 360 }, (_, i) => `sys_${i.toString(36)}`);

function makeContainer(c: number): ContainerObservation {
  const syscalls: ContainerObservation['syscalls'] = {};
  // Each container has a common core (80) plus some node-specific behaviour (20 out of 200 others).
  for (let i = 0; i < 80; i++)
    syscalls[syscallPool[(c * 7 + i) % 360]!] = { count: 1 + Math.floor(rand() * 50), pods: 1 };
  for (let i = 0; i < SYSCALLS_PER_CONTAINER - 80; i++)
    syscalls[syscallPool[(c * 7 + 80 + Math.floor(rand() * 200)) % 360]!] = { count: 1, pods: 1 };
  const files: ContainerObservation['files'] = {};
  for (let i = 0; i < FILES_PER_CONTAINER; i++)
    files[`/srv/app${c}/data/${Math.floor(rand() * 40)}`] = { count: 1, pods: 1, write: rand() < 0.2 };
  return {
    name: `container-${c}`,
    images: [`registry.example/app${c}:1.0`],
    pods: [`app${c}-${Math.floor(rand() * 1e6).toString(36)}`],
    syscalls,
    execs: { [`/usr/bin/app${c}`]: { count: 1, pods: 1 }, '/bin/sh': { count: 1, pods: 1 } },
    files,
    ports: [{ direction: 'listen', protocol: 'TCP', port: 8000 + c, count: 1, pods: 1 }],
  };
}

function makeObservations(): ObservationSpec[] {
  return Array.from({ length: NODES }, (_, n) => ({
    policy: 'bench',
    node: `node-${n}`,
    containers: Array.from({ length: CONTAINERS }, (_, c) => makeContainer(c)),
    violations: { total: 0, byLayer: {}, denied: [] },
    layers: { active: ['syscalls', 'files', 'execs', 'network'], missing: [] },
    installed: [],
  }));
}

function baselinePass(observations: ObservationSpec[]): number {
  let items = 0;
  for (const o of observations)
    for (const c of o.containers) {
      for (const k in c.syscalls) items += c.syscalls[k]!.count > 0 ? 1 : 0;
      for (const k in c.files) items += c.files[k]!.count > 0 ? 1 : 0;
      for (const k in c.execs) items += c.execs[k]!.count > 0 ? 1 : 0;
      items += c.ports.length;
    }
  return items;
}

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const spec = PolicySpec.parse({ selector: {} });
// The controller gets observations from the API as parsed JSON: give the merge the same kind of objects.
function parsedObservations(): ObservationSpec[] {
  return JSON.parse(JSON.stringify(makeObservations())) as ObservationSpec[];
}
const observations = parsedObservations();
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
gc();
gc();
const heapBefore = process.memoryUsage().heapUsed;

const runs = 5;
let mergeMs = Infinity;
let baselineMs = Infinity;
let mergeCpuMs = Infinity;
let items = 0;
let result: ReturnType<typeof mergeObservations> | undefined;
for (let i = 0; i < runs; i++) {
  let t = performance.now();
  items = baselinePass(observations);
  baselineMs = Math.min(baselineMs, performance.now() - t);
  gc();
  t = performance.now();
  const cpu = process.cpuUsage();
  result = mergeObservations(spec, observations);
  const used = process.cpuUsage(cpu);
  mergeMs = Math.min(mergeMs, performance.now() - t);
  mergeCpuMs = Math.min(mergeCpuMs, (used.user + used.system) / 1000);
}
gc();
const heapAfter = process.memoryUsage().heapUsed; // the last result is still referenced
const c0 = result!.containers[0]!;
console.log(`merge: ${NODES} nodes x ${CONTAINERS} containers, ${items.toLocaleString('en')} observed items`);
console.log(`  baseline (one pass over the items): ${baselineMs.toFixed(0)} ms`);
console.log(
  `  merge (best of ${runs}):              ${mergeMs.toFixed(0)} ms  (${(mergeMs / baselineMs).toFixed(1)}x baseline)`,
);
console.log(
  `  merge CPU time (best of ${runs}):     ${mergeCpuMs.toFixed(0)} ms (wall time suffers when the machine is shared)`,
);
console.log(
  `  load average now: ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} on ${cpus().length} CPUs`,
);
console.log(
  `  goal <= 1000 ms: ${mergeMs <= 1000 ? 'met' : mergeCpuMs <= 1000 ? 'met in CPU time, not in wall time' : 'NOT met'}`,
);
console.log(
  `  memory: observations ${mib(heapBefore)} MiB of heap; heap growth after merging (result and garbage) ${mib(heapAfter - heapBefore)} MiB; rss ${mib(process.memoryUsage().rss)} MiB`,
);
console.log(
  `  result: ${result!.containers.length} profiles; ${c0.container}: ${c0.syscalls.size} syscalls, coverage of the first: ${JSON.stringify(c0.syscalls.values().next().value)}`,
);
