// The agent in cluster mode (the DaemonSet): watches policies, profiles and the pods on its node; turns
// learner events into per-node observations; installs published profiles and acknowledges them;
// programs the enforcement layers. Decisions live in attribution.ts, observations.ts and profiles.ts;
// this file only wires them to the API server, the learner and the enforcer.
import type { KubeConfig, KubernetesListObject, KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { parsePolicy, layerMode, LAYERS, POLICY_PLURAL } from '../../api/policy.js';
import type { Layer, Mode, PahlevanPolicy } from '../../api/policy.js';
import { PROFILE_PLURAL, type PahlevanProfile, type ProfileContent } from '../../api/profile.js';
import type { ObservationSpec } from '../../api/observation.js';
import { canonicalJson } from '../../api/profile.js';
import { SECCOMP_SUBDIR } from '../../api/names.js';
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

/** What the agent needs from the learner (agent/learner.ts); adapters.ts maps the real one onto it. */
export interface LearnerPort {
  /** Follow this cgroup: report its first-seen behaviour from now on. */
  watch(cgroupId: bigint): Promise<void>;
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

/** The profile a policy's container runs under, and in which modes, given the policy's phase. */
export function enforcementFor(
  policy: PahlevanPolicy,
  container: string,
  profiles: Map<string, PahlevanProfile>,
): Omit<EnforcementTarget, 'namespace' | 'policy' | 'container'> | undefined {
  const phase = policy.status?.phase;
  if (!phase || phase === 'Learning' || phase === 'Failed') return undefined;
  const published = (policy.status?.profiles ?? []).filter(
    (p) => p.container === container && p.usable && !p.stale,
  );
  const current = published.at(-1);
  if (!current) return undefined;
  const object = profiles.get(`${policy.metadata.namespace}/${current.profileName}`);
  if (!object) return undefined;
  const modes = {} as Record<Layer, Mode | 'Off'>;
  for (const layer of LAYERS) {
    const mode = layerMode(policy.spec, layer);
    // After a rollback, or while waiting for the admin, everything is watched and nothing denied.
    modes[layer] = phase === 'Enforcing' || mode === 'Off' ? mode : 'Monitor';
  }
  const { seccomp, execs, files, ports } = object.spec;
  return {
    profileName: current.profileName,
    profile: { seccomp, execs, files, ports },
    modes,
    network: { allowDNS: policy.spec.network.allowDNS, allowLoopback: policy.spec.network.allowLoopback },
  };
}

/** Learning goes on while the policy learns (no status yet counts as learning). */
function isLearning(policy: PahlevanPolicy | undefined): boolean {
  const phase = policy?.status?.phase;
  return !!policy && (phase === undefined || phase === 'Learning');
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
  private readonly watched = new Set<string>();
  /** Container cgroups on this node that no pod reports yet. */
  private speculative = new Set<string>();
  private readonly applied = new Map<string, string>();
  private caches: WatchedCache<never>[] = [];
  private rescanTimer: NodeJS.Timeout | undefined;
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
    this.installer = new ProfileInstaller(opts.kubeletRoot);
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
    const policyCache = new WatchedCache<KubernetesObject>(
      kc,
      customObjectPath(POLICY_PLURAL),
      () =>
        this.objects.custom.listClusterCustomObject({
          group: 'pahlevan.io',
          version: 'v1alpha1',
          plural: POLICY_PLURAL,
        }) as Promise<KubernetesListObject<never>>,
      {
        onSync: (list) => this.onPolicies(list as unknown as PahlevanPolicy[]),
        onError: onError('PahlevanPolicies'),
      },
      { maxBackoffMs },
    );
    const profileCache = new WatchedCache<KubernetesObject>(
      kc,
      customObjectPath(PROFILE_PLURAL),
      () =>
        this.objects.custom.listClusterCustomObject({
          group: 'pahlevan.io',
          version: 'v1alpha1',
          plural: PROFILE_PLURAL,
        }) as Promise<KubernetesListObject<never>>,
      {
        onSync: (list) => this.onProfiles(list as unknown as PahlevanProfile[]),
        onError: onError('PahlevanProfiles'),
      },
      { maxBackoffMs },
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
        this.log.info({ layers }, 'enforcement layers probed');
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
    this.writer.start();
    await Promise.all(this.caches.map((c) => c.start()));
    this.scheduleRescan(this.opts.rescanIntervalMs ?? 2000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    if (this.profileTimer) clearTimeout(this.profileTimer);
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
        if (this.applied.delete(change.cgroupId))
          await this.opts.enforcer?.apply(BigInt(change.cgroupId), undefined);
      });
    } else {
      const pending = this.pending.get(change.cgroupId);
      if (pending) {
        this.pending.delete(change.cgroupId);
        this.onBehaviour(BigInt(change.cgroupId), pending.behaviours);
      }
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
    const desired = new Set<string>(this.speculative);
    for (const { cgroupId } of this.table.bindings()) {
      const who = this.table.resolve(cgroupId);
      const policy = who?.policy && this.policies.get(`${who.policy.namespace}/${who.policy.name}`);
      if (isLearning(policy)) desired.add(cgroupId);
    }
    for (const cgroupId of desired) {
      if (this.watched.has(cgroupId)) continue;
      this.watched.add(cgroupId);
      this.enqueue(cgroupId, async () => {
        const id = BigInt(cgroupId);
        await learner.watch(id);
        // What the kernel aggregated before this agent (re)started or before the binding existed.
        if (learner.snapshot && this.table.resolve(cgroupId)) {
          const behaviours = await learner.snapshot(id);
          if (behaviours.length) this.onBehaviour(id, behaviours);
        }
      });
    }
    for (const cgroupId of [...this.watched]) {
      if (desired.has(cgroupId)) continue;
      this.watched.delete(cgroupId);
      this.enqueue(cgroupId, () => learner.unwatch(BigInt(cgroupId)));
    }
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
    const target = policy && who ? enforcementFor(policy, who.containerName, this.profiles) : undefined;
    const targetKey = target ? canonicalJson({ n: target.profileName, m: target.modes }) : undefined;
    if (this.applied.get(cgroupId) === targetKey) return;
    const id = BigInt(cgroupId);
    if (target && who && policy) {
      this.applied.set(cgroupId, targetKey!);
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
      this.enqueue(cgroupId, () => enforcer.apply(id, undefined));
    }
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
    const who = this.table.resolve(cgroupId);
    if (!who) {
      this.holdPending(cgroupId, behaviours);
      return;
    }
    const source = this.source(who);
    const policy = who.policy && this.policies.get(`${who.policy.namespace}/${who.policy.name}`);
    if (!source || !isLearning(policy)) return;
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
    const who = this.table.resolve(cgroupIdIn);
    const source = who && this.source(who);
    if (!source) return;
    this.store.recordViolation(source, layer, what, count);
  }

  private scheduleProfiles(): void {
    if (this.profileTimer || this.stopped) return;
    this.profileTimer = setTimeout(() => {
      this.profileTimer = undefined;
      this.reconcileProfiles();
    }, 50);
  }

  /**
   * Installs every profile of an existing policy, removes files nothing references (only once the
   * policy, profile and pod caches have all loaded), and acknowledges what is installed per policy.
   */
  reconcileProfiles(): void {
    if (!this.policiesSynced || !this.profilesSynced || !this.podsSynced) return;
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
