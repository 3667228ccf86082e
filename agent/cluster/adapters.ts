// Maps the node's learner (agent/learner.ts) and enforcer (agent/enforcer.ts) onto the cluster agent's
// ports, so the cluster logic stays testable without BPF and the seams stay small.
import type { Learner, LearnerEvent, Observation } from '../learner.js';
import type { ContainerPolicy, Enforcer } from '../enforcer.js';
import { MAX_RANGE_PORTS, type PortRuleSpec } from '../enforce-maps.js';
import { findCgroupDir, firstPid, hostVethOf, policyFromProfile } from '../enforcer-port.js';
import { detectCgroupV2Root } from './attribution.js';
import type { EnforcementTarget, EnforcerPort, LearnerPort, Logger } from './agent.js';
import type { Behaviour } from './observations.js';
import type { Layer } from '../../api/policy.js';

/** One learner event as observed behaviour; undefined for what observations do not record. */
export function behaviourOf(ev: LearnerEvent | Observation): Behaviour | undefined {
  switch (ev.kind) {
    case 'syscall':
      return { kind: 'syscall', name: ev.name };
    case 'exec':
      return ev.path ? { kind: 'exec', path: ev.path } : undefined;
    case 'file':
      return ev.path ? { kind: 'file', path: ev.path, write: ev.write } : undefined;
    case 'net': {
      const protocol = ev.protocol === 'tcp' ? 'TCP' : ev.protocol === 'udp' ? 'UDP' : undefined;
      if (!protocol) return undefined;
      if (ev.op === 'bind' || ev.op === 'listen' || ev.op === 'accept') {
        // A bind to port 0 (ephemeral) says nothing about listening.
        if (ev.port === 0 || (ev.op === 'bind' && protocol === 'TCP')) return undefined;
        return { kind: 'port', direction: 'listen', protocol, port: ev.port };
      }
      if (ev.port === 0) return undefined;
      return { kind: 'port', direction: 'egress', protocol, port: ev.port, address: ev.address };
    }
  }
}

export function learnerPort(learner: Learner, log?: Logger): LearnerPort {
  return {
    watch: (id, options) => learner.watch(id, options),
    unwatch: (id) => learner.forget(id),
    async snapshot(id) {
      const out: Behaviour[] = (await learner.syscallNames(id)).map((name) => ({ kind: 'syscall', name }));
      for (const o of await learner.observations(id)) {
        const b = behaviourOf(o);
        if (b) out.push(b);
      }
      return out;
    },
    onBehaviour(listener) {
      learner.on('event', (ev) => {
        const b = behaviourOf(ev);
        if (b) listener(ev.cgroupId, [b]);
      });
      learner.on('error', (err) => log?.error({ err: err.message }, 'learner error'));
    },
  };
}

const LOOPBACK_CIDRS = new Set(['127.0.0.0/8', '::1/128']);

/**
 * A published profile as the enforcer's per-container policy (paths are already generalised). Loopback
 * allowances are the enforcer's own flag, not rules. A port range wider than the enforcer can expand cannot
 * be enforced exactly: the network layer of that container then only monitors, and a warning says why.
 */
export function enforcerPolicy(target: EnforcementTarget): { policy: ContainerPolicy; warnings: string[] } {
  const warnings: string[] = [];
  let networkMode = target.modes.network;
  const rules = (direction: 'listen' | 'egress'): PortRuleSpec[] =>
    target.profile.ports
      .filter((p) => p.direction === direction && p.port > 0)
      .filter((p) => !(target.network.allowLoopback && p.cidr && LOOPBACK_CIDRS.has(p.cidr)))
      .filter((p) => {
        const width = (p.endPort ?? p.port) - p.port + 1;
        if (width <= MAX_RANGE_PORTS) return true;
        warnings.push(
          `${direction} ${p.protocol} ${p.port}-${p.endPort} is wider than ${MAX_RANGE_PORTS} ports: network layer only monitors`,
        );
        if (networkMode === 'Enforce' || networkMode === 'Alert') networkMode = 'Monitor';
        return false;
      })
      .map((p) => ({
        protocol: p.protocol,
        port: p.port,
        ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
        ...(p.cidr ? { cidr: p.cidr } : {}),
      }));
  const egress = rules('egress');
  const ingress = rules('listen');
  // Files and execs exactly as the enforcer's own port converts them (agent/enforcer-port.ts).
  const fromProfile = policyFromProfile({ ...target.profile, ports: [] }, target.modes);
  return {
    policy: {
      modes: { ...target.modes, network: networkMode },
      network: { egress, ingress, ...target.network },
      files: fromProfile.files,
      execs: fromProfile.execs,
    },
    warnings,
  };
}

/** Where violations went unattributed. The file and exec layers share one event channel (the BPF-LSM ring
 * buffer, or fanotify's line queue), whose loss counter does not say which of the two lost an event. */
export const LOSS_LAYERS = ['syscalls', 'network', 'files+execs'] as const;
export type LossLayer = (typeof LOSS_LAYERS)[number];
type Losses = Record<LossLayer, number>;
const noLosses = (): Losses => ({ syscalls: 0, network: 0, 'files+execs': 0 });

/**
 * Violations lost per layer, cumulative over the agent's life, from the enforcer's exact kernel counters:
 * events the ring buffer could not take, and (syscalls) denials no per-syscall counter could hold. The kernel
 * counts per container and starts again from zero when a container is re-enforced or forgotten, so each
 * container's losses are folded in just before that (beforeApply) and at each read.
 */
export class ViolationLosses {
  private readonly seen = new Map<bigint, Losses>();
  private readonly applying = new Set<bigint>();
  private readonly total = noLosses();
  /** fanotify's lost lines are one count for the whole helper, reported alike for every container. */
  private fanotifyLost = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly enforcer: Pick<Enforcer, 'counters' | 'layers'>) {}

  /** Cumulative losses by layer; reads every enforced container's counters (call at scrape time). */
  read(): Promise<Losses> {
    return this.serial(async () => {
      for (const id of [...this.seen.keys()])
        if (!this.applying.has(id)) await this.fold(id).catch(() => undefined);
      return { ...this.total, 'files+execs': this.total['files+execs'] + this.fanotifyLost };
    });
  }

  /** Before a container's policy changes: what it lost so far is kept; its counters restart after this. */
  beforeApply(id: bigint): Promise<void> {
    return this.serial(async () => {
      if (this.seen.has(id)) await this.fold(id).catch(() => undefined);
      this.seen.delete(id);
      this.applying.add(id);
    });
  }

  /** After the policy changed: an enforced container is counted from zero, a forgotten one no more. */
  afterApply(id: bigint, enforced: boolean): void {
    this.applying.delete(id);
    if (enforced) this.seen.set(id, noLosses());
  }

  private async fold(id: bigint): Promise<void> {
    const c = await this.enforcer.counters(id);
    const network = Number(c.network?.eventsLost ?? 0n);
    const filesExecs = Number(c.eventsLost) - network;
    const fanotify = this.enforcer.layers().some((s) => s.layer === 'files' && s.mechanism === 'fanotify');
    if (fanotify) this.fanotifyLost = Math.max(this.fanotifyLost, filesExecs);
    const now: Losses = {
      syscalls: Number((c.syscalls?.eventsLost ?? 0n) + (c.syscalls?.pairsLost ?? 0n)),
      network,
      'files+execs': fanotify ? 0 : filesExecs,
    };
    const last = this.seen.get(id) ?? noLosses();
    // A counter below what was seen started again unnoticed: all of it is new.
    for (const layer of LOSS_LAYERS)
      this.total[layer] += now[layer] >= last[layer] ? now[layer] - last[layer] : now[layer];
    this.seen.set(id, now);
  }

  /** Reads and folds one at a time: two overlapping folds of one container would count its losses twice. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * The enforcer as the cluster agent's port. Builds on agent/enforcer-port.ts (container root, mounts,
 * veth) and adds what the cluster needs: exact violation counts from the kernel counters, loopback as the
 * enforcer's flag, and a clear downgrade for port ranges the maps cannot hold.
 */
export function enforcerPort(
  enforcer: Enforcer,
  log?: Logger,
  cgroupRoot: string = detectCgroupV2Root(),
  losses?: ViolationLosses,
): EnforcerPort {
  const port: EnforcerPort = {
    async probe() {
      const states = enforcer.layers();
      return {
        active: states.filter((s) => s.active).map((s) => s.layer),
        // A layer served by its fallback (files through fanotify without BPF-LSM) is active, not missing.
        missing: states
          .filter((s) => !s.active)
          .map((s) => ({ layer: s.layer, reason: s.reason ?? `${s.mechanism} unavailable` })),
      };
    },
    async apply(cgroupId, target) {
      if (!target) return enforcer.forget(cgroupId);
      const name = `${target.namespace}/${target.policy}/${target.container}`;
      const { policy, warnings } = enforcerPolicy(target);
      for (const w of warnings) log?.warn({ container: name, profile: target.profileName }, w);
      // The container's root and mounts as one of its processes sees them (overlay root filesystems).
      const dir = findCgroupDir(cgroupId, cgroupRoot);
      const pid = dir ? firstPid(dir) : undefined;
      const root = pid ? `/proc/${pid}/root` : '/';
      const { missingPaths } = await enforcer.enforce({ cgroupId, name, root }, policy);
      if (missingPaths.length)
        log?.warn(
          { container: name, missingPaths: missingPaths.slice(0, 20) },
          'allowed paths not found on this node',
        );
      if (pid) await enforcer.watchContainerMounts(cgroupId, pid).catch(() => 0);
      // New inbound flows are judged on the host end of the pod's veth.
      const veth = pid && policy.modes.network !== 'Off' ? hostVethOf(pid) : undefined;
      if (veth)
        await enforcer
          .attachInterface(cgroupId, veth.ifname, 'egress', veth.ifindex)
          .catch((err: Error) => log?.warn({ container: name, err: err.message }, 'TC filter not attached'));
    },
    onViolation(listener) {
      enforcer.on('violation', (v) => listener(v.cgid, v.layer, v.what, 1));
    },
    async violationCounts(cgroupId) {
      const c = await enforcer.counters(cgroupId);
      const out: { layer: Layer; what: string; count: number }[] = [];
      for (const [name, n] of Object.entries(c.syscalls?.bySyscall ?? {}))
        out.push({ layer: 'syscalls', what: name, count: Number(n) });
      if (c.network) {
        const denied = c.network.connect + c.network.bind + c.network.ingress + c.network.sendmsg;
        out.push({ layer: 'network', what: '*', count: Number(denied) });
      }
      out.push({ layer: 'files', what: '*', count: Number(c.files) });
      out.push({ layer: 'execs', what: '*', count: Number(c.execs) });
      return out;
    },
  };
  if (!losses) return port;
  return {
    ...port,
    // Enforcing anew or forgetting restarts a container's kernel counters: keep what it lost so far.
    async apply(cgroupId, target) {
      await losses.beforeApply(cgroupId);
      try {
        await port.apply(cgroupId, target);
      } finally {
        losses.afterApply(cgroupId, target !== undefined);
      }
    },
  };
}

export interface NodePortsOptions {
  /** bpffs pin directory (maps and links survive agent restarts). */
  pinDir?: string;
  /** The cgroup v2 mount (default: detected). */
  cgroupRoot?: string;
  /** Where the enforcer's cgroup socket hooks attach (the containers must be below it); default cgroupRoot. */
  cgroupAttachDir?: string;
  /** Files/execs through fanotify even where BPF-LSM works. */
  forceFanotify?: boolean;
}

export interface NodePorts {
  learner?: LearnerPort;
  enforcer?: EnforcerPort;
  /** The learner's kernel loss counters (AgentMetrics.trackLosses), read at scrape time. */
  learnerLosses?: () => Promise<{ eventsLost: number; objectsDropped: number }>;
  /** Violations lost per layer, cumulative (AgentMetrics.trackViolationsLost), read at scrape time. */
  violationsLost?: () => Promise<Record<string, number>>;
  close: () => Promise<void>;
}

export async function createNodePorts(log: Logger, options: NodePortsOptions = {}): Promise<NodePorts> {
  const cgroupRoot = options.cgroupRoot ?? detectCgroupV2Root();
  const { Learner } = await import('../learner.js');
  const learner = await Learner.start(options.pinDir ? { pinDir: options.pinDir } : {});
  let enforcer: Enforcer | undefined;
  try {
    const { Enforcer: EnforcerClass } = await import('../enforcer.js');
    enforcer = await EnforcerClass.start({
      client: learner.client,
      cgroupAttachDir: options.cgroupAttachDir ?? cgroupRoot,
      ...(options.forceFanotify ? { forceFanotify: true } : {}),
    });
    enforcer.on('warning', (message) => log.warn({ message }, 'enforcer'));
  } catch (err) {
    log.error(
      { err: (err as Error).message },
      'enforcer unavailable: learning and profile installation only',
    );
  }
  const losses = enforcer && new ViolationLosses(enforcer);
  return {
    learner: learnerPort(learner, log),
    learnerLosses: () => learner.lossCounters(),
    ...(enforcer ? { enforcer: enforcerPort(enforcer, log, cgroupRoot, losses) } : {}),
    ...(losses ? { violationsLost: () => losses.read() } : {}),
    close: async () => {
      await enforcer?.stop();
      await learner.stop();
    },
  };
}
