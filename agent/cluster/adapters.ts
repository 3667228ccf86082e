// Maps the node's learner (agent/learner.ts) and enforcer (agent/enforcer.ts) onto the cluster agent's
// ports, so the cluster logic stays testable without BPF and the seams stay small.
import type { Learner, LearnerEvent, Observation } from '../learner.js';
import type { EnforcerPort, LearnerPort, Logger } from './agent.js';
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

export interface NodePortsOptions {
  /** bpffs pin directory (maps and links survive agent restarts). */
  pinDir?: string;
}

export async function createNodePorts(
  log: Logger,
  options: NodePortsOptions = {},
): Promise<{ learner?: LearnerPort; enforcer?: EnforcerPort; close: () => Promise<void> }> {
  const { Learner } = await import('../learner.js');
  const learner = await Learner.start(options.pinDir ? { pinDir: options.pinDir } : {});
  return {
    learner: learnerPort(learner, log),
    close: () => learner.stop(),
  };
}
