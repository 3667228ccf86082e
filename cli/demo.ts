// `pahlevan demo`: learn → enforce → attack on one host, no cluster. Starts the sample service
// (cli/demo-assets/service.py) in a real container three times: without Pahlevan (the baseline: normal traffic
// and the attack script both succeed), under the learner while normal traffic is driven at it (what
// `pahlevan record` does), and under the enforcer in mode Enforce (what `pahlevan run --mode Enforce` does: normal
// traffic again, then the attack script). It uses the same modules as those commands, in process, so it can show
// live progress and count each attack step exactly. Every figure in the final report comes from these runs.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { LAYERS, parsePolicy, type PahlevanPolicy } from '../api/policy.js';
import type { OciSeccompProfile } from '../api/seccomp.js';
import { parseBehaviour } from '../api/attack-surface.js';
import { cgroup2Root, startContainer, type Container, type Runtime } from '../agent/container.js';
import { Enforcer, type ContainerCounters } from '../agent/enforcer.js';
import { startEnforced } from './enforce-run.js';
import { Learner } from '../agent/learner.js';
import { startRecording, writeRecording, type RecordResult } from '../agent/recorder.js';
import type { AgentMetrics } from '../agent/metrics.js';
import { surfaceOfRecordDir } from './surface.js';
import { demoProblems, formatDemoReport, type DemoResult } from './demo-report.js';
import {
  ATTACK_STEPS,
  exfilListener,
  get,
  latencyStats,
  normalTraffic,
  runAttack,
  waitForService,
  type AttackOutcome,
  type TrafficResult,
} from './demo-traffic.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVICE = join(REPO_ROOT, 'cli/demo-assets/service.py');
const STARTUP_TIMEOUT_MS = 30_000;

export interface DemoOptions {
  runtime: Runtime;
  /** Rounds of the normal user journey (8 requests each) per phase. */
  rounds: number;
  /** Keep the work directory (profile, behaviour, logs) here instead of deleting it. */
  keepDir?: string;
  /** Progress lines go here (stderr in the CLI). */
  log: (line: string) => void;
  /** Counts learning and enforcement the way the agent does (agent/metrics.ts). */
  metrics?: AgentMetrics;
  /** Live progress: the line, and whether it is a milestone (every quarter) worth a line of its own. */
  progress?: (line: string, milestone: boolean) => void;
}

/**
 * The policy the demo enforces, as a user would write it. Learned behaviour plus two explicit choices:
 * - loopback and DNS are not free passes (the attacker's listener is on loopback; the shop needs no DNS);
 * - restart_syscall is always allowed: the kernel makes a task re-enter it after a signal interrupted a sleep,
 *   so whether a recording sees it depends on timing, not on the workload (runs of this demo without it lost
 *   the service in about half the runs when a SIGCHLD landed during a poll).
 */
export const DEMO_POLICY = {
  apiVersion: 'pahlevan.io/v1alpha1',
  kind: 'PahlevanPolicy',
  metadata: { name: 'shop', namespace: 'demo' },
  spec: {
    selector: { matchLabels: { app: 'shop' } },
    enforcement: { mode: 'Enforce', layers: ['syscalls', 'files', 'execs', 'network'] },
    syscalls: { allow: ['restart_syscall'] },
    network: { allowDNS: false, allowLoopback: false },
  },
};

function parsedDemoPolicy(): PahlevanPolicy {
  const parsed = parsePolicy(DEMO_POLICY);
  if (!parsed.ok) throw new Error(`the demo policy is invalid: ${parsed.errors.join('; ')}`);
  return parsed.policy;
}

/** A profile that also allows `extra` (a policy's explicit syscall additions, as the controller merges them). */
function withExtraSyscalls(profile: OciSeccompProfile, extra: readonly string[]): OciSeccompProfile {
  const allowed = new Set(
    profile.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW').flatMap((s) => s.names),
  );
  const missing = extra.filter((n) => !allowed.has(n));
  if (missing.length === 0) return profile;
  return { ...profile, syscalls: [...profile.syscalls, { names: missing, action: 'SCMP_ACT_ALLOW' }] };
}

/** What must be undone if the demo is interrupted (Ctrl-C, a closed pipe): newest first. */
const abortSteps: (() => Promise<void>)[] = [];

function onAbort(step: () => Promise<void>): () => void {
  abortSteps.push(step);
  return () => {
    const i = abortSteps.lastIndexOf(step);
    if (i >= 0) abortSteps.splice(i, 1);
  };
}

/** Stops the containers, the learner and the enforcer of a demo in progress and removes its files. */
export async function abortDemo(): Promise<void> {
  while (abortSteps.length > 0) await abortSteps.pop()!().catch(() => undefined);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function preflight(runtime: Runtime): void {
  if (process.getuid?.() !== 0)
    throw new Error('pahlevan demo must run as root (containers and BPF programs need it): try sudo');
  for (const [bin, pkg] of [
    ['python3', 'python3'],
    [runtime, runtime],
  ] as const) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0)
      throw new Error(`${bin} not found: install the Debian package ${pkg} (./setup.sh installs everything)`);
  }
  if (!existsSync(join(REPO_ROOT, 'dist/cli/main.js')))
    throw new Error('pahlevan is not built: run `npm run build` (./setup.sh does)');
}

function exitedEarly(container: Container): boolean {
  return container.process.exitCode !== null || container.process.signalCode !== null;
}

async function quitService(port: number): Promise<void> {
  try {
    await get(port, '/quit', 3000);
  } catch {
    // already gone
  }
}

/** The enforcer's exact per-layer violation counters of a container (kernel maps, the fanotify helper). */
function layerTotals(c: ContainerCounters): Record<string, number> {
  const net = c.network ? c.network.connect + c.network.bind + c.network.ingress + c.network.sendmsg : 0n;
  return {
    syscalls: Number(c.syscalls?.total ?? 0n),
    files: Number(c.files),
    execs: Number(c.execs),
    network: Number(net),
  };
}

interface SeenViolation {
  layer: string;
  what: string;
  denied: boolean;
}

/**
 * Runs the attack script. With `probe` (the enforcer's exact per-layer counters and its violation reports), each
 * step also says how much each layer counted while it ran and what was reported.
 */
async function runAttacks(
  port: number,
  ctx: { exfilPort: number; secretRelative: string },
  probe?: { totals: () => Promise<Record<string, number>>; events: SeenViolation[] },
): Promise<{ outcome: AttackOutcome; counted: Record<string, number>; reported: string[] }[]> {
  const out = [];
  for (const step of ATTACK_STEPS) {
    const before = probe ? await probe.totals() : {};
    const firstEvent = probe?.events.length ?? 0;
    const outcome = await runAttack(step, port, ctx);
    const counted: Record<string, number> = {};
    let reported: string[] = [];
    if (probe) {
      // Violations reach the counters' readers asynchronously (ring buffer, fanotify thread): let them land.
      await new Promise((r) => setTimeout(r, 250));
      const after = await probe.totals();
      for (const [layer, n] of Object.entries(after))
        if (n > (before[layer] ?? 0)) counted[layer] = n - (before[layer] ?? 0);
      reported = probe.events
        .slice(firstEvent)
        .map((v) => `${v.layer} ${v.what}${v.denied ? '' : ' (allowed)'}`);
    }
    out.push({ outcome, counted, reported });
  }
  return out;
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const { log } = options;
  preflight(options.runtime);
  const work =
    options.keepDir ?? join('/var/tmp', `pahlevan-demo-${process.pid}-${randomBytes(3).toString('hex')}`);
  // The shop's files, as its image would have them, at /srv in the container (a read-only bind mount): the
  // service, its static files and a secret next to them. The paths it learns then do not depend on where this
  // work directory is (a random-looking directory name would be generalised to its whole parent).
  const srv = join(work, 'srv');
  mkdirSync(join(srv, 'app'), { recursive: true });
  mkdirSync(join(srv, 'public'), { recursive: true });
  mkdirSync(join(srv, 'secrets'), { recursive: true });
  copyFileSync(SERVICE, join(srv, 'app/service.py'));
  writeFileSync(join(srv, 'public/index.html'), '<h1>Pahlevan demo shop</h1>\n');
  writeFileSync(join(srv, 'public/style.css'), 'body { font-family: sans-serif; }\n');
  const secret = `db-password-${randomBytes(8).toString('hex')}`;
  writeFileSync(join(srv, 'secrets/db-password'), secret + '\n', { mode: 0o600 });
  const mounts = [{ destination: '/srv', type: 'bind', source: srv, options: ['rbind', 'ro'] }];
  const profileDir = join(work, 'profile');
  const dropWork = onAbort(async () => {
    if (!options.keepDir) rmSync(work, { recursive: true, force: true });
  });
  const exfil = await exfilListener();
  const ctx = { exfilPort: exfil.port, secretRelative: '../secrets/db-password' };
  const serviceCommand = (port: number): string[] => [
    'python3',
    '/srv/app/service.py',
    String(port),
    '/srv/public',
  ];
  const progress = (done: number, total: number, extra = ''): void => {
    const quarter = Math.max(1, Math.round(total / 4));
    options.progress?.(`      ${done}/${total} requests${extra}`, done % quarter === 0 && done < total);
  };

  // The service listens on the same port in every phase, as a real one would: the port is part of what is learned.
  const servicePort = await freePort();
  try {
    // 1. Baseline: the same container with no Pahlevan at all.
    log(`[1/4] Baseline: the sample service in a ${options.runtime} container without Pahlevan`);
    const baseContainer = await startContainer({
      runtime: options.runtime,
      command: serviceCommand(servicePort),
      mounts,
    });
    const dropBase = onAbort(() => baseContainer.cleanup());
    let baseline: { traffic: TrafficResult; startupMs: number; attacks: AttackOutcome[] };
    try {
      const startupMs = await waitForService(
        servicePort,
        STARTUP_TIMEOUT_MS,
        () => !exitedEarly(baseContainer),
      );
      const traffic = await normalTraffic(servicePort, options.rounds, progress);
      const attacks = (await runAttacks(servicePort, ctx)).map((a) => a.outcome);
      baseline = { traffic, startupMs, attacks };
      await quitService(servicePort);
      await Promise.race([baseContainer.exited, new Promise((r) => setTimeout(r, 5000))]);
    } finally {
      await baseContainer.cleanup();
      dropBase();
    }
    const exfilBaseline = exfil.received();
    log(
      `      ${baseline.traffic.succeeded}/${baseline.traffic.requests} normal requests ok; attacks that worked: ` +
        `${baseline.attacks.filter((a) => a.succeeded).length}/${baseline.attacks.length}`,
    );

    // 2. Learning: the learner watches the container from its first instruction while normal traffic runs.
    log(`[2/4] Learning: the sample service under the eBPF learner while normal traffic runs`);
    const learnStarted = Date.now();
    const learner = await Learner.start({ pinDir: `/sys/fs/bpf/pahlevan-demo-${process.pid}` });
    const dropLearner = onAbort(async () => {
      await learner.stop();
      Learner.removePins(learner.pinDir);
    });
    const firstSeen: Record<string, number> = { syscall: 0, exec: 0, file: 0, net: 0 };
    learner.on('event', (ev) => {
      firstSeen[ev.kind] = (firstSeen[ev.kind] ?? 0) + 1;
      const kind = ev.kind === 'net' ? 'port' : ev.kind;
      options.metrics?.firstSeenEvents.inc({ kind });
      options.metrics?.learned(kind);
    });
    let record: RecordResult;
    let losses = { eventsLost: 0, objectsDropped: 0 };
    let learnTraffic: TrafficResult;
    try {
      const recording = await startRecording({
        runtime: options.runtime,
        command: serviceCommand(servicePort),
        mounts,
        learner,
        stdio: 'pipe',
      });
      const dropRecording = onAbort(() => recording.container.cleanup());
      recording.container.stdout?.resume();
      recording.container.stderr?.resume();
      options.metrics?.containersWatched.set({ mode: 'learning' }, 1);
      try {
        await waitForService(servicePort, STARTUP_TIMEOUT_MS, () => !exitedEarly(recording.container));
        learnTraffic = await normalTraffic(servicePort, options.rounds, (d, t) =>
          progress(
            d,
            t,
            `; learned so far: ${firstSeen.syscall} syscalls, ${firstSeen.exec} execs, ${firstSeen.file} files, ${firstSeen.net} ports`,
          ),
        );
        await quitService(servicePort);
        await Promise.race([recording.container.exited, new Promise((r) => setTimeout(r, 5000))]);
        losses = await learner.lossCounters();
        options.metrics?.ringbufDropped.inc({ ringbuf: 'events' }, losses.eventsLost);
        options.metrics?.ringbufDropped.inc({ ringbuf: 'objects' }, losses.objectsDropped);
      } finally {
        // stop() is a no-op for an exited container and returns what was learned.
        record = await recording.stop();
        dropRecording();
        options.metrics?.containersWatched.set({ mode: 'learning' }, 0);
      }
    } finally {
      await learner.stop();
      Learner.removePins(learner.pinDir);
      dropLearner();
    }
    writeRecording(profileDir, record);
    const learnMs = Date.now() - learnStarted;
    const behaviour = parseBehaviour(record.behaviour);
    // The demo's PahlevanPolicy: Enforce on every layer, what was learned plus the policy's explicit additions.
    writeFileSync(join(work, 'policy.yaml'), stringify(DEMO_POLICY));
    const spec = parsedDemoPolicy().spec;
    const profile = withExtraSyscalls(record.profile, spec.syscalls?.allow ?? []);
    writeFileSync(join(profileDir, 'seccomp.json'), JSON.stringify(profile, null, 2) + '\n');
    const surface = surfaceOfRecordDir(profileDir, { container: 'shop', spec });
    const learnedSyscalls = record.syscalls.length;
    // Distinct ports listened on or connected to (bind, listen and accept of one port are one port).
    const learnedPorts = new Set(
      [...behaviour.listening, ...behaviour.egress].map((p) => `${p.protocol}/${p.port}`),
    ).size;
    log(
      `      ${learnTraffic.succeeded}/${learnTraffic.requests} requests in ${(learnMs / 1000).toFixed(1)} s → ` +
        `${learnedSyscalls} syscalls, ${behaviour.execs.length} executables, ${record.behaviour.files.length} files, ` +
        `${learnedPorts} ports; profile allows ${surface.syscallsAllowed} syscalls → ${profileDir}`,
    );

    // 3. Enforcement: the learned profile and allow-lists on every layer this kernel has, normal traffic replayed.
    log(`[3/4] Enforcing: the learned profile and allow-lists (mode Enforce), normal traffic replayed`);
    const enforcer = await Enforcer.start({ cgroupAttachDir: join(cgroup2Root().root, 'pahlevan') });
    const dropEnforcer = onAbort(() => enforcer.stop());
    const layers = enforcer.layers();
    for (const l of layers)
      log(
        `      layer ${l.layer}: ${l.active ? `active (${l.mechanism})` : `MISSING: ${l.reason ?? 'unknown'}`}`,
      );
    options.metrics?.setLayers(
      hostname(),
      layers.filter((l) => l.active).map((l) => l.layer),
      layers.filter((l) => !l.active).map((l) => l.layer),
    );
    const violations: SeenViolation[] = [];
    enforcer.on('violation', (v) => {
      violations.push({ layer: v.layer, what: v.what, denied: v.denied });
      options.metrics?.violation({
        namespace: 'demo',
        policy: 'shop',
        container: 'shop',
        layer: v.layer,
        action: v.denied ? (v.mode === 'Alert' ? 'alert' : 'deny') : 'log',
      });
    });
    // The demo's policy: what was learned, nothing more. Loopback is not a free pass (the exfil listener is
    // on loopback), and the service needs no DNS.
    let enforced: {
      traffic: TrafficResult;
      startupMs: number;
      attacks: { outcome: AttackOutcome; counted: Record<string, number>; reported: string[] }[];
    };
    try {
      const enforceStarted = Date.now();
      // What `pahlevan run --mode Enforce` does (cli/enforce-run.ts), with this demo's policy rules.
      const run = await startEnforced({
        command: serviceCommand(servicePort),
        profileDir,
        runtime: options.runtime,
        net: 'host',
        mode: 'Enforce',
        layers: [...LAYERS],
        rules: { network: spec.network },
        mounts,
        enforcer,
        stdio: 'pipe',
      });
      const dropRun = onAbort(() => run.close());
      const container = run.container;
      const containerOutput: string[] = [];
      for (const stream of [container.stdout, container.stderr])
        stream?.setEncoding('utf8').on('data', (d: string) => containerOutput.push(d));
      options.metrics?.containersWatched.set({ mode: 'enforcing' }, 1);
      try {
        await waitForService(servicePort, STARTUP_TIMEOUT_MS, () => !exitedEarly(container));
        const startupMs = Date.now() - enforceStarted;
        const traffic = await normalTraffic(servicePort, options.rounds, progress);
        log(`      ${traffic.succeeded}/${traffic.requests} normal requests ok`);
        for (const f of traffic.failures.slice(0, 5)) log(`      FAILED ${f.path}: ${f.status} ${f.error}`);
        const duringNormal = violations.splice(0);
        for (const v of duringNormal.slice(0, 10))
          log(`      violation during normal traffic: ${v.layer} ${v.what}${v.denied ? '' : ' (allowed)'}`);
        log(`[4/4] Attack script against the enforced service`);
        const attacks = await runAttacks(servicePort, ctx, {
          totals: async () => layerTotals(await run.counters()),
          events: violations,
        });
        for (const a of attacks)
          log(
            `      ${a.outcome.title}: ${a.outcome.blocked ? `blocked (${a.outcome.detail})` : a.outcome.succeeded ? 'NOT blocked' : `FAILED (${a.outcome.detail})`}` +
              `, counted: ${
                Object.entries(a.counted)
                  .map(([l, n]) => `${l} ${n}`)
                  .join(', ') || 'none'
              }; reported: ${a.reported.join('; ') || 'none'}`,
          );
        enforced = { traffic, startupMs, attacks };
        await quitService(servicePort);
        await Promise.race([container.exited, new Promise((r) => setTimeout(r, 5000))]);
      } catch (err) {
        const output = containerOutput.join('').trim().split('\n').slice(-12).join('\n');
        const seen = violations
          .slice(-8)
          .map((v) => `${v.layer} ${v.denied ? 'denied' : 'logged'} ${v.what}`);
        throw new Error(
          `${(err as Error).message}\ncontainer output:\n${output || '(none)'}\nlast violations:\n${seen.join('\n') || '(none)'}`,
        );
      } finally {
        await run.close();
        dropRun();
        options.metrics?.containersWatched.set({ mode: 'enforcing' }, 0);
      }
    } finally {
      await enforcer.stop();
      dropEnforcer();
    }
    const exfilEnforced = exfil.received() - exfilBaseline;

    const byLayer: Record<string, number> = {};
    for (const a of enforced.attacks)
      for (const [layer, n] of Object.entries(a.counted)) byLayer[layer] = (byLayer[layer] ?? 0) + n;
    const total = Object.values(byLayer).reduce((s, n) => s + n, 0);
    return {
      runtime: options.runtime,
      kernel: release(),
      learning: {
        durationMs: learnMs,
        requests: learnTraffic.requests,
        syscalls: learnedSyscalls,
        execs: behaviour.execs.length,
        files: record.behaviour.files.length,
        ports: learnedPorts,
        eventsLost: losses.eventsLost + losses.objectsDropped,
      },
      surface,
      layers: {
        active: layers.filter((l) => l.active).map((l) => `${l.layer} (${l.mechanism})`),
        missing: layers
          .filter((l) => !l.active)
          .map((l) => ({ layer: l.layer, reason: l.reason ?? 'unknown' })),
      },
      exfil: { baselineReceived: exfilBaseline, enforcedReceived: exfilEnforced },
      normal: {
        baseline: {
          requests: baseline.traffic.requests,
          succeeded: baseline.traffic.succeeded,
          latency: latencyStats(baseline.traffic.latenciesMs),
        },
        enforced: {
          requests: enforced.traffic.requests,
          succeeded: enforced.traffic.succeeded,
          latency: latencyStats(enforced.traffic.latenciesMs),
        },
      },
      attacks: enforced.attacks.map((a, i) => ({
        step: a.outcome.title,
        baseline: baseline.attacks[i]!,
        enforced: a.outcome,
        counted: a.counted,
        reported: a.reported,
      })),
      violations: { total, byLayer },
      startup: { baselineMs: baseline.startupMs, enforcedMs: enforced.startupMs },
    };
  } finally {
    await exfil.close();
    dropWork();
    if (!options.keepDir) rmSync(work, { recursive: true, force: true });
  }
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'Learn → enforce → attack on this host, no cluster: a sample service in a real container is learned, ' +
        'enforced, and attacked; ends with a one-screen report.',
    )
    .option('--runtime <runc|crun>', 'container runtime', 'runc')
    .option('--rounds <n>', 'rounds of normal traffic per phase (8 requests each)', '30')
    .option('--keep <dir>', 'keep the profile, behaviour and logs in this directory')
    .option('-o, --output <format>', 'text or json', 'text')
    .action(async (opts: { runtime: string; rounds: string; keep?: string; output: string }) => {
      try {
        if (opts.runtime !== 'runc' && opts.runtime !== 'crun')
          throw new Error(`--runtime ${opts.runtime}: expected runc or crun`);
        if (opts.output !== 'text' && opts.output !== 'json')
          throw new Error(`-o ${opts.output}: expected text or json`);
        const rounds = Number(opts.rounds);
        if (!Number.isInteger(rounds) || rounds < 1)
          throw new Error(`--rounds ${opts.rounds}: expected a positive integer`);
        const tty = process.stderr.isTTY;
        // Interrupted: clean up (containers, BPF programs, files) before leaving. A closed pipe (| head) is
        // not a reason to leave containers behind either.
        const interrupt = (signal: string): void => {
          process.stderr.write(`\npahlevan demo: ${signal}, cleaning up\n`);
          void abortDemo().finally(() => process.exit(130));
        };
        process.once('SIGINT', () => interrupt('interrupted'));
        process.once('SIGTERM', () => interrupt('terminated'));
        for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
        const result = await runDemo({
          runtime: opts.runtime,
          rounds,
          ...(opts.keep ? { keepDir: opts.keep } : {}),
          log: (line) => {
            if (tty) process.stderr.write('\r\x1b[K');
            process.stderr.write(line + '\n');
          },
          // On a terminal one line updates in place; in a log (CI), a line every quarter.
          progress: (line: string, milestone: boolean) => {
            if (tty) process.stderr.write('\r\x1b[K' + line);
            else if (milestone) process.stderr.write(line + '\n');
          },
        });
        if (tty) process.stderr.write('\r\x1b[K');
        console.log(
          opts.output === 'json' ? JSON.stringify(result, null, 2) : '\n' + formatDemoReport(result),
        );
        // The demo makes claims; when one does not hold on this machine, say so by the exit code as well.
        if (demoProblems(result).length > 0) process.exitCode = 1;
      } catch (err) {
        console.error(`pahlevan demo: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    });
}
