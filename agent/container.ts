// Runs a command in a real OCI container with runc or crun: its own cgroup v2 (created here first, so
// the learner can watch it before the container's first instruction), its own mount, PID, IPC and UTS
// namespaces, the host's root filesystem read-only by default, the host network by default or an empty
// network namespace, and optionally a seccomp profile. `pahlevan record` and `pahlevan run` both start
// containers through here, so a profile is recorded and enforced in exactly the same kind of container.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  rmdirSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { OciSeccompProfile } from '../api/seccomp.js';

export type Runtime = 'runc' | 'crun';
export type NetMode = 'host' | 'none';

export interface ContainerOptions {
  runtime: Runtime;
  command: string[];
  /** Root filesystem; default the host's "/" (mounted read-only unless rootfsWritable). */
  rootfs?: string;
  rootfsWritable?: boolean;
  net?: NetMode;
  seccomp?: OciSeccompProfile;
  env?: string[];
  cwd?: string;
  /** Container id (unique per run); default pahlevan-<random>. */
  id?: string;
  /** Extra OCI mounts (e.g. a test's working directory). */
  mounts?: OciMount[];
  /** Called with the container's cgroup once it exists and before the runtime starts. */
  beforeStart?: (cgroup: { path: string; id: bigint }) => Promise<void>;
  /** no_new_privs for the container process; default false, as in Kubernetes (allowPrivilegeEscalation unset). */
  noNewPrivileges?: boolean;
  /** 'pipe' (default): stdout/stderr are streams on the handle; 'inherit': passed through. */
  stdio?: 'pipe' | 'inherit';
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface ContainerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const CGROUP2_MAGIC = 0x63677270;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// Docker's and containerd's default capability set: containers under Pahlevan get what they get in a cluster.
const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Where cgroup v2 is mounted: /sys/fs/cgroup (v2 only) or /sys/fs/cgroup/unified (hybrid). */
export function cgroup2Root(): { root: string; hybrid: boolean } {
  for (const [root, hybrid] of [
    ['/sys/fs/cgroup', false],
    ['/sys/fs/cgroup/unified', true],
  ] as const) {
    try {
      if (statfsSync(root).type === CGROUP2_MAGIC) return { root, hybrid };
    } catch {
      // not mounted there
    }
  }
  throw new Error(
    'kernel feature missing: no cgroup v2 hierarchy mounted (/sys/fs/cgroup or /sys/fs/cgroup/unified)',
  );
}

export function which(
  binary: string,
  pathEnv = process.env.PATH ?? DEFAULT_PATH,
  root = '/',
): string | undefined {
  const candidates = binary.includes('/')
    ? [binary]
    : pathEnv
        .split(':')
        .filter(Boolean)
        .map((d) => join(d, binary));
  for (const c of candidates) {
    const full = join(root, c);
    try {
      if (!statSync(full).isFile()) continue;
      accessSync(full, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

const RUNTIME_PACKAGE: Record<Runtime, string> = { runc: 'runc', crun: 'crun' };

/** Clear errors for what `record` and `run` need before anything starts. */
export function checkPrerequisites(runtime: Runtime, command: string[], rootfs = '/'): void {
  if (process.getuid?.() !== 0)
    throw new Error('must run as root: starting containers and loading BPF programs need root (try sudo)');
  if (!which(runtime))
    throw new Error(
      `container runtime ${runtime} not found: install the Debian package ${RUNTIME_PACKAGE[runtime]}`,
    );
  cgroup2Root();
  if (command.length === 0) throw new Error('no command given: pahlevan record -o DIR -- CMD [ARGS...]');
  if (!existsSync(rootfs)) throw new Error(`root filesystem ${rootfs} does not exist`);
  if (!which(command[0]!, DEFAULT_PATH, rootfs))
    throw new Error(
      `command not found in the container's root filesystem (${rootfs}, PATH=${DEFAULT_PATH}): ${command[0]}`,
    );
}

// Top-level entries of the host's / that get their own mounts instead of the host's.
const OWN_MOUNTS = new Set(['proc', 'sys', 'dev', 'tmp', 'run']);

/** This checkout of Pahlevan (dist/agent/container.js -> the package root). */
const PACKAGE_ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)));

/**
 * Pahlevan's own files (bpf/.output helpers, test helpers, demo assets) at the same path inside a host-root
 * container, when the checkout lives under a directory the container gets fresh (/tmp, /run): otherwise a
 * clone in /tmp would find none of them.
 */
export function packageRootBinds(packageRoot = PACKAGE_ROOT): OciMount[] {
  const top = packageRoot.split('/')[1] ?? '';
  if (!OWN_MOUNTS.has(top)) return [];
  return [{ destination: packageRoot, type: 'bind', source: packageRoot, options: ['rbind', 'ro'] }];
}

/**
 * The host's root filesystem as a container rootfs. runc cannot pivot_root to "/" itself (EBUSY), so the
 * rootfs is an empty directory of the bundle with the same top-level symlinks and every top-level
 * directory of / bind-mounted into it (recursively, read-only unless writable).
 */
export function hostRootBinds(rootfsDir: string, writable: boolean): OciMount[] {
  mkdirSync(rootfsDir, { recursive: true });
  const binds: OciMount[] = [];
  for (const entry of readdirSync('/', { withFileTypes: true })) {
    const target = join(rootfsDir, entry.name);
    if (entry.isSymbolicLink()) {
      if (!existsSync(target)) symlinkSync(readlinkSync(join('/', entry.name)), target);
    } else if (entry.isDirectory()) {
      mkdirSync(target, { recursive: true });
      if (OWN_MOUNTS.has(entry.name) || entry.name === 'lost+found') continue;
      binds.push({
        destination: `/${entry.name}`,
        type: 'bind',
        source: `/${entry.name}`,
        options: ['rbind', writable ? 'rw' : 'ro'],
      });
    }
  }
  return binds;
}

export function ociConfig(
  options: ContainerOptions,
  cgroupsPath: string,
  hostRootfs = '/',
  hostBinds: OciMount[] = [],
): Record<string, unknown> {
  const net = options.net ?? 'host';
  const namespaces: Array<{ type: string }> = [
    { type: 'mount' },
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
  ];
  if (net === 'none') namespaces.push({ type: 'network' });
  const rootfs = options.rootfs ? resolve(options.rootfs) : hostRootfs;
  const mounts: OciMount[] = [
    ...hostBinds,
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    // sysfs can only be mounted fresh in a network namespace of our own; with the host network bind it.
    net === 'none'
      ? { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] }
      : {
          destination: '/sys',
          type: 'bind',
          source: '/sys',
          options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'],
        },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
    ...(options.mounts ?? []),
  ];
  const linux: Record<string, unknown> = {
    namespaces,
    cgroupsPath,
    maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug', '/sys/firmware'],
    readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
  };
  if (options.seccomp) linux.seccomp = options.seccomp;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: options.command,
      env: options.env ?? [`PATH=${DEFAULT_PATH}`, 'HOME=/root', 'LANG=C.UTF-8'],
      cwd: options.cwd ?? '/',
      capabilities: { bounding: DEFAULT_CAPS, effective: DEFAULT_CAPS, permitted: DEFAULT_CAPS },
      // Kubernetes' default (allowPrivilegeEscalation unset): no_new_privs off. The runtime then installs
      // the seccomp filter while still privileged, earlier than with no_new_privs, and more of its own
      // syscalls run under the filter: the recorder learns exactly those.
      noNewPrivileges: options.noNewPrivileges ?? false,
    },
    root: { path: rootfs, readonly: !options.rootfsWritable },
    hostname: options.id ?? 'pahlevan',
    mounts,
    linux,
  };
}

/** A started container. */
export class Container {
  readonly exited: Promise<ContainerExit>;
  private exitInfo: ContainerExit | undefined;

  constructor(
    readonly id: string,
    readonly runtime: Runtime,
    readonly cgroupPath: string,
    readonly cgroupId: bigint,
    private readonly bundle: string,
    readonly process: ChildProcess,
  ) {
    this.exited = new Promise((resolveExit) => {
      process.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolveExit(this.exitInfo);
      });
    });
  }

  get stdout(): Readable | null {
    return this.process.stdout;
  }
  get stderr(): Readable | null {
    return this.process.stderr;
  }

  /** Sends a signal to the container's init process (through the runtime). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exitInfo) return;
    spawnSync(this.runtime, ['kill', this.id, signal], { stdio: 'ignore' });
  }

  /** Stops the container: signal, then SIGKILL after graceMs. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<ContainerExit> {
    this.kill(signal);
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Removes the runtime's state, the bundle and the cgroup (after the container exited). */
  async cleanup(): Promise<void> {
    if (!this.exitInfo) await this.stop('SIGKILL', 1000);
    spawnSync(this.runtime, ['delete', '--force', this.id], { stdio: 'ignore' });
    rmSync(this.bundle, { recursive: true, force: true });
    for (let i = 0; i < 20; i++) {
      try {
        if (existsSync(this.cgroupPath)) rmdirSync(this.cgroupPath);
        break;
      } catch {
        // still populated for a moment after the last process exits
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

/** Starts a container; the promise resolves once the runtime process runs (not when the command ends). */
export async function startContainer(options: ContainerOptions): Promise<Container> {
  const id = options.id ?? `pahlevan-${randomBytes(6).toString('hex')}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$/.test(id))
    throw new Error(`invalid container id ${JSON.stringify(id)}`);
  const { root, hybrid } = cgroup2Root();
  const cgroupRel = `pahlevan/${id}`;
  const cgroupPath = join(root, cgroupRel);
  mkdirSync(cgroupPath, { recursive: true });
  const cgroupId = statSync(cgroupPath, { bigint: true }).ino;
  const bundle = join('/tmp', `pahlevan-bundle-${id}`);
  mkdirSync(bundle, { recursive: true });
  try {
    const hostRootfs = join(bundle, 'rootfs');
    const binds = options.rootfs ? [] : hostRootBinds(hostRootfs, options.rootfsWritable ?? false);
    // Mounts listed after the container's own /tmp and /run, so a checkout under them shows through.
    const withPackage = options.rootfs
      ? options
      : { ...options, mounts: [...packageRootBinds(), ...(options.mounts ?? [])] };
    const config = ociConfig(withPackage, `/${cgroupRel}`, hostRootfs, binds);
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config, null, 2));
    await options.beforeStart?.({ path: cgroupPath, id: cgroupId });
  } catch (err) {
    rmSync(bundle, { recursive: true, force: true });
    rmdirSync(cgroupPath);
    throw err;
  }
  let argv: string[];
  if (options.runtime === 'crun' && hybrid) {
    // crun 1.8.1 refuses hybrid cgroup mode. Show crun a cgroup2-only /sys/fs/cgroup in a private mount
    // namespace, join the container's v2 cgroup ourselves and let crun leave cgroups alone (PLATFORM.md).
    // Mount first, join last (with the `echo` builtin): no helper binary may run inside the container's
    // cgroup, or the learner records it and the enforcer denies it.
    const script = `mount -t cgroup2 none /sys/fs/cgroup && echo $$ > /sys/fs/cgroup/${cgroupRel}/cgroup.procs && exec crun --cgroup-manager=disabled run --bundle ${bundle} ${id}`;
    argv = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script];
  } else {
    argv = [options.runtime, 'run', '--bundle', bundle, id];
  }
  const stdio = options.stdio === 'inherit' ? 'inherit' : 'pipe';
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', stdio, stdio] });
  await new Promise<void>((resolveSpawn, reject) => {
    child.once('spawn', () => resolveSpawn());
    child.once('error', reject);
  });
  return new Container(id, options.runtime, cgroupPath, cgroupId, bundle, child);
}

export interface ContainerResult extends ContainerExit {
  stdout: string;
  stderr: string;
  cgroupId: bigint;
}

/** Runs a container to completion and collects its output. */
export async function runContainer(options: ContainerOptions): Promise<ContainerResult> {
  const c = await startContainer({ ...options, stdio: 'pipe' });
  let stdout = '',
    stderr = '';
  c.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  c.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const exit = await c.exited;
    return { ...exit, stdout, stderr, cgroupId: c.cgroupId };
  } finally {
    await c.cleanup();
  }
}
