// The controller shell: informers over policies, node observations, profiles and nodes; one leader (Lease)
// reconciles each policy: merge (merge.ts) -> lifecycle (lifecycle.ts) -> PahlevanProfile objects (immutable,
// content-hashed names) -> policy status through the status subresource -> core/v1 Events. All state lives in
// the API (observations, profiles, status), so a new leader continues where the last one stopped.
import { hostname } from 'node:os';
import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
  type V1Node,
} from '@kubernetes/client-node';
import pino, { type Logger } from 'pino';
import {
  API_VERSION,
  GROUP,
  POLICY_KIND,
  POLICY_PLURAL,
  VERSION,
  PahlevanPolicy,
  formatIssue,
} from '../../api/policy.js';
import type { PolicyStatus } from '../../api/policy.js';
import { LABEL_POLICY, localhostProfilePath } from '../../api/names.js';
import { OBSERVATION_PLURAL, type ObservationSpec } from '../../api/observation.js';
import {
  LABEL_CONTAINER,
  PROFILE_KIND,
  PROFILE_PLURAL,
  buildProfileSpec,
  canonicalJson,
  profileObjectName,
  type PahlevanProfile,
} from '../../api/profile.js';
import {
  allowancesFromDenied,
  allowancesOf,
  mergeObservations,
  syscallCoverage,
  unionAllowances,
  type ExtraAllowances,
  type MergedPolicy,
} from './merge.js';
import {
  ANNOTATION_END_LEARNING,
  endLearningRequested,
  reconcilePolicy,
  type DesiredProfile,
  type LifecycleEvent,
} from './lifecycle.js';
import { LeaderElector } from './leader.js';
import type { ControllerMetrics } from './metrics.js';
import { attackSurfaceOf, loadSurfaceReference } from '../../api/attack-surface-data.js';
import { toStatus } from '../../api/attack-surface.js';
import { parseDurationMs } from '../../api/policy.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export interface ControllerOptions {
  kubeConfig: KubeConfig;
  /** Watch one namespace; all namespaces when undefined. */
  namespace?: string;
  identity?: string;
  leaseNamespace?: string;
  leaseName?: string;
  leaseDurationSeconds?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Every policy is reconciled at least this often (stability windows advance with time). */
  resyncMs?: number;
  /** Changes are batched for this long before a reconcile. */
  debounceMs?: number;
  logger?: Logger;
  /** Metrics to update (the webhook process passes the registry it serves on /metrics). */
  metrics?: ControllerMetrics;
  now?: () => number;
}

type Obj = KubernetesObject & { spec?: unknown; status?: unknown };
type RawPolicy = Obj & { spec?: unknown; status?: PolicyStatus };
type RawObservation = Obj & { spec?: ObservationSpec };

interface ViolationSample {
  atMs: number;
  phase: string | undefined;
  byNode: Map<string, { startedAt?: string; total: number }>;
}

function codeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The structural minimum of an observation; anything else is skipped with a warning, never a crash. */
function usableObservation(spec: unknown): spec is ObservationSpec {
  const s = spec as ObservationSpec | undefined;
  return (
    !!s &&
    typeof s.node === 'string' &&
    typeof s.policy === 'string' &&
    Array.isArray(s.containers) &&
    s.containers.every(
      (c) =>
        c &&
        typeof c.name === 'string' &&
        typeof c.syscalls === 'object' &&
        c.syscalls !== null &&
        typeof c.execs === 'object' &&
        c.execs !== null &&
        typeof c.files === 'object' &&
        c.files !== null &&
        Array.isArray(c.ports) &&
        Array.isArray(c.images) &&
        Array.isArray(c.pods),
    )
  );
}

export class Controller {
  readonly identity: string;
  private readonly log: Logger;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly now: () => number;
  private readonly elector: LeaderElector;
  private informers: (Informer<Obj> & ObjectCache<Obj>)[] = [];
  private policies!: Informer<RawPolicy> & ObjectCache<RawPolicy>;
  private observations!: Informer<RawObservation> & ObjectCache<RawObservation>;
  private profiles!: Informer<Obj> & ObjectCache<Obj>;
  private nodes!: Informer<V1Node> & ObjectCache<V1Node>;
  private resyncTimer?: NodeJS.Timeout;
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  private readonly samples = new Map<string, ViolationSample[]>();
  private stopped = false;
  /** Reconciles done since start (tests wait on it). */
  reconciles = 0;

  constructor(private readonly options: ControllerOptions) {
    this.identity = options.identity ?? `${hostname()}-${process.pid}`;
    this.log =
      options.logger ?? pino({ name: 'pahlevan-controller', level: process.env.LOG_LEVEL ?? 'info' });
    this.custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.now = options.now ?? Date.now;
    this.elector = new LeaderElector({
      kubeConfig: options.kubeConfig,
      namespace: options.leaseNamespace ?? 'pahlevan-system',
      name: options.leaseName ?? 'pahlevan-controller',
      identity: this.identity,
      leaseDurationSeconds: options.leaseDurationSeconds,
      renewDeadlineMs: options.renewDeadlineMs,
      retryPeriodMs: options.retryPeriodMs,
      now: this.now,
      onStartedLeading: () => {
        this.log.info({ identity: this.identity }, 'became leader');
        this.options.metrics?.leader.set(1);
        this.enqueueAll();
      },
      onStoppedLeading: () => {
        this.log.warn({ identity: this.identity }, 'stopped leading');
        this.options.metrics?.leader.set(0);
      },
      onError: (err) => this.log.warn({ err: String(err) }, 'leader election round failed'),
    });
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  async start(): Promise<void> {
    const ns = this.options.namespace;
    const crdPath = (plural: string) =>
      ns ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}` : `/apis/${GROUP}/${VERSION}/${plural}`;
    const listCustom = (plural: string) => () =>
      (ns
        ? this.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural })
        : this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as never;
    this.policies = this.informer<RawPolicy>(crdPath(POLICY_PLURAL), listCustom(POLICY_PLURAL), (p) =>
      this.enqueue(p.metadata?.namespace ?? '', p.metadata?.name ?? ''),
    );
    this.observations = this.informer<RawObservation>(
      crdPath(OBSERVATION_PLURAL),
      listCustom(OBSERVATION_PLURAL),
      (o) => {
        if (o.spec && typeof o.spec.policy === 'string')
          this.enqueue(o.metadata?.namespace ?? '', o.spec.policy);
      },
    );
    this.profiles = this.informer<Obj>(crdPath(PROFILE_PLURAL), listCustom(PROFILE_PLURAL), () => {});
    this.nodes = this.informer<V1Node>(
      '/api/v1/nodes',
      () => this.core.listNode() as never,
      () => this.enqueueAll(),
    );
    await Promise.all(this.informers.map((i) => i.start()));
    this.elector.start();
    const resyncMs = this.options.resyncMs ?? 5_000;
    this.resyncTimer = setInterval(() => this.enqueueAll(), resyncMs);
  }

  async stop(release = true): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
    await Promise.allSettled([...this.running.values()]);
    await this.elector.stop(release);
    await Promise.all(this.informers.map((i) => i.stop()));
  }

  private informer<T extends KubernetesObject>(
    path: string,
    list: () => Promise<never>,
    onChange: (obj: T) => void,
  ): Informer<T> & ObjectCache<T> {
    const inf = makeInformer<T>(this.options.kubeConfig, path, list);
    inf.on('add', onChange);
    inf.on('update', onChange);
    inf.on('delete', onChange);
    // A list or watch failure ends the informer: restart it with back-off until the API answers again.
    let backoffMs = 500;
    inf.on('error', (err) => {
      if (this.stopped) return;
      this.log.warn({ path, err: String(err) }, 'informer failed, restarting');
      setTimeout(() => {
        if (!this.stopped) void inf.start().then(() => (backoffMs = 500));
      }, backoffMs);
      backoffMs = Math.min(backoffMs * 2, 30_000);
    });
    inf.on('connect', () => {});
    this.informers.push(inf as unknown as Informer<Obj> & ObjectCache<Obj>);
    return inf;
  }

  private enqueueAll(): void {
    for (const p of this.policies?.list() ?? [])
      this.enqueue(p.metadata?.namespace ?? '', p.metadata?.name ?? '');
  }

  private enqueue(namespace: string, name: string): void {
    if (this.stopped || !name) return;
    const key = `${namespace}/${name}`;
    if (this.pending.has(key)) return;
    this.pending.set(
      key,
      setTimeout(() => {
        this.pending.delete(key);
        void this.runReconcile(key);
      }, this.options.debounceMs ?? 100),
    );
  }

  /** One reconcile per policy at a time; a change during a run schedules one more. */
  private async runReconcile(key: string): Promise<void> {
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    const [namespace, name] = key.split('/') as [string, string];
    const run = this.reconcile(namespace, name).catch((err: unknown) =>
      this.log.error(
        { policy: key, err: err instanceof Error ? err.stack : String(err) },
        'reconcile failed',
      ),
    );
    this.running.set(key, run);
    await run;
    this.running.delete(key);
    if (this.dirty.delete(key)) this.enqueue(namespace, name);
  }

  /** Reconciles one policy now (when leading). Exposed for tests. */
  async reconcile(namespace: string, name: string): Promise<void> {
    if (!this.elector.isLeader || this.stopped) return;
    const raw = this.policies.get(name, namespace);
    if (!raw) {
      this.samples.delete(`${namespace}/${name}`);
      await this.options.metrics?.forgetPolicy(namespace, name);
      return;
    }
    this.reconciles++;
    const parsed = PahlevanPolicy.safeParse(raw);
    if (!parsed.success) {
      await this.writeStatus(
        raw,
        {
          ...(raw.status ?? {}),
          phase: 'Failed',
          observedGeneration: raw.metadata?.generation,
          conditions: [
            {
              type: 'Valid',
              status: 'False',
              reason: 'InvalidSpec',
              message: parsed.error.issues.map(formatIssue).join('; '),
              lastTransitionTime: new Date(this.now()).toISOString(),
              observedGeneration: raw.metadata?.generation,
            },
          ],
        },
        [
          {
            type: 'Warning',
            reason: 'InvalidSpec',
            message: parsed.error.issues.map(formatIssue).join('; '),
          },
        ],
      );
      return;
    }
    const policy = parsed.data;
    const nowMs = this.now();
    const status = policy.status;

    const observations: ObservationSpec[] = [];
    for (const o of this.observations.list(namespace)) {
      if ((o.spec as { policy?: unknown } | undefined)?.policy !== name) continue;
      if (usableObservation(o.spec)) observations.push(o.spec);
      else this.log.warn({ observation: o.metadata?.name }, 'skipping a malformed observation');
    }

    // Published versions are carried over into the next one (a Relax or explicit allow is never lost); a
    // policy learning afresh starts from what it sees.
    const profileObjects = new Map(
      this.profiles
        .list(namespace)
        .filter((p) => (p.spec as { policy?: string } | undefined)?.policy === name)
        .map((p) => [p.metadata!.name!, p as unknown as PahlevanProfile]),
    );
    const extras: Record<string, ExtraAllowances> = {};
    if (status?.phase && status.phase !== 'Learning')
      for (const p of status.profiles ?? []) {
        const obj = profileObjects.get(p.profileName);
        if (obj) extras[p.container] = unionAllowances(extras[p.container] ?? {}, allowancesOf(obj.spec));
      }
    const mergeStart = process.hrtime.bigint();
    const merged = mergeObservations(policy.spec, observations, extras);
    this.options.metrics?.mergeDuration.observe(Number(process.hrtime.bigint() - mergeStart) / 1e9);
    const containers = merged.containers.filter((c) => {
      const ok = DNS_LABEL.test(c.container) && c.container.length <= 63;
      if (!ok) this.log.warn({ container: c.container }, 'container name is not a DNS label: not profiled');
      return ok;
    });
    const runtimeDefault = this.runtimeDefault();
    const desired = (m: MergedPolicy): DesiredProfile[] =>
      m.containers
        .filter((c) => containers.some((k) => k.container === c.container))
        .map((c) => {
          const allowed = c.content.seccomp.syscalls.flatMap((r) =>
            r.action === 'SCMP_ACT_ALLOW' ? r.names : [],
          );
          return {
            container: c.container,
            hash: c.hash,
            images: c.images,
            syscalls: allowed.length,
            profileName: profileObjectName(name, c.container, c.hash),
            localhostProfile: localhostProfilePath(namespace, name, c.container, c.hash),
            ...(runtimeDefault ? { withinRuntimeDefault: allowed.every((s) => runtimeDefault.has(s)) } : {}),
          };
        });

    const inWindow = this.violationsInWindow(
      `${namespace}/${name}`,
      merged,
      nowMs,
      parseDurationMs(policy.spec.selfHealing.window),
      status?.phase,
    );
    let relaxedMerged: MergedPolicy | undefined;
    if (policy.spec.selfHealing.strategy === 'Relax' && inWindow >= policy.spec.selfHealing.threshold) {
      const relaxExtras: Record<string, ExtraAllowances> = {};
      for (const c of merged.containers)
        relaxExtras[c.container] = unionAllowances(
          extras[c.container] ?? {},
          allowancesFromDenied(merged.denied, c.container),
        );
      relaxedMerged = mergeObservations(policy.spec, observations, relaxExtras);
    }

    const readyNodes = this.nodes
      .list()
      .filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      .map((n) => n.metadata!.name!)
      .sort();
    const byLayer: Record<string, number> = {};
    let total = 0;
    for (const n of merged.nodes) {
      total += n.violationsTotal;
      for (const [layer, count] of Object.entries(n.violationsByLayer))
        byLayer[layer] = (byLayer[layer] ?? 0) + count;
    }
    const result = reconcilePolicy({
      nowMs,
      generation: policy.metadata.generation ?? 1,
      spec: policy.spec,
      status,
      endLearningRequested: endLearningRequested(
        policy.metadata.annotations?.[ANNOTATION_END_LEARNING],
        status?.learning?.startedAt,
      ),
      merged: {
        containers: desired(merged),
        podsObserved: merged.podsObserved,
        nodesReporting: merged.nodes.length,
        totals: merged.totals,
      },
      ...(relaxedMerged ? { relaxed: desired(relaxedMerged) } : {}),
      readyNodes,
      coveredImages: new Map(
        [...profileObjects].map(([objectName, p]) => [
          objectName,
          p.spec.images ?? (p.spec.image ? [p.spec.image] : []),
        ]),
      ),
      installedByNode: new Map(merged.nodes.map((n) => [n.node, n.installed])),
      nodeLayers: merged.nodes.map((n) => ({ node: n.node, active: n.active, missing: n.missing })),
      violations: { inWindow, total, byLayer, denied: merged.denied },
    });

    // Profiles first: the status may only name objects that exist.
    const source = result.action === 'Relax' && relaxedMerged ? relaxedMerged : merged;
    for (const container of result.publish) {
      const c = source.containers.find((x) => x.container === container)!;
      if (!result.status.profiles?.some((p) => p.hash === c.hash)) continue;
      await this.publishProfile(raw, namespace, name, c);
    }
    result.status.attackSurface = this.attackSurface(policy.spec, source, result.status);
    const written = await this.writeStatus(raw, result.status, result.events);
    if (written) await this.deleteUnreferencedProfiles(namespace, name, result.status, profileObjects);
    this.updateMetrics(
      namespace,
      name,
      raw.status,
      result.status,
      result.publish.length,
      result.action,
      written,
    );
  }

  private runtimeDefaultSet: ReadonlySet<string> | null | undefined;
  /** The runtime default's syscalls (api/reference/), or null when the reference data cannot be read. */
  private runtimeDefault(): ReadonlySet<string> | null {
    if (this.runtimeDefaultSet === undefined) {
      try {
        this.runtimeDefaultSet = loadSurfaceReference().runtimeDefault;
      } catch (err) {
        this.log.warn(
          { err: String(err) },
          'runtime default reference unavailable: withinRuntimeDefault not set',
        );
        this.runtimeDefaultSet = null;
      }
    }
    return this.runtimeDefaultSet;
  }

  /** The attack surface of each container's current profile content (what is or will be enforced). */
  private attackSurface(
    spec: PahlevanPolicy['spec'],
    merged: MergedPolicy,
    status: PolicyStatus,
  ): PolicyStatus['attackSurface'] {
    if (!this.runtimeDefault()) return undefined;
    const out = [];
    for (const c of merged.containers) {
      if (!status.profiles?.some((p) => p.container === c.container)) continue;
      const report = attackSurfaceOf(
        c.container,
        c.content.seccomp,
        {
          execs: c.content.execs,
          files: c.content.files,
          listening: c.content.ports
            .filter((p) => p.direction === 'listen')
            .map((p) => ({
              protocol: p.protocol === 'TCP' ? ('tcp' as const) : ('udp' as const),
              port: p.port,
            })),
          egress: c.content.ports
            .filter((p) => p.direction === 'egress' && !p.endPort)
            .map((p) => ({
              protocol: p.protocol === 'TCP' ? ('tcp' as const) : ('udp' as const),
              port: p.port,
            })),
        },
        spec,
      );
      out.push(toStatus(report));
    }
    return out.length > 0 ? out : undefined;
  }

  private updateMetrics(
    namespace: string,
    name: string,
    before: PolicyStatus | undefined,
    after: PolicyStatus,
    published: number,
    action: string | undefined,
    written: boolean,
  ): void {
    const m = this.options.metrics;
    if (!m) return;
    m.merges.inc({
      result:
        canonicalJson(after.learning ?? {}) === canonicalJson(before?.learning ?? {})
          ? 'unchanged'
          : 'changed',
    });
    if (!written) return;
    if (after.phase) m.setPhase(namespace, name, after.phase);
    if (published > 0) m.publications.inc({ namespace, policy: name }, published);
    if (action) m.selfHealingActions.inc({ namespace, policy: name, strategy: action });
    const l = after.learning;
    if (l) {
      for (const [kind, value] of [
        ['syscall', l.syscalls],
        ['exec', l.execs],
        ['file', l.files],
        ['port', l.ports],
      ] as const)
        m.learnedBehaviours.set({ namespace, policy: name, kind }, value ?? 0);
      m.stableWindows.set({ namespace, policy: name }, l.stableWindows ?? 0);
    }
    const acksBefore = (before?.profiles ?? []).reduce((n, p) => n + p.nodesInstalled, 0);
    const acksAfter = (after.profiles ?? []).reduce((n, p) => n + p.nodesInstalled, 0);
    if (acksAfter > acksBefore) m.nodeAcks.inc({ namespace, policy: name }, acksAfter - acksBefore);
    for (const p of after.profiles ?? []) {
      m.profileNodesInstalled.set({ namespace, policy: name, container: p.container }, p.nodesInstalled);
      m.profileNodesReady.set({ namespace, policy: name, container: p.container }, p.nodesReady);
    }
    for (const s of after.attackSurface ?? []) m.setAttackSurface(namespace, name, s);
  }

  /** Sum over nodes of the violations counted during the last window (an agent restart resets its counter). */
  private violationsInWindow(
    key: string,
    merged: MergedPolicy,
    nowMs: number,
    windowMs: number,
    phase: string | undefined,
  ): number {
    const sample: ViolationSample = {
      atMs: nowMs,
      phase,
      byNode: new Map(
        merged.nodes.map((n) => [n.node, { startedAt: n.agentStartedAt, total: n.violationsTotal }]),
      ),
    };
    // Counted within one phase only: violations from before a promotion or a resume do not count.
    const samples = (this.samples.get(key) ?? []).filter(
      (s) => nowMs - s.atMs <= windowMs && s.phase === phase,
    );
    const base = samples[0];
    samples.push(sample);
    this.samples.set(key, samples);
    if (!base) return 0;
    let sum = 0;
    for (const [node, cur] of sample.byNode) {
      const old = base.byNode.get(node);
      if (!old || old.startedAt !== cur.startedAt || cur.total < old.total) sum += old ? cur.total : 0;
      else sum += cur.total - old.total;
    }
    return sum;
  }

  private async publishProfile(
    policy: RawPolicy,
    namespace: string,
    name: string,
    c: MergedPolicy['containers'][number],
  ): Promise<void> {
    const spec = buildProfileSpec(namespace, name, c.container, c.content, {
      learnedFrom: { nodes: c.nodes, pods: c.pods },
      coverage: syscallCoverage(c),
    });
    const objectName = profileObjectName(name, c.container, spec.hash);
    const body: PahlevanProfile = {
      apiVersion: API_VERSION,
      kind: PROFILE_KIND,
      metadata: {
        name: objectName,
        namespace,
        labels: { [LABEL_POLICY]: name, [LABEL_CONTAINER]: c.container },
        ownerReferences: [
          { apiVersion: API_VERSION, kind: POLICY_KIND, name, uid: policy.metadata!.uid!, controller: true },
        ],
      },
      spec,
    };
    try {
      await this.custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PROFILE_PLURAL,
        body,
      });
      this.log.info({ profile: objectName }, 'published profile');
    } catch (err) {
      if (codeOf(err) !== 409) throw err;
      // Immutable and content-addressed: an existing object with this name must hold the same content.
      const existing = (await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PROFILE_PLURAL,
        name: objectName,
      })) as PahlevanProfile;
      if (existing.spec?.hash !== spec.hash)
        throw new Error(`profile ${objectName} exists with a different hash ${existing.spec?.hash}`);
    }
  }

  /** Writes the status (when it changed) and then the Events; false when the write lost a race. */
  private async writeStatus(
    raw: RawPolicy,
    status: PolicyStatus,
    events: LifecycleEvent[],
  ): Promise<boolean> {
    const namespace = raw.metadata!.namespace!;
    const name = raw.metadata!.name!;
    if (canonicalJson(status) !== canonicalJson(raw.status ?? {})) {
      try {
        await this.custom.replaceNamespacedCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: POLICY_PLURAL,
          name,
          body: { ...raw, status },
        });
      } catch (err) {
        // 409: the policy changed since the informer saw it; the watch event brings a new reconcile. Events
        // are not written, so a retried decision does not duplicate them.
        if (codeOf(err) === 409 || codeOf(err) === 404) {
          this.dirty.add(`${namespace}/${name}`);
          return false;
        }
        throw err;
      }
    }
    for (const e of events) await this.emitEvent(raw, e);
    return true;
  }

  private async emitEvent(raw: RawPolicy, e: LifecycleEvent): Promise<void> {
    const now = new Date(this.now());
    const namespace = raw.metadata!.namespace!;
    try {
      await this.core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${raw.metadata!.name}.`, namespace },
          involvedObject: {
            apiVersion: API_VERSION,
            kind: POLICY_KIND,
            name: raw.metadata!.name,
            namespace,
            uid: raw.metadata!.uid,
            resourceVersion: raw.metadata!.resourceVersion,
          },
          type: e.type,
          reason: e.reason,
          message: e.message.slice(0, 1024),
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          source: { component: 'pahlevan-controller' },
          reportingComponent: 'pahlevan.io/controller',
          reportingInstance: this.identity,
        },
      });
    } catch (err) {
      this.log.warn({ reason: e.reason, err: String(err) }, 'could not write an Event');
    }
  }

  private async deleteUnreferencedProfiles(
    namespace: string,
    policy: string,
    status: PolicyStatus,
    existing: Map<string, PahlevanProfile>,
  ): Promise<void> {
    const referenced = new Set((status.profiles ?? []).map((p) => p.profileName));
    for (const objectName of existing.keys()) {
      if (referenced.has(objectName)) continue;
      try {
        await this.custom.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PROFILE_PLURAL,
          name: objectName,
        });
        this.log.info({ profile: objectName, policy }, 'deleted superseded profile');
      } catch (err) {
        if (codeOf(err) !== 404)
          this.log.warn({ profile: objectName, err: String(err) }, 'could not delete profile');
      }
    }
  }
}
