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
    watch: (id) => learner.watch(id),
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

/**
 * The enforcer as the cluster agent's port. Builds on agent/enforcer-port.ts (container root, mounts,
 * veth) and adds what the cluster needs: exact violation counts from the kernel counters, loopback as the
 * enforcer's flag, and a clear downgrade for port ranges the maps cannot hold.
 */
export function enforcerPort(
  enforcer: Enforcer,
  log?: Logger,
  cgroupRoot: string = detectCgroupV2Root(),
): EnforcerPort {
  return {
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

export async function createNodePorts(
  log: Logger,
  options: NodePortsOptions = {},
): Promise<{ learner?: LearnerPort; enforcer?: EnforcerPort; close: () => Promise<void> }> {
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
  return {
    learner: learnerPort(learner, log),
    ...(enforcer ? { enforcer: enforcerPort(enforcer, log, cgroupRoot) } : {}),
    close: async () => {
      await enforcer?.stop();
      await learner.stop();
    },
  };
}
