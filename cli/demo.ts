// `pahlevan demo`: learn → enforce → attack on one host, no cluster. Starts the sample service
// (cli/demo-assets/service.py) in a real container three times: without Pahlevan (the baseline: normal traffic
// and the attack script both succeed), under `pahlevan record` while normal traffic is driven at it (learning),
// and under `pahlevan run --mode Enforce` (normal traffic again, then the attack script). Every figure in the
// final report comes from these runs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { release } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { parseBehaviour } from '../api/attack-surface.js';
import { startContainer, type Container, type Runtime } from '../agent/container.js';
import { Learner } from '../agent/learner.js';
import { startRecording, writeRecording, type RecordResult } from '../agent/recorder.js';
import type { AgentMetrics } from '../agent/metrics.js';
import { surfaceOfRecordDir } from './surface.js';
import { formatDemoReport, type DemoResult } from './demo-report.js';
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
const PAHLEVAN = join(REPO_ROOT, 'bin/pahlevan.js');
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
  /** Live progress on one line (a TTY), or undefined. */
  progress?: (line: string) => void;
}

/** One violation line as `pahlevan run` prints it. */
export interface SeenViolation {
  layer: string;
  what: string;
  verdict: string;
}

/**
 * Reads a violation from a line of `pahlevan run` output: `violation <layer> <verdict> <what>` or a JSON object
 * with layer/verdict/what. Anything else is not a violation.
 */
export function parseViolationLine(line: string): SeenViolation | undefined {
  const trimmed = line.trim();
  if (trimmed.startsWith('{')) {
    try {
      const o = JSON.parse(trimmed) as Record<string, unknown>;
      if ((o.type === 'violation' || o.event === 'violation' || o.violation) && typeof o.layer === 'string')
        return {
          layer: o.layer,
          what: String(o.what ?? o.detail ?? ''),
          verdict: String(o.verdict ?? o.action ?? ''),
        };
    } catch {
      return undefined;
    }
    return undefined;
  }
  const m = /^violation\s+(\S+)\s+(\S+)\s+(.*)$/i.exec(trimmed);
  return m ? { layer: m[1]!, verdict: m[2]!, what: m[3]! } : undefined;
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

/** A `pahlevan` subcommand as a child process, its output lines collected and offered to a listener. */
class PahlevanProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<number>;
  private onLine: ((line: string) => void) | undefined;
  private exitCode: number | undefined;

  constructor(
    readonly args: string[],
    private readonly logFile: string,
  ) {
    const child: ChildProcess = spawn(process.execPath, [PAHLEVAN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [child.stdout!, child.stderr!])
      createInterface({ input: stream }).on('line', (line) => {
        this.lines.push(line);
        writeFileSync(this.logFile, line + '\n', { flag: 'a' });
        this.onLine?.(line);
      });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : 1);
        resolve(this.exitCode);
      }),
    );
    this.child = child;
  }
  private readonly child: ChildProcess;

  alive(): boolean {
    return this.exitCode === undefined;
  }
  listen(onLine: (line: string) => void): void {
    this.onLine = onLine;
  }
  interrupt(): void {
    if (this.alive()) this.child.kill('SIGINT');
  }
  tail(n = 15): string {
    return this.lines.slice(-n).join('\n');
  }
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

async function runAttacks(
  port: number,
  ctx: { exfilPort: number; secretRelative: string },
  afterEach?: (outcome: AttackOutcome) => Promise<Record<string, number>>,
): Promise<{ outcome: AttackOutcome; counted: Record<string, number> }[]> {
  const out = [];
  for (const step of ATTACK_STEPS) {
    const outcome = await runAttack(step, port, ctx);
    const counted = afterEach ? await afterEach(outcome) : {};
    out.push({ outcome, counted });
  }
  return out;
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const { log } = options;
  preflight(options.runtime);
  const work =
    options.keepDir ?? join('/var/tmp', `pahlevan-demo-${process.pid}-${randomBytes(3).toString('hex')}`);
  // Not under /tmp: containers get their own /tmp, and the service must see its static files.
  mkdirSync(join(work, 'public'), { recursive: true });
  mkdirSync(join(work, 'secrets'), { recursive: true });
  writeFileSync(join(work, 'public/index.html'), '<h1>Pahlevan demo shop</h1>\n');
  writeFileSync(join(work, 'public/style.css'), 'body { font-family: sans-serif; }\n');
  const secret = `db-password-${randomBytes(8).toString('hex')}`;
  writeFileSync(join(work, 'secrets/db-password'), secret + '\n', { mode: 0o600 });
  const profileDir = join(work, 'profile');
  const exfil = await exfilListener();
  const ctx = { exfilPort: exfil.port, secretRelative: '../secrets/db-password' };
  const serviceCommand = (port: number): string[] => ['python3', SERVICE, String(port), join(work, 'public')];
  const progress = (done: number, total: number, extra = ''): void =>
    options.progress?.(`  ${done}/${total} requests${extra}`);

  try {
    // 1. Baseline: the same container with no Pahlevan at all.
    log(`[1/4] Baseline: the sample service in a ${options.runtime} container without Pahlevan`);
    const basePort = await freePort();
    const baseContainer = await startContainer({
      runtime: options.runtime,
      command: serviceCommand(basePort),
    });
    let baseline: { traffic: TrafficResult; startupMs: number; attacks: AttackOutcome[] };
    try {
      const startupMs = await waitForService(basePort, STARTUP_TIMEOUT_MS);
      const traffic = await normalTraffic(basePort, options.rounds, progress);
      const attacks = (await runAttacks(basePort, ctx)).map((a) => a.outcome);
      baseline = { traffic, startupMs, attacks };
      await quitService(basePort);
      await Promise.race([baseContainer.exited, new Promise((r) => setTimeout(r, 5000))]);
    } finally {
      await baseContainer.cleanup();
    }
    const exfilBaseline = exfil.received();
    log(
      `      ${baseline.traffic.succeeded}/${baseline.traffic.requests} normal requests ok; attacks that worked: ` +
        `${baseline.attacks.filter((a) => a.succeeded).length}/${baseline.attacks.length}`,
    );

    // 2. Learning: the learner watches the container from its first instruction while normal traffic runs.
    log(`[2/4] Learning: the sample service under the eBPF learner while normal traffic runs`);
    const learnPort = await freePort();
    const learnStarted = Date.now();
    const learner = await Learner.start({ pinDir: `/sys/fs/bpf/pahlevan-demo-${process.pid}` });
    const firstSeen: Record<string, number> = { syscall: 0, exec: 0, file: 0, net: 0 };
    learner.on('event', (ev) => {
      firstSeen[ev.kind] = (firstSeen[ev.kind] ?? 0) + 1;
      const kind = ev.kind === 'net' ? 'port' : ev.kind;
      options.metrics?.firstSeenEvents.inc({ kind });
      options.metrics?.learned(kind);
    });
    let record: RecordResult;
    let learnTraffic: TrafficResult;
    try {
      const recording = await startRecording({
        runtime: options.runtime,
        command: serviceCommand(learnPort),
        learner,
        stdio: 'pipe',
      });
      recording.container.stdout?.resume();
      recording.container.stderr?.resume();
      options.metrics?.containersWatched.set({ mode: 'learning' }, 1);
      try {
        await waitForService(learnPort, STARTUP_TIMEOUT_MS, () => !exitedEarly(recording.container));
        learnTraffic = await normalTraffic(learnPort, options.rounds, (d, t) =>
          progress(
            d,
            t,
            `; learned so far: ${firstSeen.syscall} syscalls, ${firstSeen.exec} execs, ${firstSeen.file} files, ${firstSeen.net} ports`,
          ),
        );
        await quitService(learnPort);
        await Promise.race([recording.container.exited, new Promise((r) => setTimeout(r, 5000))]);
      } finally {
        // stop() is a no-op for an exited container and returns what was learned.
        record = await recording.stop();
        options.metrics?.containersWatched.set({ mode: 'learning' }, 0);
      }
    } finally {
      await learner.stop();
      Learner.removePins(learner.pinDir);
    }
    writeRecording(profileDir, record);
    const learnMs = Date.now() - learnStarted;
    const behaviour = parseBehaviour(record.behaviour);
    const surface = surfaceOfRecordDir(profileDir, { container: 'shop' });
    const learnedSyscalls = record.syscalls.length;
    log(
      `      ${learnTraffic.succeeded}/${learnTraffic.requests} requests in ${(learnMs / 1000).toFixed(1)} s → ` +
        `${learnedSyscalls} syscalls, ${behaviour.execs.length} executables, ${record.behaviour.files.length} files, ` +
        `${record.behaviour.network.length} network uses; profile allows ${surface.syscallsAllowed} syscalls → ${profileDir}`,
    );

    // 3. Enforcement: normal traffic replayed, then the attack script.
    log(`[3/4] Enforcing: pahlevan run --mode Enforce, normal traffic replayed`);
    const enforcePort = await freePort();
    const enforceStarted = Date.now();
    const enforcer = new PahlevanProcess(
      [
        'run',
        '--profile',
        profileDir,
        '--runtime',
        options.runtime,
        '--mode',
        'Enforce',
        '--',
        ...serviceCommand(enforcePort),
      ],
      join(work, 'run.log'),
    );
    const violations: SeenViolation[] = [];
    enforcer.listen((line) => {
      const v = parseViolationLine(line);
      if (v) violations.push(v);
    });
    let enforced: {
      traffic: TrafficResult;
      startupMs: number;
      attacks: { outcome: AttackOutcome; counted: Record<string, number> }[];
    };
    try {
      await waitForService(enforcePort, STARTUP_TIMEOUT_MS, () => enforcer.alive());
      const startupMs = Date.now() - enforceStarted;
      const traffic = await normalTraffic(enforcePort, options.rounds, progress);
      log(`      ${traffic.succeeded}/${traffic.requests} normal requests ok`);
      log(`[4/4] Attack script against the enforced service`);
      const attacks = await runAttacks(enforcePort, ctx, async () => {
        const before = violations.length;
        // Violations arrive asynchronously from the kernel; give them a moment to be reported.
        await new Promise((r) => setTimeout(r, 300));
        const counted: Record<string, number> = {};
        for (const v of violations.splice(before)) counted[v.layer] = (counted[v.layer] ?? 0) + 1;
        violations.push(...[]);
        return counted;
      });
      for (const a of attacks)
        log(
          `      ${a.outcome.title}: ${a.outcome.succeeded ? 'NOT blocked' : `blocked (${a.outcome.detail})`}`,
        );
      enforced = { traffic, startupMs, attacks };
      await quitService(enforcePort);
    } catch (err) {
      enforcer.interrupt();
      await enforcer.exited;
      throw new Error(`enforcement run failed: ${(err as Error).message}\n${enforcer.tail()}`);
    }
    await Promise.race([enforcer.exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (enforcer.alive()) enforcer.interrupt();
    await enforcer.exited;

    const byLayer: Record<string, number> = {};
    for (const a of enforced.attacks)
      for (const [layer, n] of Object.entries(a.counted)) byLayer[layer] = (byLayer[layer] ?? 0) + n;
    const total = Object.values(byLayer).reduce((s, n) => s + n, 0);
    void exfilBaseline;
    return {
      runtime: options.runtime,
      kernel: release(),
      learning: {
        durationMs: learnMs,
        requests: learnTraffic.requests,
        syscalls: learnedSyscalls,
        execs: behaviour.execs.length,
        files: record.behaviour.files.length,
        ports: record.behaviour.network.length,
      },
      surface,
      layers: { active: [], missing: [] },
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
      })),
      violations: { total, byLayer },
      startup: { baselineMs: baseline.startupMs, enforcedMs: enforced.startupMs },
    };
  } finally {
    await exfil.close();
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
        const result = await runDemo({
          runtime: opts.runtime,
          rounds,
          ...(opts.keep ? { keepDir: opts.keep } : {}),
          log: (line) => {
            if (tty) process.stderr.write('\r\x1b[K');
            process.stderr.write(line + '\n');
          },
          ...(tty ? { progress: (line: string) => process.stderr.write('\r\x1b[K' + line) } : {}),
        });
        if (tty) process.stderr.write('\r\x1b[K');
        console.log(
          opts.output === 'json' ? JSON.stringify(result, null, 2) : '\n' + formatDemoReport(result),
        );
      } catch (err) {
        console.error(`pahlevan demo: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    });
}
