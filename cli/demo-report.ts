// The one-screen report at the end of `pahlevan demo`. Pure: every figure comes in through DemoResult, which the
// demo fills from the run (nothing here is a constant about the result).
import type { AttackSurfaceReport } from '../api/attack-surface.js';
import type { AttackOutcome, LatencyStats } from './demo-traffic.js';

export interface DemoResult {
  runtime: string;
  kernel: string;
  learning: {
    durationMs: number;
    requests: number;
    syscalls: number;
    execs: number;
    files: number;
    ports: number;
    /** Ring-buffer records and in-kernel objects the learner lost (its kernel counters). */
    eventsLost: number;
  };
  surface: AttackSurfaceReport;
  layers: { active: string[]; missing: { layer: string; reason: string }[] };
  normal: {
    baseline: { requests: number; succeeded: number; latency: LatencyStats };
    enforced: { requests: number; succeeded: number; latency: LatencyStats };
  };
  /** Per attack step: without Pahlevan, under enforcement, and what the enforcer counted during the step. */
  attacks: {
    step: string;
    baseline: AttackOutcome;
    enforced: AttackOutcome;
    /** Violations counted by each layer's exact counters during the step. */
    counted: Record<string, number>;
    /** What the enforcer reported as denied during the step (`execs /usr/bin/dash`, `syscalls ptrace …`). */
    reported: string[];
  }[];
  violations: { total: number; byLayer: Record<string, number> };
  /** Messages that reached the attacker's listener: without Pahlevan, and under enforcement. */
  exfil: { baselineReceived: number; enforcedReceived: number };
  startup: { baselineMs: number; enforcedMs: number };
}

/** What went wrong, if anything: the demo's claims, checked against its own figures. Empty = all held. */
export function demoProblems(r: DemoResult): string[] {
  const problems: string[] = [];
  const n = r.normal;
  if (n.baseline.succeeded < n.baseline.requests)
    problems.push(
      `only ${n.baseline.succeeded}/${n.baseline.requests} normal requests worked without Pahlevan`,
    );
  if (n.enforced.succeeded < n.enforced.requests)
    problems.push(
      `only ${n.enforced.succeeded}/${n.enforced.requests} normal requests worked under enforcement`,
    );
  for (const a of r.attacks) {
    if (!a.baseline.succeeded)
      problems.push(`${a.step}: did not work even without Pahlevan (${a.baseline.detail})`);
    if (!a.enforced.blocked) problems.push(`${a.step}: not blocked under enforcement (${a.enforced.detail})`);
    else if (Object.values(a.counted).every((c) => c === 0))
      problems.push(`${a.step}: blocked but not counted`);
  }
  for (const m of r.layers.missing) problems.push(`layer ${m.layer} missing: ${m.reason}`);
  return problems;
}

const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
const ms = (x: number): string => (x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(2)} ms`);
const pad = (s: string, n: number): string =>
  s.length >= n ? s.slice(0, n - 1) + ' ' : s + ' '.repeat(n - s.length);
const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
const list = (xs: readonly string[], max: number): string =>
  xs.length === 0
    ? 'none'
    : xs.length <= max
      ? xs.join(', ')
      : `${xs.slice(0, max).join(', ')} (+${xs.length - max})`;

export function formatDemoReport(r: DemoResult): string {
  const s = r.surface;
  const blocked = r.attacks.filter((a) => a.enforced.blocked).length;
  const counted = (c: Record<string, number>): string =>
    Object.entries(c)
      .filter(([, n]) => n > 0)
      .map(([layer, n]) => `${layer} ${n}`)
      .join(', ') || 'not counted';
  const lines = [
    `Pahlevan demo report  (${r.runtime}, Linux ${r.kernel})`,
    '',
    `Learned      in ${(r.learning.durationMs / 1000).toFixed(1)} s from ${r.learning.requests} requests: ` +
      `${count(r.learning.syscalls, 'syscall')}, ${count(r.learning.execs, 'executable')}, ` +
      `${count(r.learning.files, 'file')}, ${count(r.learning.ports, 'port')} (${r.learning.eventsLost} events lost)`,
    `Syscalls     ${s.syscallsAllowed} allowed vs ${s.runtimeDefaultSyscalls} in the runtime default ` +
      `(${Math.round(s.reductionVsDefault * 100)}% fewer)`,
    `             dangerous still allowed: ${list(s.dangerousAllowed, 6)}`,
    `             dangerous removed: ${list(s.dangerousRemoved, 8)}`,
    `Risk score   ${s.riskScore} / 100 (runtime default with the same allow-lists: ${s.riskScoreRuntimeDefault})`,
    `Layers       active: ${list(r.layers.active, 6)}` +
      (r.layers.missing.length
        ? `; missing: ${r.layers.missing.map((m) => `${m.layer} (${m.reason})`).join('; ')}`
        : ''),
    '',
    `Normal       ${r.normal.enforced.succeeded}/${r.normal.enforced.requests} requests succeeded under enforcement ` +
      `(without Pahlevan: ${r.normal.baseline.succeeded}/${r.normal.baseline.requests})`,
    `Attacks      ${blocked}/${r.attacks.length} blocked; ${r.violations.total} violations counted` +
      (Object.keys(r.violations.byLayer).length ? ` (${counted(r.violations.byLayer)})` : ''),
    `  ${pad('step', 28)}${pad('without Pahlevan', 24)}${pad('with Pahlevan', 22)}${pad('counted', 12)}denied`,
  ];
  for (const a of r.attacks) {
    const before = a.baseline.succeeded ? `worked: ${a.baseline.detail}` : `failed: ${a.baseline.detail}`;
    const after = a.enforced.blocked
      ? `blocked (${a.enforced.detail})`
      : a.enforced.succeeded
        ? `NOT BLOCKED`
        : `FAILED: ${a.enforced.detail}`;
    const denied = a.reported[0]?.replace(/^\S+ /, '') ?? '-';
    lines.push(
      `  ${pad(a.step, 28)}${pad(before, 24)}${pad(after, 22)}${pad(counted(a.counted), 12)}${denied.slice(0, 40)}`,
    );
  }
  const b = r.normal.baseline.latency;
  const e = r.normal.enforced.latency;
  lines.push(
    '',
    `Cost         request latency p50 ${ms(b.p50Ms)} → ${ms(e.p50Ms)} (${ratio(e.p50Ms, b.p50Ms)}), ` +
      `p99 ${ms(b.p99Ms)} → ${ms(e.p99Ms)} (${ratio(e.p99Ms, b.p99Ms)}), ${e.count} requests each after a warm-up round`,
    `             container start to first answer ${ms(r.startup.baselineMs)} → ${ms(r.startup.enforcedMs)} ` +
      `(${ratio(r.startup.enforcedMs, r.startup.baselineMs)})`,
  );
  const problems = demoProblems(r);
  lines.push(
    '',
    problems.length === 0 ? 'Result       every claim held' : `Result       ${problems.length} problem(s):`,
  );
  for (const p of problems) lines.push(`  - ${p}`);
  return lines.join('\n');
}
