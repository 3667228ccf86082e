// `pahlevan demo` end to end on this machine: real runc and crun containers, the real learner and enforcer. Every figure
// of the report is checked against what the run left behind (profile, behaviour, counters), and two runs with
// different traffic must report different request counts: nothing in the report is a constant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runDemo } from '../../cli/demo.js';
import { demoProblems, formatDemoReport, type DemoResult } from '../../cli/demo-report.js';
import { ATTACK_STEPS, NORMAL_PATHS } from '../../cli/demo-traffic.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { loadSurfaceReference } from '../../api/attack-surface-data.js';
import { promtoolProblems } from '../helpers/promtool.js';

async function demo(
  runtime: 'runc' | 'crun',
  rounds: number,
): Promise<{ result: DemoResult; dir: string; metrics: AgentMetrics; log: string[] }> {
  const dir = mkdtempSync('/var/tmp/pahlevan-demo-test-');
  const metrics = new AgentMetrics();
  const log: string[] = [];
  try {
    const result = await runDemo({ runtime, rounds, keepDir: dir, metrics, log: (l) => log.push(l) });
    return { result, dir, metrics, log };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${log.join('\n')}`);
  }
}

test(
  'pahlevan demo with runc and crun: learn, enforce, attack; the report is the run',
  { timeout: 300_000 },
  async () => {
    const runs = [await demo('runc', 3)];
    try {
      runs.push(await demo('crun', 5));
      for (const [i, { result: r, dir, metrics }] of runs.entries()) {
        const rounds = i === 0 ? 3 : 5;
        const requests = rounds * NORMAL_PATHS.length;
        const recorded = JSON.parse(readFileSync(join(dir, 'profile/behaviour.json'), 'utf8'));
        const profile = JSON.parse(readFileSync(join(dir, 'profile/seccomp.json'), 'utf8'));
        const secret = readFileSync(join(dir, 'srv/secrets/db-password'), 'utf8').trim();

        // Without Pahlevan everything works, the attacks included (so the blocks below are real).
        assert.equal(r.normal.baseline.requests, requests);
        assert.equal(r.normal.baseline.succeeded, requests);
        for (const a of r.attacks)
          assert.ok(a.baseline.succeeded, `baseline ${a.step}: ${a.baseline.detail}`);
        const secretStep = r.attacks.find((a) => a.step === 'read a secret file')!;
        assert.ok(secretStep.baseline.detail.length > 10 && secret.startsWith(secretStep.baseline.detail));
        assert.ok(r.exfil.baselineReceived >= 1);

        // Learning figures are the recorded files'.
        assert.equal(r.learning.requests, requests);
        assert.equal(r.learning.syscalls, recorded.syscalls.length);
        assert.equal(r.learning.files, recorded.files.length);
        assert.equal(r.learning.execs, recorded.execs.length);
        const ports = new Set(
          recorded.network
            .filter((n: { op: string; port: number }) => n.op !== 'accept' && n.port > 0)
            .map((n: { protocol: string; port: number }) => `${n.protocol}/${n.port}`),
        );
        assert.equal(r.learning.ports, ports.size);
        const allowed = new Set(profile.syscalls.flatMap((s: { names: string[] }) => s.names));
        const arch = loadSurfaceReference().archSyscalls;
        assert.equal(r.surface.syscallsAllowed, [...allowed].filter((n) => arch.has(n as string)).length);
        assert.equal(r.surface.runtimeDefaultSyscalls, loadSurfaceReference().runtimeDefault.size);
        assert.ok(r.surface.syscallsAllowed < r.surface.runtimeDefaultSyscalls);
        assert.ok(r.surface.dangerousRemoved.includes('ptrace'));

        // Under enforcement: the normal traffic all succeeds, every attack is blocked and counted by its layer.
        assert.equal(r.normal.enforced.requests, requests);
        assert.equal(r.normal.enforced.succeeded, requests);
        assert.equal(r.normal.enforced.latency.count, requests - NORMAL_PATHS.length); // first round is warm-up
        assert.deepEqual(r.layers.missing, []);
        for (const step of ATTACK_STEPS) {
          const a = r.attacks.find((x) => x.step === step.title)!;
          assert.ok(a.enforced.blocked, `${step.title} was not blocked: ${a.enforced.detail}`);
          assert.ok((a.counted[step.layer] ?? 0) >= 1, `${step.title}: nothing counted on ${step.layer}`);
          assert.ok(!a.enforced.detail.includes(secret.slice(0, 12)));
        }
        assert.equal(r.exfil.enforcedReceived, 0);
        const countedTotal = r.attacks.reduce(
          (s, a) => s + Object.values(a.counted).reduce((x, y) => x + y, 0),
          0,
        );
        assert.equal(r.violations.total, countedTotal);

        // The agent's metrics saw the same run, and their exposition is promtool-clean.
        const exposition = await metrics.registry.metrics();
        const denied = [...exposition.matchAll(/^pahlevan_agent_violations_total\{[^}]*\} (\d+)$/gm)].reduce(
          (s, m) => s + Number(m[1]),
          0,
        );
        assert.ok(denied >= ATTACK_STEPS.length, `violations metric ${denied}`);
        const learnedSyscalls = /pahlevan_agent_behaviours_learned_total\{kind="syscall"\} (\d+)/.exec(
          exposition,
        );
        assert.ok(learnedSyscalls && Number(learnedSyscalls[1]) >= 1);
        const lost = [
          ...exposition.matchAll(/^pahlevan_agent_ringbuf_dropped_events_total\{[^}]*\} (\d+)$/gm),
        ];
        assert.equal(lost.length, 2, 'events and objects loss series');
        assert.equal(
          lost.reduce((s, m) => s + Number(m[1]), 0),
          r.learning.eventsLost,
        );
        assert.deepEqual(promtoolProblems(exposition), []);

        // The report prints these figures.
        const text = formatDemoReport(r);
        assert.match(text, new RegExp(`from ${requests} requests: ${r.learning.syscalls} syscalls`));
        assert.match(
          text,
          new RegExp(`${r.surface.syscallsAllowed} allowed vs ${r.surface.runtimeDefaultSyscalls}`),
        );
        assert.match(text, new RegExp(`${requests}/${requests} requests succeeded under enforcement`));
        assert.match(text, /4\/4 blocked/);
        assert.deepEqual(demoProblems(r), []);
        assert.match(text, /every claim held/);
      }
      assert.notEqual(runs[0]!.result.normal.enforced.requests, runs[1]!.result.normal.enforced.requests);
    } finally {
      for (const { dir } of runs) rmSync(dir, { recursive: true, force: true });
    }
  },
);
