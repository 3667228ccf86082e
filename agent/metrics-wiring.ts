// Counts learned behaviours for the agent's metrics (agent/metrics.ts) at the learner port, without changing the
// cluster agent. The ClusterAgent, given the same AgentMetrics, counts everything else itself: containers
// watched, first-seen events, violations (from the enforcer's exact kernel counters, with namespace, policy and
// container from attribution), layers active and profiles installed. Counting those here as well would count
// them twice.
import type { LearnerPort } from './cluster/agent.js';
import type { Behaviour } from './cluster/observations.js';
import type { AgentMetrics } from './metrics.js';

function behaviourKey(b: Behaviour): string {
  switch (b.kind) {
    case 'syscall':
      return b.name;
    case 'exec':
      return b.path;
    case 'file':
      return `${b.path}:${b.write ? 'w' : 'r'}`;
    case 'port':
      return `${b.direction}/${b.protocol}/${b.port}`;
  }
}

/** Per watched container, a behaviour counts as learned once; the set is bounded and dropped on unwatch. */
const MAX_DISTINCT_PER_CONTAINER = 100_000;

/** Wraps the learner port so each distinct behaviour of a watched container increments behaviours_learned. */
export function instrumentPorts<P extends { learner?: LearnerPort }>(
  ports: P,
  metrics: AgentMetrics,
  _node?: string,
): { learner?: LearnerPort } {
  if (!ports.learner) return {};
  const inner = ports.learner;
  const seen = new Map<bigint, Set<string>>();
  return {
    learner: {
      watch: async (cgroupId, options) => {
        await inner.watch(cgroupId, options);
        if (!seen.has(cgroupId)) seen.set(cgroupId, new Set());
      },
      unwatch: async (cgroupId) => {
        await inner.unwatch(cgroupId);
        seen.delete(cgroupId);
      },
      ...(inner.snapshot ? { snapshot: inner.snapshot.bind(inner) } : {}),
      onBehaviour: (listener) =>
        inner.onBehaviour((cgroupId, behaviours) => {
          const known = seen.get(cgroupId);
          for (const b of behaviours) {
            const key = `${b.kind}:${behaviourKey(b)}`;
            // The same behaviour reported again (snapshots, agent restarts) is not new.
            if (known && !known.has(key) && known.size < MAX_DISTINCT_PER_CONTAINER) {
              known.add(key);
              metrics.learned(b.kind);
            }
          }
          listener(cgroupId, behaviours);
        }),
    },
  };
}
