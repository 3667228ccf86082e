// The agent in cluster mode (the DaemonSet): watches policies, profiles and the pods on its node; turns
// learner events into per-node observations; installs published profiles and acknowledges them;
// programs the enforcement layers. Decisions live in attribution.ts, observations.ts and profiles.ts;
// this file only wires them to the API server, the learner and the enforcer.
import { watch, type FSWatcher } from 'node:fs';
import type { KubeConfig, KubernetesListObject, KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { GROUP, parsePolicy, layerMode, LAYERS, POLICY_PLURAL, VERSION } from '../../api/policy.js';
import type { Layer, Mode, PahlevanPolicy, PublishedProfile } from '../../api/policy.js';
import { PROFILE_PLURAL, type PahlevanProfile, type ProfileContent } from '../../api/profile.js';
import type { ObservationSpec } from '../../api/observation.js';
import { canonicalJson } from '../../api/profile.js';
import { LEARNING_PROFILE_PATH, SECCOMP_SUBDIR } from '../../api/names.js';
import { learningProfileContent } from '../../api/attack-surface-data.js';
import {
  AttributionTable,
  CgroupScanner,
  normaliseCgroupId,
  syncBindings,
  type Attribution,
  type BindingChange,
} from './attribution.js';
import { ObservationStore, ObservationWriter, type Behaviour, type Source } from './observations.js';
import { ProfileInstaller, profileFileFromObject, type ProfileFile } from './profiles.js';
import { PahlevanObjects, WatchedCache, customObjectPath, errorMessage } from './kube.js';
import type { AgentMetrics } from '../metrics.js';

/** What the agent needs from the learner (agent/learner.ts); adapters.ts maps the real one onto it. */
export interface LearnerPort {
  /**
   * Follow this cgroup: report its first-seen behaviour from now on. With requireSeccomp a task counts only
   * once it runs under a seccomp filter, which keeps the runtime's setup out (bpf/LEARNER.md).
   */
  watch(cgroupId: bigint, options?: { requireSeccomp?: boolean }): Promise<void>;
  /** Stop following it and drop what the kernel aggregated for it. */
  unwatch(cgroupId: bigint): Promise<void>;
  /** Everything aggregated in the kernel for this cgroup so far (catches events lost or sent earlier). */
  snapshot?(cgroupId: bigint): Promise<Behaviour[]>;
  onBehaviour(listener: (cgroupId: bigint, behaviours: Behaviour[]) => void): void;
}

export interface EnforcementTarget {
  namespace: string;
  policy: string;
  container: string;
  profileName: string;
  profile: ProfileContent;
  modes: Record<Layer, Mode | 'Off'>;
  network: { allowDNS: boolean; allowLoopback: boolean };
}

/** What the agent needs from the enforcer (agent/enforcer.ts). */
export interface EnforcerPort {
  /** Which layers work on this node (found by loading, not by reading feature lists). */
  probe(): Promise<ObservationSpec['layers']>;
  /** Programs (or, with undefined, clears) the layers for one container cgroup. */
  apply(cgroupId: bigint, target: EnforcementTarget | undefined): Promise<void>;
  onViolation(listener: (cgroupId: bigint, layer: Layer, what: string, count: number) => void): void;
  /**
   * Exact cumulative violation counts of a container, from the kernel. When present, events only say
   * "look now" (the kernel sends one event per new kind of violation and counts the rest itself).
   */
  violationCounts?(cgroupId: bigint): Promise<{ layer: Layer; what: string; count: number }[]>;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface ClusterAgentOptions {
  node: string;
  kubeConfig: KubeConfig;
  kubeletRoot: string;
  stateDir: string;
  learner?: LearnerPort;
  enforcer?: EnforcerPort;
  scanner?: CgroupScanner;
  logger?: Logger;
  /** How often the cgroup tree is rescanned for new containers (pod events also trigger a scan). */
  rescanIntervalMs?: number;
  writeDebounceMs?: number;
  maxBackoffMs?: number;
  /** `<kubeletRoot>/seccomp` unless set. */
  seccompRoot?: string;
  /** Rescan as soon as a container cgroup appears (inotify on the cgroup tree); default true. */
  watchCgroups?: boolean;
  metrics?: AgentMetrics;
}

const silent: Logger = { info() {}, warn() {}, error() {}, debug() {} };

/** Behaviour of cgroups not yet attributed (the container ran before the kubelet reported its ID). */
interface PendingBehaviour {
  behaviours: Behaviour[];
  firstAt: number;
}
const PENDING_MAX_CGROUPS = 4096;
const PENDING_MAX_ITEMS = 2048;
const PENDING_TTL_MS = 5 * 60_000;
const MAX_SPECULATIVE = 1024;

/** Whether a published profile was learned from this image (`image` lists the images, comma-separated). */
function coversImage(profile: PublishedProfile, image: string | undefined): boolean {
  return !profile.image || !image || profile.image.split(',').includes(image);
}

/**
 * The profile a policy's container runs under, and in which modes, given the policy's phase. A container
 * whose image the profile was not learned from (drift), or whose profile is stale, keeps the previous
 * profile but only in Monitor mode until a new version is published: never broken, never unwatched.
 */
export function enforcementFor(
  policy: PahlevanPolicy,
  container: string,
  profiles: Map<string, PahlevanProfile>,
  image?: string,
): Omit<EnforcementTarget, 'namespace' | 'policy' | 'container'> | undefined {
  const phase = policy.status?.phase;
  if (!phase || phase === 'Learning' || phase === 'Failed') return undefined;
  const published = (policy.status?.profiles ?? []).filter((p) => p.container === container && p.usable);
  const current = published.filter((p) => !p.stale && coversImage(p, image)).at(-1) ?? published.at(-1);
  if (!current) return undefined;
  const drifted = !!current.stale || !coversImage(current, image);
  const object = profiles.get(`${policy.metadata.namespace}/${current.profileName}`);
  if (!object) return undefined;
  const modes = {} as Record<Layer, Mode | 'Off'>;
  for (const layer of LAYERS) {
    const mode = layerMode(policy.spec, layer);
    // After a rollback, while waiting for the admin, or after drift, everything is watched and nothing denied.
    modes[layer] = mode === 'Off' || (phase === 'Enforcing' && !drifted) ? mode : 'Monitor';
  }
  const { seccomp, execs, files, ports } = object.spec;
  return {
    profileName: current.profileName,
    profile: { seccomp, execs, files, ports },
    modes,
    network: { allowDNS: policy.spec.network.allowDNS, allowLoopback: policy.spec.network.allowLoopback },
  };
}

/**
 * Whether a container's behaviour is learned: while its policy learns (no status yet counts), and after
 * publication for containers with no current profile (a new container name, a new image, a stale profile):
 * the controller re-learns those per container.
 */
export function isLearning(policy: PahlevanPolicy | undefined, container?: string, image?: string): boolean {
  const phase = policy?.status?.phase;
  if (!policy || phase === 'Failed') return false;
  if (phase === undefined || phase === 'Learning') return true;
  if (container === undefined) return false;
  const current = (policy.status?.profiles ?? []).filter(
    (p) => p.container === container && !p.stale && coversImage(p, image),
  );
  return current.length === 0;
}

/**
 * Whether a pod's container runs under a seccomp filter (Localhost or RuntimeDefault, not privileged). One
 * without (admitted before its policy, privileged, or one the webhook leaves alone) is learned from the
 * moment it is attributed, ungated: the runtime's setup is over by then, but its own start-up is missed.
 */
export function runsUnderSeccompFilter(pod: V1Pod | undefined, containerName: string | undefined): boolean {
  const spec = pod?.spec;
  if (!spec || containerName === undefined) return true;
  const container = [
    ...(spec.containers ?? []),
    ...(spec.initContainers ?? []),
    ...(spec.ephemeralContainers ?? []),
  ].find((c) => c.name === containerName);
  if (!container) return true;
  if (container.securityContext?.privileged) return false;
  const type = (container.securityContext?.seccompProfile ?? spec.securityContext?.seccompProfile)?.type;
  return type === 'Localhost' || type === 'RuntimeDefault';
}

export class ClusterAgent {
  readonly table: AttributionTable;
  readonly store: ObservationStore;
  readonly writer: ObservationWriter;
  readonly installer: ProfileInstaller;
  readonly objects: PahlevanObjects;
  private readonly scanner: CgroupScanner;
  private readonly log: Logger;
  private readonly policies = new Map<string, PahlevanPolicy>();
  private readonly profiles = new Map<string, PahlevanProfile>();
  private pods: V1Pod[] = [];
  private readonly pending = new Map<string, PendingBehaviour>();
  /** Watched cgroups, and whether only what runs under a seccomp filter counts (requireSeccomp). */
  private readonly watched = new Map<string, boolean>();
  /** Container cgroups on this node that no pod reports yet. */
  private speculative = new Set<string>();
  private readonly applied = new Map<string, string>();
  private readonly lastCounts = new Map<string, Map<string, number>>();
  private readonly appliedModes = new Map<string, Record<Layer, Mode | 'Off'>>();
  private readonly lastWhat = new Map<string, string>();
  private readonly pollTimers = new Map<string, NodeJS.Timeout>();
  private caches: WatchedCache<never>[] = [];
  private rescanTimer: NodeJS.Timeout | undefined;
  private cgroupWatcher: FSWatcher | undefined;
  private quickRescan: NodeJS.Timeout | undefined;
  private profileTimer: NodeJS.Timeout | undefined;
  private policiesSynced = false;
  private profilesSynced = false;
  private podsSynced = false;
  private stopped = false;
  /** Serialises learner/enforcer calls so watch/unwatch/apply of one cgroup never reorder. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ClusterAgentOptions) {
    this.log = opts.logger ?? silent;
    this.scanner = opts.scanner ?? new CgroupScanner();
    this.table = new AttributionTable((change) => this.onBinding(change));
    this.store = new ObservationStore(opts.node, opts.stateDir);
    this.objects = new PahlevanObjects(opts.kubeConfig);
    this.writer = new ObservationWriter(this.store, this.objects.observationApi(), {
      debounceMs: opts.writeDebounceMs ?? 1000,
      maxBackoffMs: opts.maxBackoffMs ?? 30_000,
      onError: (err, attempt, retryInMs) =>
        this.log.warn(
          { err: errorMessage(err), attempt, retryInMs },
          'writing observations failed; will retry',
        ),
      onWritten: (key, name) => this.log.debug({ policy: key, name }, 'observations written'),
    });
    this.installer = new ProfileInstaller(opts.kubeletRoot, opts.seccompRoot);
    opts.learner?.onBehaviour((cgroupId, behaviours) => this.onBehaviour(cgroupId, behaviours));
    opts.enforcer?.onViolation((cgroupId, layer, what, count) =>
      this.onViolation(cgroupId, layer, what, count),
    );
  }

  async start(): Promise<void> {
    const kc = this.opts.kubeConfig;
    const maxBackoffMs = this.opts.maxBackoffMs ?? 10_000;
    const onError = (what: string) => (err: unknown, retryInMs: number) =>
      this.log.warn({ err: errorMessage(err), retryInMs }, `watching ${what} failed; will retry`);
    // One self-restarting list+watch cache per Pahlevan kind, cluster-wide.
    const customCache = <T>(plural: string, kind: string, onSync: (items: T[]) => void) =>
      new WatchedCache<KubernetesObject>(
        kc,
        customObjectPath(plural),
        () =>
          this.objects.custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural,
          }) as Promise<KubernetesListObject<never>>,
        { onSync: (list) => onSync(list as unknown as T[]), onError: onError(kind) },
        { maxBackoffMs },
      );
    const policyCache = customCache(POLICY_PLURAL, 'PahlevanPolicies', (items: PahlevanPolicy[]) =>
      this.onPolicies(items),
    );
    const profileCache = customCache(PROFILE_PLURAL, 'PahlevanProfiles', (items: PahlevanProfile[]) =>
      this.onProfiles(items),
    );
    const fieldSelector = `spec.nodeName=${this.opts.node}`;
    const podCache = new WatchedCache<V1Pod>(
      kc,
      '/api/v1/pods',
      () => this.objects.core.listPodForAllNamespaces({ fieldSelector }),
      { onSync: (list) => this.onPods(list), onError: onError('pods') },
      { fieldSelector, maxBackoffMs },
    );
    this.caches = [policyCache, profileCache, podCache] as unknown as WatchedCache<never>[];
    if (this.opts.enforcer) {
      try {
        const layers = await this.opts.enforcer.probe();
        this.store.setLayers(layers);
        this.opts.metrics?.setLayers(
          this.opts.node,
          layers.active,
          layers.missing.map((m) => m.layer),
        );
        this.log.info({ layers }, 'enforcement layers probed');
        for (const m of layers.missing)
          this.log.warn(m, `enforcement layer ${m.layer} is missing on this node`);
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'probing enforcement layers failed');
        this.store.setLayers({
          active: [],
          missing: LAYERS.map((layer) => ({ layer, reason: `probe failed: ${errorMessage(err)}` })),
        });
      }
    } else {
      this.store.setLayers({
        active: [],
        missing: LAYERS.map((layer) => ({ layer, reason: 'no enforcer in this agent build' })),
      });
    }
    this.installLearningProfile();
    this.writer.start();
    await Promise.all(this.caches.map((c) => c.start()));
    this.scheduleRescan(this.opts.rescanIntervalMs ?? 2000);
    if (this.opts.watchCgroups ?? true) this.watchCgroupTree();
  }

  /**
   * A new container cgroup triggers a rescan at once: the runtime creates the cgroup just before the
   * container's first instruction, so the periodic rescan alone would miss its start-up behaviour.
   */
  private watchCgroupTree(): void {
    try {
      this.cgroupWatcher = watch(this.scanner.cgroupRoot, { recursive: true }, (_event, name) => {
        const last =
          String(name ?? '')
            .split('/')
            .at(-1) ?? '';
        if (!/[0-9a-f]{64}/.test(last) || this.quickRescan) return;
        this.quickRescan = setTimeout(() => {
          this.quickRescan = undefined;
          this.rescan();
        }, 5);
      });
      this.cgroupWatcher.on('error', (err) => {
        this.log.warn({ err: err.message }, 'watching the cgroup tree failed; rescanning periodically only');
        this.cgroupWatcher?.close();
        this.cgroupWatcher = undefined;
      });
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot watch the cgroup tree; rescanning periodically only');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cgroupWatcher?.close();
    if (this.quickRescan) clearTimeout(this.quickRescan);
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    if (this.profileTimer) clearTimeout(this.profileTimer);
    for (const t of this.pollTimers.values()) clearTimeout(t);
    await Promise.all(this.caches.map((c) => c.stop()));
    this.writer.stop();
    await this.chain;
    this.store.persist();
  }

  /**
   * Rescans the cgroup tree now and waits until the learner/enforcer calls it caused are done. The
   * periodic rescan does the same; a runtime hook (or a test standing in for one) calls this between
   * creating a container's cgroup and starting it, so nothing it does escapes the learner.
   */
  async sync(): Promise<void> {
    this.rescan();
    await this.chain;
  }

  /** Writes pending observations now (tests, shutdown). */
  async flush(): Promise<void> {
    await this.writer.flush();
  }

  private scheduleRescan(intervalMs: number): void {
    if (this.stopped) return;
    this.rescanTimer = setTimeout(() => {
      this.rescan();
      for (const cgroupId of this.applied.keys()) this.schedulePoll(cgroupId);
      this.scheduleRescan(intervalMs);
    }, intervalMs);
    this.rescanTimer.unref?.();
  }

  /** Brings cgroup bindings (and the learner's watch list) in line with the filesystem. */
  rescan(): void {
    if (!this.podsSynced) return;
    try {
      const unknown = syncBindings(this.table, this.scanner.scan());
      this.speculative = new Set(unknown.slice(0, MAX_SPECULATIVE));
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'scanning cgroups failed');
    }
    this.reconcileWatches();
  }

  private onPolicies(list: PahlevanPolicy[]): void {
    const seen = new Set<string>();
    for (const raw of list) {
      const parsed = parsePolicy(raw);
      const key = `${raw.metadata?.namespace}/${raw.metadata?.name}`;
      if (!parsed.ok) {
        this.log.warn({ policy: key, errors: parsed.errors }, 'ignoring invalid PahlevanPolicy');
        continue;
      }
      seen.add(key);
      this.policies.set(key, parsed.policy);
      this.table.upsertPolicy(parsed.policy);
    }
    for (const [key, p] of [...this.policies]) {
      if (seen.has(key)) continue;
      this.policies.delete(key);
      this.table.deletePolicy(p.metadata.namespace!, p.metadata.name!);
      this.store.dropPolicy(p.metadata.namespace!, p.metadata.name!);
    }
    this.policiesSynced = true;
    this.refreshContainers();
    this.scheduleProfiles();
  }

  private onProfiles(list: PahlevanProfile[]): void {
    this.profiles.clear();
    for (const p of list) this.profiles.set(`${p.metadata.namespace}/${p.metadata.name}`, p);
    this.profilesSynced = true;
    this.refreshContainers();
    this.scheduleProfiles();
  }

  private onPods(list: V1Pod[]): void {
    this.pods = list.filter((p) => p.spec?.nodeName === this.opts.node);
    this.table.resetPods(this.pods);
    this.podsSynced = true;
    this.rescan();
    this.scheduleProfiles();
  }

  private onBinding(change: BindingChange): void {
    this.log.debug(change, 'cgroup binding');
    if (change.kind === 'unbound') {
      this.enqueue(change.cgroupId, async () => {
        await this.pollViolations(change.cgroupId, change.was);
        if (change.was?.policy) this.store.forgetInstance(change.was.policy, change.was.containerId);
        this.lastCounts.delete(change.cgroupId);
        for (const layer of LAYERS) this.lastWhat.delete(`${change.cgroupId}|${layer}`);
        this.appliedModes.delete(change.cgroupId);
        if (this.applied.delete(change.cgroupId))
          await this.opts.enforcer?.apply(BigInt(change.cgroupId), undefined);
        this.updateGauges();
      });
    } else {
      const pending = this.pending.get(change.cgroupId);
      this.pending.delete(change.cgroupId);
      // Report that this container (pod, image) runs, whatever the phase; then what it did before.
      this.onBehaviour(BigInt(change.cgroupId), pending?.behaviours ?? []);
      this.refreshContainer(change.cgroupId);
    }
    this.reconcileWatches();
  }

  private enqueue(cgroupId: string, work: () => Promise<void>): void {
    this.chain = this.chain.then(work).catch((err: unknown) => {
      this.log.error({ cgroupId, err: errorMessage(err) }, 'learner/enforcer call failed');
    });
  }

  /**
   * The learner follows every bound container of a learning policy, and (speculatively) every container
   * cgroup no pod reports yet: the kubelet posts a container's ID only after it started, and what it did
   * meanwhile must not be lost. Everything else is unwatched and forgotten.
   */
  private reconcileWatches(): void {
    const learner = this.opts.learner;
    if (!learner) return;
    // Only what runs under the seccomp filter counts (the webhook gives learning pods the learning profile),
    // which keeps the runtime's setup out. Not yet attributed containers are assumed to have one.
    const desired = new Map<string, boolean>([...this.speculative].map((id) => [id, true]));
    for (const { cgroupId } of this.table.bindings()) {
      const who = this.table.resolve(cgroupId);
      const policy = who?.policy && this.policies.get(`${who.policy.namespace}/${who.policy.name}`);
      if (isLearning(policy, who?.containerName, who?.image))
        desired.set(cgroupId, runsUnderSeccompFilter(this.podOf(who), who?.containerName));
    }
    for (const [cgroupId, requireSeccomp] of desired) {
      if (this.watched.get(cgroupId) === requireSeccomp) continue;
      this.watched.set(cgroupId, requireSeccomp);
      this.enqueue(cgroupId, async () => {
        const id = BigInt(cgroupId);
        await learner.watch(id, { requireSeccomp });
        // What the kernel aggregated before this agent (re)started or before the binding existed.
        if (learner.snapshot && this.table.resolve(cgroupId)) {
          const behaviours = await learner.snapshot(id);
          if (behaviours.length) this.onBehaviour(id, behaviours);
        }
      });
    }
    for (const cgroupId of [...this.watched.keys()]) {
      if (desired.has(cgroupId)) continue;
      this.watched.delete(cgroupId);
      this.enqueue(cgroupId, () => learner.unwatch(BigInt(cgroupId)));
    }
    this.updateGauges();
  }

  private podOf(who: Attribution | undefined): V1Pod | undefined {
    return who && this.pods.find((p) => p.metadata?.uid === who.podUid);
  }

  private updateGauges(): void {
    const m = this.opts.metrics;
    if (!m) return;
    m.containersWatched.set({ mode: 'learning' }, this.watched.size);
    m.containersWatched.set({ mode: 'enforcing' }, this.applied.size);
  }

  /** Enforcement state of every bound container, after policy/profile changes. */
  private refreshContainers(): void {
    for (const { cgroupId } of this.table.bindings()) this.refreshContainer(cgroupId);
    this.reconcileWatches();
  }

  private refreshContainer(cgroupId: string): void {
    const enforcer = this.opts.enforcer;
    if (!enforcer) return;
    const who = this.table.resolve(cgroupId);
    const policy = who?.policy && this.policies.get(`${who.policy.namespace}/${who.policy.name}`);
    const target =
      policy && who ? enforcementFor(policy, who.containerName, this.profiles, who.image) : undefined;
    const targetKey = target ? canonicalJson({ n: target.profileName, m: target.modes }) : undefined;
    if (this.applied.get(cgroupId) === targetKey) return;
    const id = BigInt(cgroupId);
    if (target && who && policy) {
      this.applied.set(cgroupId, targetKey!);
      this.appliedModes.set(cgroupId, target.modes);
      this.enqueue(cgroupId, () =>
        enforcer.apply(id, {
          namespace: who.namespace,
          policy: policy.metadata.name!,
          container: who.containerName,
          ...target,
        }),
      );
    } else if (this.applied.has(cgroupId)) {
      this.applied.delete(cgroupId);
      this.appliedModes.delete(cgroupId);
      this.enqueue(cgroupId, () => enforcer.apply(id, undefined));
    }
    this.updateGauges();
  }

  private source(who: Attribution): Source | undefined {
    if (!who.policy) return undefined;
    return {
      policy: who.policy,
      containerName: who.containerName,
      containerId: who.containerId,
      podName: who.podName,
      ...(who.image ? { image: who.image } : {}),
    };
  }

  /** Learner events: attribute, then record; unknown cgroups wait for the kubelet to report the container. */
  onBehaviour(cgroupIdIn: bigint, behaviours: Behaviour[]): void {
    const cgroupId = normaliseCgroupId(cgroupIdIn);
    for (const b of behaviours) this.opts.metrics?.firstSeenEvents.inc({ kind: b.kind });
    const who = this.table.resolve(cgroupId);
    if (!who) {
      this.holdPending(cgroupId, behaviours);
      return;
    }
    const source = this.source(who);
    const policy = who.policy && this.policies.get(`${who.policy.namespace}/${who.policy.name}`);
    if (!source) return;
    // What ran is always reported (images, pods: the controller sees drift); behaviour only while learning.
    if (!isLearning(policy, who.containerName, who.image)) {
      this.store.record(source, []);
      return;
    }
    if (this.store.record(source, behaviours))
      this.log.debug(
        { cgroupId, container: who.containerName, pod: who.podName, n: behaviours.length },
        'learned',
      );
  }

  private holdPending(cgroupId: string, behaviours: Behaviour[]): void {
    const now = Date.now();
    for (const [id, p] of this.pending) if (now - p.firstAt > PENDING_TTL_MS) this.pending.delete(id);
    let entry = this.pending.get(cgroupId);
    if (!entry) {
      if (this.pending.size >= PENDING_MAX_CGROUPS) return;
      entry = { behaviours: [], firstAt: now };
      this.pending.set(cgroupId, entry);
    }
    for (const b of behaviours) if (entry.behaviours.length < PENDING_MAX_ITEMS) entry.behaviours.push(b);
  }

  private onViolation(cgroupIdIn: bigint, layer: Layer, what: string, count: number): void {
    const cgroupId = normaliseCgroupId(cgroupIdIn);
    if (this.opts.enforcer?.violationCounts) {
      this.lastWhat.set(`${cgroupId}|${layer}`, what);
      this.schedulePoll(cgroupId);
      return;
    }
    const who = this.table.resolve(cgroupId);
    const source = who && this.source(who);
    if (!source) return;
    this.recordViolation(cgroupId, source, layer, what, count);
  }

  private recordViolation(cgroupId: string, source: Source, layer: Layer, what: string, count: number): void {
    this.store.recordViolation(source, layer, what, count);
    const mode = this.appliedModes.get(cgroupId)?.[layer];
    this.opts.metrics?.violation(
      {
        namespace: source.policy.namespace,
        policy: source.policy.name,
        container: source.containerName,
        layer,
        action: mode === 'Enforce' ? 'deny' : mode === 'Alert' ? 'alert' : 'log',
      },
      count,
    );
  }

  private schedulePoll(cgroupId: string): void {
    if (this.pollTimers.has(cgroupId) || this.stopped) return;
    this.pollTimers.set(
      cgroupId,
      setTimeout(() => {
        this.pollTimers.delete(cgroupId);
        this.enqueue(cgroupId, () => this.pollViolations(cgroupId));
      }, 100),
    );
  }

  /** Records what the kernel counted since the last poll (counts are cumulative per container). */
  private async pollViolations(cgroupId: string, who = this.table.resolve(cgroupId)): Promise<void> {
    const enforcer = this.opts.enforcer;
    if (!enforcer?.violationCounts || !this.applied.has(cgroupId)) return;
    const source = who && this.source(who);
    const counts = await enforcer.violationCounts(BigInt(cgroupId));
    let last = this.lastCounts.get(cgroupId);
    if (!last) this.lastCounts.set(cgroupId, (last = new Map()));
    for (const c of counts) {
      const key = `${c.layer}|${c.what}`;
      const delta = c.count - (last.get(key) ?? 0);
      last.set(key, c.count);
      if (delta <= 0 || !source) continue;
      // Layers whose counters have no detail are named after their latest event.
      const what = c.what === '*' ? (this.lastWhat.get(`${cgroupId}|${c.layer}`) ?? c.layer) : c.what;
      this.recordViolation(cgroupId, source, c.layer, what, delta);
    }
  }

  private scheduleProfiles(): void {
    if (this.profileTimer || this.stopped) return;
    this.profileTimer = setTimeout(() => {
      this.profileTimer = undefined;
      this.reconcileProfiles();
    }, 50);
  }

  /**
   * The learning profile (api/names.ts) every learning pod references: written at start and put back at
   * every reconcile (kept identical files are not rewritten), since a missing file means CreateContainerError.
   */
  private installLearningProfile(): void {
    try {
      this.installer.installFixed(LEARNING_PROFILE_PATH, learningProfileContent());
    } catch (err) {
      this.log.error(
        { path: LEARNING_PROFILE_PATH, err: errorMessage(err) },
        'installing the learning profile failed',
      );
    }
  }

  /**
   * Installs every profile of an existing policy, removes files nothing references (only once the
   * policy, profile and pod caches have all loaded), and acknowledges what is installed per policy.
   */
  reconcileProfiles(): void {
    if (!this.policiesSynced || !this.profilesSynced || !this.podsSynced) return;
    this.installLearningProfile();
    const wanted: ProfileFile[] = [];
    const profileNameOf = new Map<string, string>();
    for (const [key, object] of this.profiles) {
      const namespace = object.metadata.namespace ?? 'default';
      if (!this.policies.has(`${namespace}/${object.spec?.policy}`)) continue;
      try {
        const file = profileFileFromObject(object);
        wanted.push(file);
        profileNameOf.set(file.hash, object.metadata.name ?? key);
      } catch (err) {
        this.log.error({ profile: key, err: errorMessage(err) }, 'refusing PahlevanProfile');
      }
    }
    const inUse = this.pods.flatMap((pod) =>
      [
        pod.spec?.securityContext?.seccompProfile,
        ...(pod.spec?.containers ?? []).map((c) => c.securityContext?.seccompProfile),
        ...(pod.spec?.initContainers ?? []).map((c) => c.securityContext?.seccompProfile),
      ]
        .filter((p) => p?.type === 'Localhost' && p.localhostProfile?.startsWith(`${SECCOMP_SUBDIR}/`))
        .map((p) => p!.localhostProfile!),
    );
    const result = this.installer.reconcile(wanted, inUse);
    this.opts.metrics?.profilesInstalled.set(this.installer.listInstalled().length);
    for (const f of result.failed) this.log.error(f, 'installing profile failed');
    if (result.removed.length) this.log.info({ removed: result.removed }, 'removed unreferenced profiles');
    const installed = new Set(result.installed);
    for (const [key, policy] of this.policies) {
      const [namespace, name] = key.split('/') as [string, string];
      const acks = wanted
        .filter((f) => f.namespace === namespace && f.policy === name && installed.has(f.hash))
        .map((f) => ({ hash: f.hash, profileName: profileNameOf.get(f.hash)! }));
      // Only policies this node has something to say about get an object: acks or observations.
      if (acks.length === 0 && !this.store.policyKeys().includes(key)) continue;
      this.store.setInstalled(
        { namespace, name, ...(policy.metadata.uid ? { uid: policy.metadata.uid } : {}) },
        acks,
      );
    }
  }
}
