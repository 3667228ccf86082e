// Maps the node's learner (agent/learner.ts) and enforcer (agent/enforcer.ts) onto the cluster agent's
// ports, so the cluster logic stays testable without BPF and the seams stay small.
import type { Learner, LearnerEvent, Observation } from '../learner.js';
import type { ContainerPolicy, Enforcer } from '../enforcer.js';
import type { PortRuleSpec } from '../enforce-maps.js';
import { entriesFromGlobs } from '../paths.js';
import { detectCgroupV2Root } from './attribution.js';
import type { EnforcementTarget, EnforcerPort, LearnerPort, Logger } from './agent.js';
import type { Behaviour } from './observations.js';

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

/** A published profile as the enforcer's per-container policy (paths are already generalised). */
export function enforcerPolicy(target: EnforcementTarget): ContainerPolicy {
  const rules = (direction: 'listen' | 'egress'): PortRuleSpec[] =>
    target.profile.ports
      .filter((p) => p.direction === direction && p.port > 0)
      .map((p) => ({
        protocol: p.protocol,
        port: p.port,
        ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
        ...(p.cidr ? { cidr: p.cidr } : {}),
      }));
  return {
    modes: target.modes,
    network: { egress: rules('egress'), ingress: rules('listen'), ...target.network },
    files: entriesFromGlobs(target.profile.files.map((f) => f.path)),
    execs: entriesFromGlobs(target.profile.execs),
  };
}

export function enforcerPort(enforcer: Enforcer): EnforcerPort {
  return {
    async probe() {
      const states = enforcer.layers();
      return {
        active: states.filter((s) => s.active).map((s) => s.layer),
        missing: states
          .filter((s) => !s.active || s.reason)
          .map((s) => ({ layer: s.layer, reason: s.reason ?? `${s.mechanism} unavailable` })),
      };
    },
    async apply(cgroupId, target) {
      if (!target) return enforcer.forget(cgroupId);
      // Resolved inside the pod's container, with its own mounts and its veth (agent/enforcer-port.ts).
      const { enforcePodContainer } = await import('../enforcer-port.js');
      await enforcePodContainer(
        enforcer,
        cgroupId,
        `${target.namespace}/${target.policy}/${target.container}`,
        enforcerPolicy(target),
      );
    },
    onViolation(listener) {
      enforcer.on('violation', (v) => listener(v.cgid, v.layer, v.what, 1));
    },
  };
}

export interface NodePortsOptions {
  /** bpffs pin directory (maps and links survive agent restarts). */
  pinDir?: string;
  /** Where the enforcer's cgroup socket hooks attach (the containers must be below it). */
  cgroupAttachDir?: string;
  /** Files/execs through fanotify even where BPF-LSM works. */
  forceFanotify?: boolean;
}

export async function createNodePorts(
  log: Logger,
  options: NodePortsOptions = {},
): Promise<{ learner?: LearnerPort; enforcer?: EnforcerPort; close: () => Promise<void> }> {
  const { Learner } = await import('../learner.js');
  const learner = await Learner.start(options.pinDir ? { pinDir: options.pinDir } : {});
  let enforcer: Enforcer | undefined;
  try {
    const { Enforcer: EnforcerClass } = await import('../enforcer.js');
    enforcer = await EnforcerClass.start({
      client: learner.client,
      cgroupAttachDir: options.cgroupAttachDir ?? detectCgroupV2Root(),
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
    ...(enforcer ? { enforcer: enforcerPort(enforcer) } : {}),
    close: async () => {
      await enforcer?.stop();
      await learner.stop();
    },
  };
}
