// `pahlevan run --mode Monitor|Enforce|Alert --layers ...`: runs a command in the same kind of container as
// `record`, with every available enforcement layer programmed from what `record` wrote (seccomp.json,
// behaviour.json) before the container's first instruction; prints violations as they happen and a
// summary at exit. `--net veth` gives the container its own network namespace joined to the host by a
// veth pair (so the TC ingress filter has an interface of its own); a server in it is reachable from
// the host at the printed address.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LAYERS, MODES, type Layer, type Mode } from '../api/policy.js';
import type { OciSeccompProfile } from '../api/seccomp.js';
import {
  cgroup2Root,
  startContainer,
  type Container,
  type ContainerOptions,
  type Runtime,
} from '../agent/container.js';
import type { Violation } from '../agent/enforce-maps.js';
import {
  Enforcer,
  containerPolicy,
  type ContainerCounters,
  type LayerModes,
  type LearnedBehaviour,
  type PolicyRules,
} from '../agent/enforcer.js';

export type EnforceNet = 'host' | 'none' | 'veth';

export interface EnforcedRunOptions {
  command: string[];
  profileDir: string;
  runtime: Runtime;
  rootfs?: string;
  net: EnforceNet;
  mode: Mode;
  layers: Layer[];
  rules?: PolicyRules;
  /** An already started enforcer (tests, the agent); otherwise one is started and stopped here. */
  enforcer?: Enforcer;
  stdio?: 'pipe' | 'inherit';
  /** Extra OCI mounts. */
  mounts?: ContainerOptions['mounts'];
  env?: string[];
}

export interface VethInfo {
  hostIf: string;
  hostAddress: string;
  containerAddress: string;
  tc: string;
}

export interface EnforcedContainer {
  container: Container;
  enforcer: Enforcer;
  modes: LayerModes;
  /** The container's init, or undefined when the command finished before it could be seen. */
  pid: number | undefined;
  veth?: VethInfo;
  violations: Array<Violation & { container: string }>;
  setMode(mode: Mode, layers?: Layer[]): Promise<void>;
  counters(): Promise<ContainerCounters>;
  /** Stops (if still running), removes the container, the veth and the map entries. */
  close(): Promise<void>;
}

export function parseMode(text: string): Mode {
  const m = MODES.find((x) => x.toLowerCase() === text.toLowerCase());
  if (!m) throw new Error(`--mode must be one of ${MODES.join(', ')}, got ${JSON.stringify(text)}`);
  return m;
}

export function parseLayers(text: string): Layer[] {
  if (text === 'all') return [...LAYERS];
  if (text === 'none') return [];
  const layers = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const l of layers)
    if (!(LAYERS as readonly string[]).includes(l))
      throw new Error(
        `--layers: unknown layer ${JSON.stringify(l)} (known: ${LAYERS.join(', ')}, all, none)`,
      );
  return [...new Set(layers)] as Layer[];
}

export function layerModes(mode: Mode, layers: Layer[]): LayerModes {
  return Object.fromEntries(LAYERS.map((l) => [l, layers.includes(l) ? mode : 'Off'])) as LayerModes;
}

export function loadBehaviour(dir: string): LearnedBehaviour {
  const file = join(dir, 'behaviour.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read ${file} (written by pahlevan record): ${(err as Error).message}`);
  }
  const b = raw as Partial<LearnedBehaviour>;
  if (!Array.isArray(b.execs) || !Array.isArray(b.files) || !Array.isArray(b.network))
    throw new Error(`${file} has no execs/files/network lists: was it written by pahlevan record?`);
  return { execs: b.execs, files: b.files, network: b.network };
}

/** The seccomp filter for a syscalls mode: the profile (Enforce/Alert), logging only (Monitor), none (Off). */
export function seccompFor(profile: OciSeccompProfile, mode: Mode | 'Off'): OciSeccompProfile | undefined {
  if (mode === 'Off') return undefined;
  if (mode === 'Monitor') return { ...profile, defaultAction: 'SCMP_ACT_LOG' };
  return profile;
}

function sh(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}

/** The container's init process: the first pid of its cgroup whose network/mount namespace is its own. */
async function containerPid(
  cgroupPath: string,
  ownNetns: boolean,
  hasExited: () => boolean,
  timeoutMs = 5000,
): Promise<number | undefined> {
  const ours = (ns: string): string => readlinkSync(`/proc/self/ns/${ns}`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // A short command can finish between two looks: its rules were in place before it started.
    if (hasExited()) return undefined;
    let pids: number[];
    try {
      pids = readFileSync(join(cgroupPath, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      throw new Error(`the container exited before its process could be found (${cgroupPath} is gone)`);
    }
    for (const pid of pids) {
      try {
        const mntOwn = readlinkSync(`/proc/${pid}/ns/mnt`) !== ours('mnt');
        const netOk = !ownNetns || readlinkSync(`/proc/${pid}/ns/net`) !== ours('net');
        // After pivot_root the process's root is the container's, not ours.
        const rooted = statSync(`/proc/${pid}/root/`).ino !== statSync('/').ino;
        // pid 1 of the container's pid namespace (runtimes fork intermediate processes that exit).
        const nspid = /^NSpid:\s+(.*)$/m
          .exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
          ?.trim()
          .split(/\s+/);
        const init = nspid !== undefined && nspid.length > 1 && nspid[nspid.length - 1] === '1';
        if (mntOwn && netOk && rooted && init) return pid;
      } catch {
        // gone or not ready
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`the container's process did not appear in ${cgroupPath} within ${timeoutMs} ms`);
}

/** A veth pair between the host and the container's own network namespace, on a /30 of 10.213.0.0/16. */
function setupVeth(pid: number, tag: string): Omit<VethInfo, 'tc'> {
  const n = parseInt(tag.slice(0, 4), 16) % 16384;
  const base = `10.213.${Math.floor(n / 64)}.${(n % 64) * 4}`;
  const octets = base.split('.').map(Number);
  const host = `${octets[0]}.${octets[1]}.${octets[2]}.${octets[3]! + 1}`;
  const cont = `${octets[0]}.${octets[1]}.${octets[2]}.${octets[3]! + 2}`;
  const hostIf = `pvh${tag}`;
  const peer = `pvc${tag}`;
  sh(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', peer]);
  try {
    sh(['ip', 'link', 'set', peer, 'netns', String(pid)]);
    sh(['ip', 'addr', 'add', `${host}/30`, 'dev', hostIf]);
    sh(['ip', 'link', 'set', hostIf, 'up']);
    const ns = ['nsenter', '-t', String(pid), '-n'];
    sh([...ns, 'ip', 'link', 'set', peer, 'name', 'eth0']);
    sh([...ns, 'ip', 'addr', 'add', `${cont}/30`, 'dev', 'eth0']);
    sh([...ns, 'ip', 'link', 'set', 'eth0', 'up']);
    sh([...ns, 'ip', 'link', 'set', 'lo', 'up']);
    sh([...ns, 'ip', 'route', 'add', 'default', 'via', host]);
  } catch (err) {
    spawnSync('ip', ['link', 'del', hostIf]);
    throw err;
  }
  return { hostIf, hostAddress: host, containerAddress: cont };
}

export function formatViolation(v: Violation & { container: string }): string {
  const verdict = v.mode === 'Alert' ? 'ALERT denied' : v.denied ? 'denied' : 'allowed (Monitor)';
  return `violation ${v.layer.padEnd(8)} ${verdict.padEnd(17)} ${v.what}  [${v.container} pid ${v.pid} ${v.comm}]`;
}

/** Starts an enforced container. The caller waits on `container.exited` and calls `close()`. */
export async function startEnforced(
  options: EnforcedRunOptions,
  onViolation?: (v: Violation & { container: string }) => void,
): Promise<EnforcedContainer> {
  const behaviour = loadBehaviour(options.profileDir);
  const profile = JSON.parse(
    readFileSync(join(options.profileDir, 'seccomp.json'), 'utf8'),
  ) as OciSeccompProfile;
  const modes = layerModes(options.mode, options.layers);
  const policy = containerPolicy(behaviour, modes, options.rules);
  const { root } = cgroup2Root();
  const enforcer = options.enforcer ?? (await Enforcer.start({ cgroupAttachDir: join(root, 'pahlevan') }));
  const ownsEnforcer = !options.enforcer;
  const violations: Array<Violation & { container: string }> = [];
  let cgroupId = 0n;
  const listener = (v: Violation & { container: string }): void => {
    if (v.cgid !== cgroupId) return;
    violations.push(v);
    onViolation?.(v);
  };
  enforcer.on('violation', listener);
  const tag = randomBytes(4).toString('hex');
  const id = `pahlevan-enf-${tag}`;
  let container: Container | undefined;
  let veth: VethInfo | undefined;
  try {
    const seccomp = seccompFor(profile, modes.syscalls);
    container = await startContainer({
      runtime: options.runtime,
      command: options.command,
      id,
      net: options.net === 'host' ? 'host' : 'none',
      stdio: options.stdio ?? 'pipe',
      ...(seccomp ? { seccomp } : {}),
      ...(options.rootfs ? { rootfs: options.rootfs } : {}),
      ...(options.mounts ? { mounts: options.mounts } : {}),
      ...(options.env ? { env: options.env } : {}),
      beforeStart: async (cg) => {
        cgroupId = cg.id;
        const binds = (options.mounts ?? [])
          .filter((m) => m.type === 'bind')
          .map((m) => ({ destination: m.destination, source: m.source }));
        await enforcer.enforce({ cgroupId: cg.id, name: id, root: options.rootfs ?? '/', binds }, policy);
      },
    });
    let exited = false;
    void container.exited.then(() => (exited = true));
    // The container's output stays unread (paused) until the caller consumes it: nothing is lost.
    const pid = await containerPid(container.cgroupPath, options.net !== 'host', () => exited);
    if (pid !== undefined) {
      await enforcer.watchContainerMounts(cgroupId, pid).catch(() => 0);
      await enforcer.resolveInContainer(cgroupId, pid);
    }
    if (options.net === 'veth') {
      if (pid === undefined) throw new Error('the container exited before its network could be set up');
      const v = setupVeth(pid, tag);
      const tc =
        modes.network !== 'Off' ? await enforcer.attachInterface(cgroupId, v.hostIf, 'egress') : 'off';
      veth = { ...v, tc };
    }
    const handle: EnforcedContainer = {
      container,
      enforcer,
      modes,
      pid,
      ...(veth ? { veth } : {}),
      violations,
      setMode: async (mode, layers = options.layers) => {
        const next: Partial<LayerModes> = {};
        for (const l of layers) next[l] = l === 'syscalls' ? modes.syscalls : mode;
        Object.assign(modes, next);
        await enforcer.setModes(cgroupId, next);
      },
      counters: () => enforcer.counters(cgroupId),
      close: async () => {
        enforcer.off('violation', listener);
        await container!.cleanup();
        if (veth) spawnSync('ip', ['link', 'del', veth.hostIf]);
        await enforcer.forget(cgroupId).catch(() => undefined);
        if (ownsEnforcer) await enforcer.stop();
      },
    };
    return handle;
  } catch (err) {
    enforcer.off('violation', listener);
    if (container) await container.cleanup();
    if (veth) spawnSync('ip', ['link', 'del', veth.hostIf]);
    if (cgroupId) await enforcer.forget(cgroupId).catch(() => undefined);
    if (ownsEnforcer) await enforcer.stop();
    throw err;
  }
}

export function formatSummary(c: ContainerCounters): string {
  const lines = ['summary of violations:'];
  if (c.network)
    lines.push(
      `  network   connect ${c.network.connect}  sendto ${c.network.sendmsg}  bind ${c.network.bind}  ingress ${c.network.ingress}`,
    );
  lines.push(`  files     ${c.files}`, `  execs     ${c.execs}`);
  if (c.syscalls) {
    const by = Object.entries(c.syscalls.bySyscall)
      .map(([name, n]) => `${name} ${n}`)
      .join(', ');
    lines.push(`  syscalls  ${c.syscalls.total}${by ? ` (${by})` : ''}`);
  }
  if (c.eventsLost > 0n) lines.push(`  (reports lost: ${c.eventsLost}; the counts above are exact)`);
  return lines.join('\n');
}

export interface EnforceFlags {
  profile: string;
  runtime: string;
  rootfs?: string;
  net: string;
  mode?: string;
  layers?: string;
}

/** The CLI path of `pahlevan run` with enforcement. */
export async function runEnforcedCli(command: string[], flags: EnforceFlags): Promise<number> {
  const runtime = flags.runtime === 'crun' ? 'crun' : flags.runtime === 'runc' ? 'runc' : undefined;
  if (!runtime) throw new Error(`--runtime must be runc or crun, got ${JSON.stringify(flags.runtime)}`);
  if (!['host', 'none', 'veth'].includes(flags.net))
    throw new Error(`--net must be host, none or veth, got ${JSON.stringify(flags.net)}`);
  if (!existsSync(join(flags.profile, 'seccomp.json')))
    throw new Error(
      `${flags.profile}/seccomp.json not found: record first with pahlevan record -o ${flags.profile}`,
    );
  const { root } = cgroup2Root();
  const enforcer = await Enforcer.start({ cgroupAttachDir: join(root, 'pahlevan') });
  for (const l of enforcer.layers())
    process.stderr.write(
      `pahlevan: layer ${l.layer.padEnd(8)} ${l.active ? 'active ' : 'MISSING'} ${l.mechanism}${l.reason ? ` (${l.reason})` : ''}\n`,
    );
  // The helper process keeps the event loop alive: stop it on every path, or a failed start hangs the CLI.
  const handle = await startEnforced(
    {
      command,
      profileDir: flags.profile,
      runtime,
      net: flags.net as EnforceNet,
      mode: parseMode(flags.mode ?? 'Enforce'),
      layers: parseLayers(flags.layers ?? 'all'),
      enforcer,
      stdio: 'inherit',
      ...(flags.rootfs ? { rootfs: flags.rootfs } : {}),
    },
    (v) => process.stderr.write(`pahlevan: ${formatViolation(v)}\n`),
  ).catch(async (err: unknown) => {
    await enforcer.stop();
    throw err;
  });
  if (handle.veth)
    process.stderr.write(
      `pahlevan: container address ${handle.veth.containerAddress} (host side ${handle.veth.hostIf} ${handle.veth.hostAddress}, tc ${handle.veth.tc})\n`,
    );
  const forward = (sig: NodeJS.Signals): void => handle.container.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const exit = await handle.container.exited;
  process.off('SIGINT', forward);
  process.off('SIGTERM', forward);
  await new Promise((r) => setTimeout(r, 100)); // last ring-buffer records
  process.stderr.write(
    `pahlevan: ${formatSummary(await handle.counters()).replace(/\n/g, '\npahlevan: ')}\n`,
  );
  await handle.close();
  await enforcer.stop();
  return exit.code ?? 128 + 15;
}

/** Lists the interfaces a previous run may have left (for cleanup scripts). */
export function leftoverVeths(): string[] {
  return readdirSync('/sys/class/net').filter((n) => /^pvh[0-9a-f]{8}$/.test(n));
}
