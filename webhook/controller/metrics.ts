// The controller's metrics: phase per policy, merges, profile publications, node acknowledgements,
// self-healing actions, learning progress and the attack surface of each published profile.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { newRegistry } from '../../api/metrics.js';
import { PHASES, type AttackSurface, type Phase } from '../../api/policy.js';

type PolicyLabels = 'namespace' | 'policy';
type ContainerLabels = PolicyLabels | 'container';

export class ControllerMetrics {
  readonly registry: Registry;
  readonly policyPhase: Gauge<PolicyLabels | 'phase'>;
  readonly merges: Counter<'result'>;
  readonly mergeDuration: Histogram;
  readonly publications: Counter<PolicyLabels>;
  readonly nodeAcks: Counter<PolicyLabels>;
  readonly profileNodesInstalled: Gauge<ContainerLabels>;
  readonly profileNodesReady: Gauge<ContainerLabels>;
  readonly selfHealingActions: Counter<PolicyLabels | 'strategy'>;
  readonly learnedBehaviours: Gauge<PolicyLabels | 'kind'>;
  readonly stableWindows: Gauge<PolicyLabels>;
  readonly surfaceSyscalls: Gauge<ContainerLabels>;
  readonly surfaceRuntimeDefault: Gauge<ContainerLabels>;
  readonly surfaceDangerous: Gauge<ContainerLabels>;
  readonly surfacePorts: Gauge<ContainerLabels | 'direction'>;
  readonly surfaceRisk: Gauge<ContainerLabels>;
  readonly leader: Gauge;

  constructor(options: { registry?: Registry; processMetrics?: boolean } = {}) {
    const registers = [(this.registry = options.registry ?? newRegistry(options))];
    const policy = ['namespace', 'policy'] as const;
    const container = ['namespace', 'policy', 'container'] as const;
    this.policyPhase = new Gauge({
      name: 'pahlevan_controller_policy_phase',
      help: 'Phase of each PahlevanPolicy: 1 for the current phase, 0 for the others.',
      labelNames: [...policy, 'phase'],
      registers,
    });
    this.merges = new Counter({
      name: 'pahlevan_controller_merges_total',
      help: 'Merges of node observations into policy profiles, by result (changed, unchanged, error).',
      labelNames: ['result'],
      registers,
    });
    this.mergeDuration = new Histogram({
      name: 'pahlevan_controller_merge_duration_seconds',
      help: 'Time to merge all node observations of one policy.',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.publications = new Counter({
      name: 'pahlevan_controller_profile_publications_total',
      help: 'Profile versions published (new content hash), by policy.',
      labelNames: [...policy],
      registers,
    });
    this.nodeAcks = new Counter({
      name: 'pahlevan_controller_node_acks_total',
      help: 'Acknowledgements of installed profiles received from node agents, by policy.',
      labelNames: [...policy],
      registers,
    });
    this.profileNodesInstalled = new Gauge({
      name: 'pahlevan_controller_profile_nodes_installed',
      help: 'Nodes that have installed the current profile of a container.',
      labelNames: [...container],
      registers,
    });
    this.profileNodesReady = new Gauge({
      name: 'pahlevan_controller_profile_nodes_ready',
      help: 'Ready nodes that must install the current profile of a container before it is usable.',
      labelNames: [...container],
      registers,
    });
    this.selfHealingActions = new Counter({
      name: 'pahlevan_controller_self_healing_actions_total',
      help: 'Self-healing actions taken (Rollback, Relax, Relearn), by policy and strategy.',
      labelNames: [...policy, 'strategy'],
      registers,
    });
    this.learnedBehaviours = new Gauge({
      name: 'pahlevan_controller_learned_behaviours',
      help: 'Behaviours learned so far per policy (merged over all nodes), by kind (syscall, exec, file, port).',
      labelNames: [...policy, 'kind'],
      registers,
    });
    this.stableWindows = new Gauge({
      name: 'pahlevan_controller_learning_stable_windows',
      help: 'Consecutive learning windows with no new behaviour, per policy.',
      labelNames: [...policy],
      registers,
    });
    this.surfaceSyscalls = new Gauge({
      name: 'pahlevan_controller_attack_surface_syscalls_allowed',
      help: 'Syscalls the published profile allows, per container.',
      labelNames: [...container],
      registers,
    });
    this.surfaceRuntimeDefault = new Gauge({
      name: 'pahlevan_controller_attack_surface_runtime_default_syscalls',
      help: 'Syscalls the container runtime default profile allows on this architecture (the baseline).',
      labelNames: [...container],
      registers,
    });
    this.surfaceDangerous = new Gauge({
      name: 'pahlevan_controller_attack_surface_dangerous_syscalls',
      help: 'Dangerous syscalls (ptrace, mount, bpf, unshare, ...) the published profile still allows, per container.',
      labelNames: [...container],
      registers,
    });
    this.surfacePorts = new Gauge({
      name: 'pahlevan_controller_attack_surface_ports',
      help: 'Ports a container may use, by direction (listening, egress).',
      labelNames: [...container, 'direction'],
      registers,
    });
    this.surfaceRisk = new Gauge({
      name: 'pahlevan_controller_attack_surface_risk_score',
      help: 'Attack surface risk score, 0 (nothing reachable) to 100 (unconfined); formula in api/attack-surface.ts.',
      labelNames: [...container],
      registers,
    });
    this.leader = new Gauge({
      name: 'pahlevan_controller_leader',
      help: 'Whether this replica holds the controller lease (1) or not (0).',
      registers,
    });
  }

  /** Marks `phase` as the policy's current phase (the others 0), kube-state-metrics style. */
  setPhase(namespace: string, policy: string, phase: Phase): void {
    for (const p of PHASES) this.policyPhase.set({ namespace, policy, phase: p }, p === phase ? 1 : 0);
  }

  setAttackSurface(namespace: string, policy: string, surface: AttackSurface): void {
    const labels = { namespace, policy, container: surface.container };
    this.surfaceSyscalls.set(labels, surface.syscallsAllowed);
    this.surfaceRuntimeDefault.set(labels, surface.runtimeDefaultSyscalls);
    this.surfaceDangerous.set(labels, surface.dangerousAllowed.length);
    this.surfacePorts.set({ ...labels, direction: 'listening' }, surface.listeningPorts.length);
    this.surfacePorts.set({ ...labels, direction: 'egress' }, surface.egressPorts.length);
    this.surfaceRisk.set(labels, surface.riskScore);
  }

  /** Drops every series of a deleted policy. */
  async forgetPolicy(namespace: string, policy: string): Promise<void> {
    type Removable = {
      get(): Promise<{ values: { labels: Record<string, string | number> }[] }>;
      remove(labels: Record<string, string | number>): void;
    };
    for (const metric of [
      this.policyPhase,
      this.publications,
      this.nodeAcks,
      this.profileNodesInstalled,
      this.profileNodesReady,
      this.selfHealingActions,
      this.learnedBehaviours,
      this.stableWindows,
      this.surfaceSyscalls,
      this.surfaceRuntimeDefault,
      this.surfaceDangerous,
      this.surfacePorts,
      this.surfaceRisk,
    ] as unknown as Removable[]) {
      for (const { labels } of (await metric.get()).values)
        if (labels.namespace === namespace && labels.policy === policy) metric.remove(labels);
    }
  }
}
