// The agent's metrics: learning (containers watched, behaviours learned per kind, first-seen events, ring-buffer
// drops) and enforcement (violations by namespace/policy/container/layer/action, layers active per node).
// The learner and the enforcer call these; the agent serves `registry` on /metrics.
import { Counter, Gauge, type Registry } from 'prom-client';
import { newRegistry } from '../api/metrics.js';

/** What the learner learns: a syscall, a binary executed, a file opened, a port used. */
export const BEHAVIOUR_KINDS = ['syscall', 'exec', 'file', 'port'] as const;
export type BehaviourKind = (typeof BEHAVIOUR_KINDS)[number];
/** What happened to a violation: denied (Enforce), logged and allowed (Monitor), denied with an alert (Alert). */
export const VIOLATION_ACTIONS = ['deny', 'log', 'alert'] as const;
export type ViolationAction = (typeof VIOLATION_ACTIONS)[number];

export interface ViolationLabels {
  namespace: string;
  policy: string;
  container: string;
  layer: string;
  action: ViolationAction;
}

export class AgentMetrics {
  readonly registry: Registry;
  readonly containersWatched: Gauge<'mode'>;
  readonly behavioursLearned: Counter<'kind'>;
  readonly firstSeenEvents: Counter<'kind'>;
  readonly ringbufDropped: Counter<'ringbuf'>;
  readonly violations: Counter<'namespace' | 'policy' | 'container' | 'layer' | 'action'>;
  readonly violationsLost: Counter<'layer'>;
  readonly layersActive: Gauge<'node' | 'layer'>;
  readonly profilesInstalled: Gauge;
  /** Read at scrape time (see trackLosses). */
  private readLosses?: () => Promise<{ eventsLost: number; objectsDropped: number }>;
  private lossesSeen = { eventsLost: 0, objectsDropped: 0 };
  /** Read at scrape time (see trackViolationsLost). */
  private readViolationsLost?: () => Promise<Record<string, number>>;
  private violationsLostSeen: Record<string, number> = {};

  constructor(options: { registry?: Registry; processMetrics?: boolean } = {}) {
    const registers = [(this.registry = options.registry ?? newRegistry(options))];
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- prom-client calls collect() with the metric as this
    const self = this;
    this.containersWatched = new Gauge({
      name: 'pahlevan_agent_containers_watched',
      help: 'Containers the agent currently watches, by mode (learning or enforcing).',
      labelNames: ['mode'],
      registers,
    });
    this.behavioursLearned = new Counter({
      name: 'pahlevan_agent_behaviours_learned_total',
      help: 'New behaviours learned (first use of a syscall, binary, file or port by a container), by kind.',
      labelNames: ['kind'],
      registers,
    });
    this.firstSeenEvents = new Counter({
      name: 'pahlevan_agent_first_seen_events_total',
      help: 'First-seen events received from the kernel ring buffer, by kind.',
      labelNames: ['kind'],
      registers,
    });
    this.ringbufDropped = new Counter({
      name: 'pahlevan_agent_ringbuf_dropped_events_total',
      help: 'Ring-buffer records the kernel could not reserve (buffer full), by ring buffer.',
      labelNames: ['ringbuf'],
      registers,
      async collect() {
        if (!self.readLosses) return;
        // The learner's kernel counters only grow: count what is new since the last scrape.
        const now = await self.readLosses().catch(() => undefined);
        if (!now) return;
        const seen = self.lossesSeen;
        if (now.eventsLost > seen.eventsLost)
          this.inc({ ringbuf: 'events' }, now.eventsLost - seen.eventsLost);
        if (now.objectsDropped > seen.objectsDropped)
          this.inc({ ringbuf: 'objects' }, now.objectsDropped - seen.objectsDropped);
        self.lossesSeen = { ...now };
      },
    });
    this.violations = new Counter({
      name: 'pahlevan_agent_violations_total',
      help: 'Policy violations seen on this node, by namespace, policy, container, layer and action taken.',
      labelNames: ['namespace', 'policy', 'container', 'layer', 'action'],
      registers,
    });
    this.violationsLost = new Counter({
      name: 'pahlevan_agent_violations_lost_total',
      help: 'Violations known to have happened but not attributed (e.g. a burst beyond the counters), by layer.',
      labelNames: ['layer'],
      registers,
      async collect() {
        if (!self.readViolationsLost) return;
        // Cumulative per layer (agent/cluster/adapters.ts ViolationLosses): count what is new since the last scrape.
        const now = await self.readViolationsLost().catch(() => undefined);
        if (!now) return;
        for (const [layer, total] of Object.entries(now)) {
          const seen = self.violationsLostSeen[layer] ?? 0;
          if (total > seen) this.inc({ layer }, total - seen);
          else if (!seen) this.inc({ layer }, 0); // the series exists before the first loss
          self.violationsLostSeen[layer] = Math.max(seen, total);
        }
      },
    });
    this.layersActive = new Gauge({
      name: 'pahlevan_agent_layer_active',
      help: 'Whether an enforcement layer is active on this node (1) or missing (0), by node and layer.',
      labelNames: ['node', 'layer'],
      registers,
    });
    this.profilesInstalled = new Gauge({
      name: 'pahlevan_agent_profiles_installed',
      help: 'Seccomp profiles installed under the kubelet seccomp root on this node.',
      registers,
    });
  }

  /** The learner's loss counters (agent/learner.ts lossCounters), read at each scrape. */
  trackLosses(read: () => Promise<{ eventsLost: number; objectsDropped: number }>): void {
    this.readLosses = read;
  }

  /** Violations lost per layer, cumulative over the agent's life, read at each scrape. */
  trackViolationsLost(read: () => Promise<Record<string, number>>): void {
    this.readViolationsLost = read;
  }

  learned(kind: BehaviourKind, count = 1): void {
    this.behavioursLearned.inc({ kind }, count);
  }

  violation(labels: ViolationLabels, count = 1): void {
    this.violations.inc({ ...labels }, count);
  }

  /** Sets the layers of one node: active ones to 1, missing ones to 0. */
  setLayers(node: string, active: readonly string[], missing: readonly string[]): void {
    for (const layer of active) this.layersActive.set({ node, layer }, 1);
    for (const layer of missing) this.layersActive.set({ node, layer }, 0);
  }
}
