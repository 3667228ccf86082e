// Records a command in a container: the learner watches the container's cgroup before the runtime
// starts; the container runs under an allow-all seccomp filter, so the learner (which counts only tasks
// under a filter) learns what runs under the filter the runtime installs and nothing of its setup.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OciSeccompProfile } from '../api/seccomp.js';
import {
  startContainer,
  which,
  type Container,
  type ContainerExit,
  type ContainerOptions,
  type Runtime,
} from './container.js';

/** The runtimes installed on this machine (the ones a portable profile is calibrated for). */
export function installedRuntimes(): Runtime[] {
  return (['runc', 'crun'] as const).filter((r) => which(r) !== undefined);
}
import { Learner, type Observation } from './learner.js';
import { buildSeccompProfile } from './profile.js';

export interface Behaviour {
  runtime: string;
  command: string[];
  syscalls: string[];
  execs: Array<{ path: string; count: number }>;
  /** Paths as the program passed them; `relative` ones are relative to its cwd or a directory fd. */
  files: Array<{ path: string; read: boolean; write: boolean; count: number; relative?: true }>;
  network: Array<{
    op: string;
    protocol: string;
    family: string;
    address: string;
    port: number;
    count: number;
  }>;
}

export interface RecordResult {
  exit: ContainerExit;
  syscalls: string[];
  profile: OciSeccompProfile;
  behaviour: Behaviour;
  cgroupId: bigint;
}

export interface RecordOptions extends Omit<ContainerOptions, 'seccomp' | 'beforeStart'> {
  /** A running learner (the agent's); without one, a learner is started for this recording. */
  learner?: Learner;
  pinDir?: string;
  includeArm64?: boolean;
  /**
   * Learn every task of the container's cgroup, also before the runtime installs the filter (the
   * runtime's own setup: mount, pivot_root, ...). Only for showing what the seccomp gate keeps out.
   */
  learnRuntimeSetup?: boolean;
  /**
   * Make the profile work under these runtimes too (default: runc and crun, those installed). Each other
   * runtime is calibrated: a trivial static command is recorded under it and what runs under its filter
   * (its own post-filter syscalls: crun's setresuid/setresgid where runc uses setuid/setgid, ...) is added.
   */
  portableTo?: Runtime[];
}

/** The post-filter syscalls of a runtime: what runs under its filter when the command does (almost) nothing. */
export async function calibrateRuntime(
  learner: Learner,
  runtime: Runtime,
  options: { noNewPrivileges?: boolean } = {},
): Promise<string[]> {
  const rec = await startRecording({
    learner,
    runtime,
    command: ['busybox', 'true'],
    portableTo: [],
    ...options,
  });
  rec.container.stdout?.resume();
  rec.container.stderr?.resume();
  const result = await rec.done;
  if (result.exit.code !== 0)
    throw new Error(`calibrating ${runtime} failed (exit ${result.exit.code ?? result.exit.signal})`);
  return result.syscalls;
}

/** The filter the container runs under while it is recorded: it allows everything. */
export const RECORDING_FILTER: OciSeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] };

export function behaviourOf(
  runtime: string,
  command: string[],
  syscalls: string[],
  observations: Observation[],
): Behaviour {
  const b: Behaviour = {
    runtime,
    command,
    syscalls: [...syscalls].sort(),
    execs: [],
    files: [],
    network: [],
  };
  for (const o of observations) {
    if (o.kind === 'exec') b.execs.push({ path: o.path, count: o.count });
    else if (o.kind === 'file')
      b.files.push({
        path: o.path,
        read: o.read,
        write: o.write,
        count: o.count,
        ...(o.path.startsWith('/') ? {} : { relative: true as const }),
      });
    else if (o.kind === 'net')
      b.network.push({
        op: o.op,
        protocol: o.protocol,
        family: o.family,
        address: o.address,
        port: o.port,
        count: o.count,
      });
  }
  b.execs.sort((x, y) => x.path.localeCompare(y.path));
  b.files.sort((x, y) => x.path.localeCompare(y.path));
  b.network.sort((x, y) => `${x.op}${x.port}${x.address}`.localeCompare(`${y.op}${y.port}${y.address}`));
  return b;
}

export class Recording {
  readonly done: Promise<RecordResult>;

  constructor(
    readonly container: Container,
    private readonly learner: Learner,
    private readonly ownsLearner: boolean,
    options: RecordOptions,
  ) {
    this.done = (async () => {
      const exit = await container.exited;
      try {
        const syscalls = await learner.syscallNames(container.cgroupId);
        const observations = await learner.observations(container.cgroupId);
        const others = (options.portableTo ?? installedRuntimes()).filter((r) => r !== options.runtime);
        const runtimeSyscalls: string[] = [];
        for (const r of others)
          runtimeSyscalls.push(
            ...(await calibrateRuntime(learner, r, { noNewPrivileges: options.noNewPrivileges ?? false })),
          );
        const profile = buildSeccompProfile(syscalls, {
          arch: learner.arch,
          runtime: options.runtime,
          runtimes: others,
          runtimeSyscalls,
          includeArm64: options.includeArm64 ?? false,
        });
        const behaviour = behaviourOf(options.runtime, options.command, syscalls, observations);
        return { exit, syscalls, profile, behaviour, cgroupId: container.cgroupId };
      } finally {
        await learner.forget(container.cgroupId).catch(() => undefined);
        await container.cleanup();
        if (ownsLearner) await learner.stop();
      }
    })();
  }

  /** Stops the container (signal, then SIGKILL after graceMs) and returns what was learned. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<RecordResult> {
    await this.container.stop(signal, graceMs);
    return this.done;
  }
}

export async function startRecording(options: RecordOptions): Promise<Recording> {
  const learner = options.learner ?? (await Learner.start(options.pinDir ? { pinDir: options.pinDir } : {}));
  try {
    const container = await startContainer({
      ...options,
      seccomp: RECORDING_FILTER,
      beforeStart: ({ id }) => learner.watch(id, { requireSeccomp: !options.learnRuntimeSetup }),
    });
    return new Recording(container, learner, !options.learner, options);
  } catch (err) {
    if (!options.learner) await learner.stop();
    throw err;
  }
}

export function writeRecording(dir: string, result: RecordResult): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'seccomp.json'), `${JSON.stringify(result.profile, null, 2)}\n`);
  writeFileSync(join(dir, 'behaviour.json'), `${JSON.stringify(result.behaviour, null, 2)}\n`);
}

export function summary(result: RecordResult): string {
  const b = result.behaviour;
  const ports = [...new Set(b.network.map((n) => `${n.op} ${n.protocol}/${n.port}`))];
  return [
    `syscalls: ${result.profile.syscalls[0]?.names.length ?? 0} allowed (${b.syscalls.length} learned)`,
    `execs:    ${b.execs.map((e) => e.path).join(', ') || '-'}`,
    `files:    ${b.files.length} (${b.files.filter((f) => f.write).length} written)`,
    `network:  ${ports.join(', ') || '-'}`,
  ].join('\n');
}
