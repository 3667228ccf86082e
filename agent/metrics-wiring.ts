// Wires the agent's metrics (agent/metrics.ts) to the cluster agent without changing it: the learner and
// enforcer ports (agent/cluster/agent.ts) are wrapped so every behaviour, container and violation that passes
// through them is counted. api/metrics.ts serveMetrics exposes the registry on /metrics.
import type { EnforcementTarget, EnforcerPort, LearnerPort } from './cluster/agent.js';
import type { Behaviour } from './cluster/observations.js';
import type { AgentMetrics, ViolationAction } from './metrics.js';

const ACTION: Record<string, ViolationAction> = { Enforce: 'deny', Monitor: 'log', Alert: 'alert' };

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

/** Counts what flows through the ports; returns wrapped ports to hand to the ClusterAgent instead. */
export function instrumentPorts(
  ports: { learner?: LearnerPort; enforcer?: EnforcerPort },
  metrics: AgentMetrics,
  node: string,
): { learner?: LearnerPort; enforcer?: EnforcerPort } {
  const out: { learner?: LearnerPort; enforcer?: EnforcerPort } = {};
  if (ports.learner) {
    const inner = ports.learner;
    const seen = new Map<bigint, Set<string>>();
    out.learner = {
      watch: async (cgroupId) => {
        await inner.watch(cgroupId);
        if (!seen.has(cgroupId)) seen.set(cgroupId, new Set());
        metrics.containersWatched.set({ mode: 'learning' }, seen.size);
      },
      unwatch: async (cgroupId) => {
        await inner.unwatch(cgroupId);
        seen.delete(cgroupId);
        metrics.containersWatched.set({ mode: 'learning' }, seen.size);
      },
      ...(inner.snapshot ? { snapshot: inner.snapshot.bind(inner) } : {}),
      onBehaviour: (listener) =>
        inner.onBehaviour((cgroupId, behaviours) => {
          const known = seen.get(cgroupId);
          for (const b of behaviours) {
            metrics.firstSeenEvents.inc({ kind: b.kind });
            const key = `${b.kind}:${behaviourKey(b)}`;
            // Distinct per container: the same behaviour reported again (snapshots, restarts) is not new.
            if (known && !known.has(key) && known.size < 100_000) {
              known.add(key);
              metrics.learned(b.kind);
            }
          }
          listener(cgroupId, behaviours);
        }),
    };
  }
  if (ports.enforcer) {
    const inner = ports.enforcer;
    const targets = new Map<bigint, EnforcementTarget>();
    const lastCounts = new Map<bigint, Map<string, number>>();
    const count_ = (cgroupId: bigint, layer: string, count: number): void => {
      const t = targets.get(cgroupId);
      const mode = t?.modes[layer as keyof EnforcementTarget['modes']];
      metrics.violation(
        {
          namespace: t?.namespace ?? 'unknown',
          policy: t?.policy ?? 'unknown',
          container: t?.container ?? 'unknown',
          layer,
          action: (mode && ACTION[mode]) ?? 'log',
        },
        count,
      );
    };
    out.enforcer = {
      probe: async () => {
        const layers = await inner.probe();
        metrics.setLayers(
          node,
          layers.active,
          layers.missing.map((m) => m.layer),
        );
        return layers;
      },
      apply: async (cgroupId, target) => {
        await inner.apply(cgroupId, target);
        if (target) targets.set(cgroupId, target);
        else {
          targets.delete(cgroupId);
          lastCounts.delete(cgroupId);
        }
        metrics.containersWatched.set({ mode: 'enforcing' }, targets.size);
      },
      onViolation: (listener) =>
        inner.onViolation((cgroupId, layer, what, count) => {
          // With kernel counters (violationCounts), an event only says "look now": counted below instead.
          if (!inner.violationCounts) count_(cgroupId, layer, count);
          listener(cgroupId, layer, what, count);
        }),
      ...(inner.violationCounts
        ? {
            violationCounts: async (cgroupId: bigint) => {
              const counts = await inner.violationCounts!(cgroupId);
              let last = lastCounts.get(cgroupId);
              if (!last) lastCounts.set(cgroupId, (last = new Map()));
              for (const c of counts) {
                const key = `${c.layer}|${c.what}`;
                const delta = c.count - (last.get(key) ?? 0);
                last.set(key, c.count);
                if (delta > 0) count_(cgroupId, c.layer, delta);
              }
              return counts;
            },
          }
        : {}),
    };
  }
  return out;
}
