// The agent's enforcing half. At start it probes every layer by loading it (never by reading feature
// lists) and reports which are active and why others are missing; then, per container, it fills the
// maps from what was learned (behaviour.json) plus a policy's rules, switches modes live by rewriting a
// map value (no reload, no restart) and turns kernel reports into violations.
//
// Layers and mechanisms:
// - syscalls: the seccomp profile blocks (applied by the runtime); bpf/seccomp_watch.bpf.c counts the
//   denials exactly per container and syscall.
// - network: bpf/netpolicy.bpf.c; cgroup hooks attached once to the parent cgroup of the containers,
//   keyed by cgroup id; the TC classifier on a container's interface for new inbound flows.
// - files, execs: bpf/lsm.bpf.c where the kernel runs BPF-LSM, else agent/native/fanotify.c.
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Layer, Mode } from '../api/policy.js';
import { BpfdClient, bpfObjectPath } from './bpfd-client.js';
import {
  KIND,
  LSM_OBJ,
  NP_OBJ,
  SW_OBJ,
  decodeLsmCounters,
  decodeLsmEvent,
  decodeNetCounters,
  decodeNetEvent,
  decodeSwCountKey,
  decodeSwEvent,
  decodeSwTotals,
  fanAllowWords,
  kernelDev,
  lsmConfigValue,
  npConfigValue,
  npInterfaceWrite,
  planLsm,
  planNetwork,
  planSeccompWatch,
  u32Value,
  u64Key,
  MODE_VALUE,
  type InodeAllow,
  type MapWrite,
  type NetCounters,
  type PortRuleSpec,
  type Violation,
} from './enforce-maps.js';
import { generalisePaths, entriesFromGlobs, type AllowEntry, type LearnedPath } from './paths.js';
import { syscallName } from './syscall-table.js';

export type LayerModes = Record<Layer, Mode | 'Off'>;

export interface LayerState {
  layer: Layer;
  active: boolean;
  mechanism: string;
  /** Why the layer (or a part of it) is missing. */
  reason?: string;
}

/** What one container may do, in paths and ports (before resolution to inodes). */
export interface ContainerPolicy {
  modes: LayerModes;
  network: { egress: PortRuleSpec[]; ingress: PortRuleSpec[]; allowDNS: boolean; allowLoopback: boolean };
  files: AllowEntry[];
  execs: AllowEntry[];
}

/** The part of `behaviour.json` (agent/recorder.ts) the enforcer reads. */
export interface LearnedBehaviour {
  execs: Array<{ path: string }>;
  files: Array<{ path: string; read?: boolean; write?: boolean }>;
  network: Array<{ op: string; protocol: string; port: number }>;
}

export interface PolicyRules {
  files?: { allow?: string[] };
  execs?: { allow?: string[] };
  network?: {
    egress?: PortRuleSpec[];
    ingress?: PortRuleSpec[];
    allowDNS?: boolean;
    allowLoopback?: boolean;
  };
}

const PROTOCOLS: Record<string, 'TCP' | 'UDP'> = { tcp: 'TCP', udp: 'UDP' };

function uniqueRules(rules: PortRuleSpec[]): PortRuleSpec[] {
  const seen = new Map<string, PortRuleSpec>();
  for (const r of rules) seen.set(`${r.protocol}/${r.port}/${r.endPort ?? ''}/${r.cidr ?? ''}`, r);
  return [...seen.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
}

/**
 * Learned behaviour plus a policy's explicit rules -> what the container may do. Egress ports come from
 * learned connects/sends, listening ports from learned binds/listens; file and exec paths are generalised
 * (agent/paths.ts). Pure.
 */
export function containerPolicy(
  behaviour: LearnedBehaviour,
  modes: LayerModes,
  rules: PolicyRules = {},
  options: { fanOutThreshold?: number } = {},
): ContainerPolicy {
  const egress: PortRuleSpec[] = [];
  const ingress: PortRuleSpec[] = [];
  for (const n of behaviour.network) {
    const protocol = PROTOCOLS[n.protocol.toLowerCase()];
    if (!protocol || !Number.isInteger(n.port) || n.port <= 0 || n.port > 65535) continue;
    if (n.op === 'connect' || n.op === 'sendto') egress.push({ protocol, port: n.port });
    else if (n.op === 'bind' || n.op === 'listen') ingress.push({ protocol, port: n.port });
  }
  const learnedFiles: LearnedPath[] = behaviour.files.map((f) => ({ path: f.path, write: f.write ?? false }));
  const gen = { fanOutThreshold: options.fanOutThreshold };
  return {
    modes,
    network: {
      egress: uniqueRules([...egress, ...(rules.network?.egress ?? [])]),
      ingress: uniqueRules([...ingress, ...(rules.network?.ingress ?? [])]),
      allowDNS: rules.network?.allowDNS ?? true,
      allowLoopback: rules.network?.allowLoopback ?? true,
    },
    files: mergeEntries(generalisePaths(learnedFiles, gen), entriesFromGlobs(rules.files?.allow ?? [])),
    execs: mergeEntries(
      generalisePaths(
        behaviour.execs.map((e) => e.path),
        gen,
      ),
      entriesFromGlobs(rules.execs?.allow ?? []),
    ),
  };
}

function mergeEntries(a: AllowEntry[], b: AllowEntry[]): AllowEntry[] {
  const byKey = new Map<string, AllowEntry>();
  for (const e of [...a, ...b]) byKey.set(`${e.path}\0${e.subtree}`, e);
  return [...byKey.values()];
}

/** The ELF interpreter (PT_INTERP) of a binary, or undefined (static binaries, scripts, unreadable). */
export function elfInterpreter(file: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2)
      return undefined;
    const phoff = Number(head.readBigUInt64LE(0x20));
    const phentsize = head.readUInt16LE(0x36);
    const phnum = head.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const p = ph.subarray(i * phentsize);
      if (p.readUInt32LE(0) !== 3) continue;
      const off = Number(p.readBigUInt64LE(8));
      const size = Number(p.readBigUInt64LE(32));
      const name = Buffer.alloc(Math.min(size, 4096));
      readSync(fd, name, 0, name.length, off);
      return name.toString('utf8').replace(/\0.*$/s, '');
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Resolves allow entries to (device, inode) keys as seen under `root` (the container's root). */
export function resolveEntries(
  entries: AllowEntry[],
  kind: InodeAllow['kind'],
  root = '/',
  binds: Array<{ destination: string; source: string }> = [],
): { allow: InodeAllow[]; missing: string[] } {
  // Longest destination first: /data/x is looked up under the bind of /data/x, not of /data.
  const sorted = [...binds].sort((a, b) => b.destination.length - a.destination.length);
  const hostPath = (path: string): string => {
    for (const b of sorted)
      if (path === b.destination || path.startsWith(b.destination.replace(/\/$/, '') + '/'))
        return join(b.source, path.slice(b.destination.length));
    return join(root, path);
  };
  const allow: InodeAllow[] = [];
  const missing: string[] = [];
  const seen = new Set<string>();
  const add = (path: string, subtree: boolean): void => {
    try {
      const st = statSync(hostPath(path), { bigint: true });
      const e: InodeAllow = {
        kind,
        dev: kernelDev(st.dev),
        ino: st.ino,
        subtree: subtree && st.isDirectory(),
      };
      const k = `${e.dev}:${e.ino}:${e.subtree}`;
      if (!seen.has(k)) {
        seen.add(k);
        allow.push(e);
      }
      if (kind === 'exec' && st.isFile()) {
        const interp = elfInterpreter(hostPath(path));
        if (interp && interp !== path) add(interp, false);
      }
    } catch {
      missing.push(path);
    }
  };
  for (const e of entries) add(e.path, e.subtree);
  return { allow, missing };
}

export interface EnforceTarget {
  cgroupId: bigint;
  /** Container id or pod/container name, for reports. */
  name: string;
  /** The container's root as the agent sees it: `/` for a host-rootfs container, or /proc/<pid>/root. */
  root?: string;
  /** Bind mounts of the container (destination inside -> source as the agent sees it). */
  binds?: Array<{ destination: string; source: string }>;
}

interface Watched {
  target: EnforceTarget;
  policy: ContainerPolicy;
}

export interface ContainerCounters {
  network: NetCounters | undefined;
  files: bigint;
  execs: bigint;
  syscalls:
    { total: bigint; eventsLost: bigint; pairsLost: bigint; bySyscall: Record<string, bigint> } | undefined;
  eventsLost: bigint;
}

export interface EnforcerOptions {
  client?: BpfdClient;
  helperPath?: string;
  /** Where the cgroup socket hooks are attached (containers are below it). */
  cgroupAttachDir: string;
  /** Use fanotify for files/execs even where BPF-LSM works (tests, benchmarks). */
  forceFanotify?: boolean;
  /** Skip BPF-LSM entirely (e.g. known missing). */
  skipLsm?: boolean;
  /** Load only these layers (benchmarks); default all. */
  only?: Layer[];
}

export interface EnforcerEvents {
  violation: [Violation & { container: string }];
  warning: [message: string];
}

const NET_PROGS = ['np_connect4', 'np_connect6', 'np_sendmsg4', 'np_sendmsg6', 'np_bind4', 'np_bind6'];
const FAN_BATCH = 256;

export class Enforcer extends EventEmitter<EnforcerEvents> {
  private readonly watched = new Map<bigint, Watched>();
  private readonly states = new Map<Layer, LayerState>();
  private netActive = false;
  private swActive = false;
  private fileMechanism: 'bpf-lsm' | 'fanotify' | undefined;

  private constructor(
    readonly client: BpfdClient,
    private readonly ownsClient: boolean,
  ) {
    super();
  }

  /** Starts the helper (or uses the agent's) and probes and loads every layer. Never throws for a missing layer. */
  static async start(options: EnforcerOptions): Promise<Enforcer> {
    const client =
      options.client ??
      (await BpfdClient.start(options.helperPath ? { helperPath: options.helperPath } : {}));
    const e = new Enforcer(client, !options.client);
    try {
      client.on('event', (label, data) => e.onEvent(label, data));
      client.on('async', (line) => e.onAsync(line));
      await e.probe(options);
    } catch (err) {
      if (!options.client) await client.stop();
      throw err;
    }
    return e;
  }

  private async probe(options: EnforcerOptions): Promise<void> {
    const why = (err: unknown): string => (err instanceof Error ? err.message : String(err));
    const wanted = (l: Layer): boolean => !options.only || options.only.includes(l);
    const notWanted = (layer: Layer): void =>
      void this.states.set(layer, { layer, active: false, mechanism: 'none', reason: 'not requested' });
    // syscalls: seccomp is the runtime's; we add exact denial counting.
    if (!wanted('syscalls')) notWanted('syscalls');
    else
      try {
        await this.client.open(SW_OBJ, bpfObjectPath('seccomp_watch'));
        await this.client.attach(SW_OBJ, 'sw_sys_enter');
        await this.client.attach(SW_OBJ, 'sw_sys_exit');
        await this.client.ringbuf(SW_OBJ, 'sw_events');
        this.swActive = true;
        this.states.set('syscalls', {
          layer: 'syscalls',
          active: true,
          mechanism: 'seccomp + seccomp_watch',
        });
      } catch (err) {
        this.states.set('syscalls', {
          layer: 'syscalls',
          active: true,
          mechanism: 'seccomp',
          reason: `denials are not counted: seccomp_watch did not load: ${why(err)}`,
        });
      }
    // network: load the object (all programs verified), attach the socket hooks above the containers.
    if (!wanted('network')) notWanted('network');
    else
      try {
        await this.client.open(NP_OBJ, bpfObjectPath('netpolicy'));
        mkdirSync(options.cgroupAttachDir, { recursive: true });
        for (const prog of NET_PROGS) await this.client.attachCgroup(NP_OBJ, prog, options.cgroupAttachDir);
        await this.client.ringbuf(NP_OBJ, 'np_events');
        this.netActive = true;
        this.states.set('network', { layer: 'network', active: true, mechanism: 'cgroup socket hooks + tc' });
      } catch (err) {
        this.states.set('network', {
          layer: 'network',
          active: false,
          mechanism: 'cgroup socket hooks + tc',
          reason: why(err),
        });
      }
    // files and execs: BPF-LSM if this kernel runs it, else fanotify.
    let lsmReason = 'skipped';
    if (!wanted('files') && !wanted('execs')) {
      notWanted('files');
      notWanted('execs');
      return;
    }
    if (!options.skipLsm && !options.forceFanotify) {
      try {
        await this.client.open(LSM_OBJ, bpfObjectPath('lsm'));
        await this.client.attach(LSM_OBJ, 'pv_file_open');
        await this.client.attach(LSM_OBJ, 'pv_bprm_check');
        const lsms = activeLsms();
        if (lsms !== undefined && !lsms.split(',').includes('bpf'))
          throw new Error(`bpf is not in /sys/kernel/security/lsm (${lsms}): programs attach but never run`);
        await this.client.ringbuf(LSM_OBJ, 'lsm_events');
        this.fileMechanism = 'bpf-lsm';
      } catch (err) {
        lsmReason = `BPF-LSM unavailable: ${why(err)}`;
        await this.client.close(LSM_OBJ).catch(() => undefined);
      }
    }
    if (!this.fileMechanism) {
      try {
        await this.client.fan('fan_init');
        await this.client.fan('fan_hostfs');
        this.fileMechanism = 'fanotify';
      } catch (err) {
        lsmReason += `; fanotify unavailable: ${why(err)}`;
      }
    }
    for (const layer of ['files', 'execs'] as const) {
      this.states.set(layer, {
        layer,
        active: this.fileMechanism !== undefined,
        mechanism: this.fileMechanism ?? 'none',
        ...(this.fileMechanism !== 'bpf-lsm' ? { reason: lsmReason } : {}),
      });
    }
  }

  /** Which layers are active, with what, and why others are missing. */
  layers(): LayerState[] {
    return (['syscalls', 'network', 'files', 'execs'] as const).map((l) => this.states.get(l)!);
  }

  get filesMechanism(): 'bpf-lsm' | 'fanotify' | undefined {
    return this.fileMechanism;
  }

  /** Programs every available layer for a container; call before its first instruction runs. */
  async enforce(target: EnforceTarget, policy: ContainerPolicy): Promise<{ missingPaths: string[] }> {
    const cgid = target.cgroupId;
    // A new profile for a container already enforced replaces its rules, not adds to them.
    if (this.watched.has(cgid)) await this.forget(cgid);
    this.watched.set(cgid, { target, policy });
    const writes: MapWrite[] = [];
    const m = policy.modes;
    // Every layer's rules are written even when its mode is Off, so a later setModes() only flips a flag.
    if (this.netActive) writes.push(...planNetwork({ cgid, mode: m.network, ...policy.network }));
    if (this.swActive)
      writes.push(
        ...planSeccompWatch(cgid, m.syscalls).filter((w) => m.syscalls !== 'Off' || w.map !== 'sw_watch'),
      );
    const missingPaths: string[] = [];
    if (this.fileMechanism) {
      const root = target.root ?? '/';
      const files = resolveEntries(policy.files, 'file', root, target.binds);
      const execs = resolveEntries(policy.execs, 'exec', root, target.binds);
      missingPaths.push(...files.missing, ...execs.missing);
      // The runtime's own init re-executes and re-reads its binary inside the container's cgroup (runc
      // copies or bind-mounts /proc/self/exe): the runtime is trusted, whatever the recording saw.
      const runtime = resolveEntries(
        runtimeBinaries().map((path) => ({ path, subtree: false, reason: 'rule' as const })),
        'exec',
      ).allow;
      const allow = [
        ...files.allow,
        ...execs.allow,
        ...runtime,
        ...runtime.map((e) => ({ ...e, kind: 'file' as const })),
      ];
      if (this.fileMechanism === 'bpf-lsm') {
        writes.push(...planLsm({ cgid, fileMode: m.files, execMode: m.execs, allow }));
      } else {
        const words = fanAllowWords(allow);
        await this.client.fan('fan_clear', [String(cgid)]).catch(() => undefined);
        for (let i = 0; i < words.length; i += FAN_BATCH)
          await this.client.fan('fan_allow', [String(cgid), ...words.slice(i, i + FAN_BATCH)]);
        await this.client.fan('fan_mode', [
          String(cgid),
          String(MODE_VALUE[m.files]),
          String(MODE_VALUE[m.execs]),
        ]);
      }
    }
    for (const w of writes) {
      try {
        await this.client.mapUpdate(w.obj, w.map, w.key, w.value, w.flag ?? 'any');
      } catch (err) {
        // noexist on a counter that survives a re-enforce is fine; anything else is not.
        if (w.flag !== 'noexist') throw err;
      }
    }
    return { missingPaths };
  }

  /**
   * Resolves the allow-lists again inside the running container (`/proc/<pid>/root`) and adds what resolves
   * there. The container's own mounts (the tmpfs on /tmp, for instance) exist only once its init runs, so a
   * learned `/tmp/out` resolved before the start named the host's /tmp, not the container's.
   */
  async resolveInContainer(cgroupId: bigint, pid: number): Promise<void> {
    const w = this.watched.get(cgroupId);
    const m = w?.policy.modes;
    if (!w || !m || !this.fileMechanism || (m.files === 'Off' && m.execs === 'Off')) return;
    const root = `/proc/${pid}/root`;
    const allow = [
      ...resolveEntries(w.policy.files, 'file', root).allow,
      ...resolveEntries(w.policy.execs, 'exec', root).allow,
    ];
    if (this.fileMechanism === 'bpf-lsm') {
      for (const write of planLsm({ cgid: cgroupId, fileMode: m.files, execMode: m.execs, allow })) {
        // The counters exist already (noexist): only the allow entries are new.
        if (write.flag === 'noexist') continue;
        await this.client.mapUpdate(write.obj, write.map, write.key, write.value, write.flag ?? 'any');
      }
      return;
    }
    const words = fanAllowWords(allow);
    for (let i = 0; i < words.length; i += FAN_BATCH)
      await this.client.fan('fan_allow', [String(cgroupId), ...words.slice(i, i + FAN_BATCH)]);
  }

  /**
   * Marks the container's own mounts (tmpfs and other filesystems the host does not have) for fanotify,
   * once its init process exists. A no-op with BPF-LSM.
   */
  async watchContainerMounts(cgroupId: bigint, pid: number): Promise<number> {
    if (this.fileMechanism !== 'fanotify') return 0;
    return Number(await this.client.fan('fan_watch', [String(cgroupId), String(pid)]));
  }

  /** Filters new inbound flows on an interface for a container (tcx, else clsact); returns how. */
  async attachInterface(
    cgroupId: bigint,
    ifname: string,
    direction: 'ingress' | 'egress',
    knownIfindex?: number,
  ): Promise<string> {
    if (!this.netActive)
      throw new Error(`network layer is not active: ${this.states.get('network')?.reason}`);
    const ifindex = knownIfindex ?? Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
    const w = npInterfaceWrite(ifindex, cgroupId);
    await this.client.mapUpdate(w.obj, w.map, w.key, w.value);
    return this.client.attachTc(NP_OBJ, 'np_tc_ingress', ifname, direction);
  }

  /** Switches modes live: one map write per layer (and one fanotify command); no reload, no restart. */
  async setModes(cgroupId: bigint, modes: Partial<LayerModes>): Promise<void> {
    const w = this.watched.get(cgroupId);
    if (!w) throw new Error(`cgroup ${cgroupId} is not enforced`);
    const m = (w.policy.modes = { ...w.policy.modes, ...modes });
    const key = u64Key(cgroupId);
    if (this.netActive && modes.network)
      await this.client.mapUpdate(
        NP_OBJ,
        'np_config',
        key,
        npConfigValue({ mode: m.network, ...w.policy.network }),
      );
    if (this.swActive && modes.syscalls) {
      if (m.syscalls === 'Off') await this.client.mapDelete(SW_OBJ, 'sw_watch', key);
      else await this.client.mapUpdate(SW_OBJ, 'sw_watch', key, u32Value(MODE_VALUE[m.syscalls]));
    }
    if (modes.files || modes.execs) {
      if (this.fileMechanism === 'bpf-lsm')
        await this.client.mapUpdate(
          LSM_OBJ,
          'lsm_config',
          key,
          lsmConfigValue({ fileMode: m.files, execMode: m.execs }),
        );
      else if (this.fileMechanism === 'fanotify')
        await this.client.fan('fan_mode', [
          String(cgroupId),
          String(MODE_VALUE[m.files]),
          String(MODE_VALUE[m.execs]),
        ]);
    }
  }

  modes(cgroupId: bigint): LayerModes | undefined {
    return this.watched.get(cgroupId)?.policy.modes;
  }

  /** Exact counts from the kernel (and fanotify.c). */
  async counters(cgroupId: bigint): Promise<ContainerCounters> {
    const key = u64Key(cgroupId);
    const out: ContainerCounters = {
      network: undefined,
      files: 0n,
      execs: 0n,
      syscalls: undefined,
      eventsLost: 0n,
    };
    if (this.netActive) {
      const v = await this.client.mapLookup(NP_OBJ, 'np_counters', key);
      if (v) {
        out.network = decodeNetCounters(v);
        out.eventsLost += out.network.eventsLost;
      }
    }
    if (this.fileMechanism === 'bpf-lsm') {
      const v = await this.client.mapLookup(LSM_OBJ, 'lsm_counters', key);
      if (v) {
        const c = decodeLsmCounters(v);
        out.files = c.fileDenied;
        out.execs = c.execDenied;
        out.eventsLost += c.eventsLost;
      }
    } else if (this.fileMechanism === 'fanotify') {
      const r = await this.client.fan('fan_stats', [String(cgroupId)]).catch(() => '');
      const [fileDenied, execDenied, , linesLost] = r.split(' ').map((x) => BigInt(x || 0));
      out.files = fileDenied ?? 0n;
      out.execs = execDenied ?? 0n;
      out.eventsLost += linesLost ?? 0n;
    }
    if (this.swActive) {
      const t = await this.client.mapLookup(SW_OBJ, 'sw_totals', key);
      if (t) {
        const totals = decodeSwTotals(t);
        const bySyscall: Record<string, bigint> = {};
        for (const [k, v] of await this.client.mapDump(SW_OBJ, 'sw_counts')) {
          const { cgid, nr } = decodeSwCountKey(k);
          if (cgid === cgroupId) bySyscall[syscallName(nr) ?? `nr${nr}`] = v.readBigUInt64LE(0);
        }
        out.syscalls = {
          total: totals.denied,
          eventsLost: totals.eventsLost,
          pairsLost: totals.pairsLost,
          bySyscall,
        };
      }
    }
    return out;
  }

  /** Stops enforcing a container and drops its map entries. */
  async forget(cgroupId: bigint): Promise<void> {
    const w = this.watched.get(cgroupId);
    this.watched.delete(cgroupId);
    const key = u64Key(cgroupId);
    const del = (obj: string, map: string, k: Buffer): Promise<unknown> =>
      this.client.mapDelete(obj, map, k).catch(() => false);
    if (this.netActive) {
      await del(NP_OBJ, 'np_config', key);
      await del(NP_OBJ, 'np_counters', key);
      if (w)
        for (const wr of planNetwork({ cgid: cgroupId, mode: 'Off', ...w.policy.network }))
          await del(wr.obj, wr.map, wr.key);
      for (const [k, v] of await this.client.mapDump(NP_OBJ, 'np_ifaces').catch(() => []))
        if (v.readBigUInt64LE(0) === cgroupId) await del(NP_OBJ, 'np_ifaces', k);
    }
    if (this.swActive) {
      await del(SW_OBJ, 'sw_watch', key);
      await del(SW_OBJ, 'sw_totals', key);
      for (const [k] of await this.client.mapDump(SW_OBJ, 'sw_counts').catch(() => []))
        if (decodeSwCountKey(k).cgid === cgroupId) await del(SW_OBJ, 'sw_counts', k);
    }
    if (this.fileMechanism === 'bpf-lsm') {
      await del(LSM_OBJ, 'lsm_config', key);
      await del(LSM_OBJ, 'lsm_counters', key);
      for (const [k] of await this.client.mapDump(LSM_OBJ, 'lsm_allow').catch(() => []))
        if (k.readBigUInt64LE(0) === cgroupId) await del(LSM_OBJ, 'lsm_allow', k);
    } else if (this.fileMechanism === 'fanotify') {
      await this.client.fan('fan_forget', [String(cgroupId)]).catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    if (this.ownsClient) await this.client.stop();
  }

  private name(cgid: bigint): string {
    return this.watched.get(cgid)?.target.name ?? `cgroup ${cgid}`;
  }

  private onEvent(label: string, data: Buffer): void {
    try {
      let v: Violation | undefined;
      if (label === `${NP_OBJ}/np_events`) v = decodeNetEvent(data);
      else if (label === `${LSM_OBJ}/lsm_events`) v = decodeLsmEvent(data);
      else if (label === `${SW_OBJ}/sw_events`) v = decodeSwEvent(data, (nr) => syscallName(nr) ?? `nr${nr}`);
      if (v) this.emit('violation', { ...v, container: this.name(v.cgid) });
    } catch (err) {
      this.emit('warning', `undecodable event on ${label}: ${(err as Error).message}`);
    }
  }

  private onAsync(line: string): void {
    // fan <cgid> <file|exec> <denied|allowed> <mode> <pid> <comm> <path>
    const m = /^fan (\d+) (file|exec) (denied|allowed) (\w+) (\d+) (\S+) (.*)$/.exec(line);
    if (!m) return;
    const cgid = BigInt(m[1]!);
    const kind = m[2] === 'exec' ? 'exec' : 'file';
    const modeName = m[4]!.charAt(0).toUpperCase() + m[4]!.slice(1);
    this.emit('violation', {
      cgid,
      layer: kind === 'exec' ? 'execs' : 'files',
      kind,
      denied: m[3] === 'denied',
      mode: (['Off', 'Monitor', 'Enforce', 'Alert'].includes(modeName)
        ? modeName
        : 'Off') as Violation['mode'],
      pid: Number(m[5]),
      comm: m[6]!,
      what: safeDecode(m[7]!),
      container: this.name(cgid),
    });
  }
}

/** Container runtimes on this host (their init runs inside the container's cgroup before the command). */
export function runtimeBinaries(): string[] {
  const found: string[] = [];
  for (const dir of (
    process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  ).split(':'))
    for (const name of ['runc', 'crun'])
      if (dir && existsSync(join(dir, name)) && !found.includes(join(dir, name))) found.push(join(dir, name));
  return found;
}

function activeLsms(): string | undefined {
  const file = '/sys/kernel/security/lsm';
  try {
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  } catch {
    return undefined;
  }
}

export const VIOLATION_KINDS = KIND;

function safeDecode(escaped: string): string {
  try {
    return decodeURIComponent(escaped);
  } catch {
    return escaped; // not UTF-8: keep the escapes
  }
}
