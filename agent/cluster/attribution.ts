// Kernel container identity -> container -> pod -> policy.
//
// The kernel gives the learner a cgroup v2 id per event. The agent turns it into a container ID (from the
// cgroup directory's name: every CRI runtime puts the 64-hex container ID in it), the container ID into a
// pod (from the pods' status.containerStatuses[].containerID) and the pod into a policy (selector match).
// A binding is the pair (cgroup id, container ID): both must agree, so a reused cgroup id, a reused PID
// or a restarted container can never carry one container's behaviour into another's observations.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { PahlevanPolicy } from '../../api/policy.js';
import { selectPolicy } from '../../webhook/mutate.js';

const CONTAINER_ID = /^[0-9a-f]{64}$/;

/** Namespaces whose pods are never matched by a policy (see DESIGN.md: avoid deadlock and self-tracing). */
export const NEVER_MATCHED_NAMESPACES = new Set(['kube-system', 'pahlevan-system']);

export type Runtime = 'containerd' | 'cri-o' | 'docker' | 'podman' | 'cgroupfs';

export interface CgroupContainer {
  runtime: Runtime;
  containerId: string;
  /** The container's cgroup directory, relative to the cgroup v2 root (leading `/`). */
  cgroupPath: string;
}

const SCOPE_FORMS: [RegExp, Runtime][] = [
  [/^cri-containerd-([0-9a-f]{64})\.scope$/, 'containerd'],
  [/^crio-([0-9a-f]{64})\.scope$/, 'cri-o'],
  [/^docker-([0-9a-f]{64})\.scope$/, 'docker'],
  [/^libpod-([0-9a-f]{64})\.scope$/, 'podman'],
];

/**
 * The container a cgroup path belongs to, or undefined for host processes and runtime helpers
 * (`crio-conmon-<id>.scope` is conmon, not the container). The deepest matching segment wins, so a
 * container that makes sub-cgroups of its own is still found.
 */
export function containerFromCgroupPath(cgroupPath: string): CgroupContainer | undefined {
  const segments = cgroupPath.split('/');
  for (let i = segments.length - 1; i >= 0; i--) {
    const segment = segments[i]!;
    for (const [form, runtime] of SCOPE_FORMS) {
      const m = form.exec(segment);
      if (m) return { runtime, containerId: m[1]!, cgroupPath: segments.slice(0, i + 1).join('/') || '/' };
    }
    // cgroupfs driver: /kubepods/burstable/pod<uid>/<id>, /docker/<id>, runc --cgroup-parent forms.
    if (CONTAINER_ID.test(segment))
      return { runtime: 'cgroupfs', containerId: segment, cgroupPath: segments.slice(0, i + 1).join('/') };
  }
  return undefined;
}

/**
 * The cgroup v2 path in a /proc/<pid>/cgroup file (the `0::` line). On hybrid hosts the v1 lines are
 * ignored: the kernel's bpf_get_current_cgroup_id() is the v2 id.
 */
export function cgroupV2PathFromProcFile(text: string): string | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3).trim() || '/';
  }
  return undefined;
}

/** `containerd://<id>` (or cri-o://, docker://) -> `<id>`; undefined for anything that is not a 64-hex ID. */
export function containerIdFromStatus(statusId: string | undefined): string | undefined {
  if (!statusId) return undefined;
  const at = statusId.indexOf('://');
  const id = at >= 0 ? statusId.slice(at + 3) : statusId;
  return CONTAINER_ID.test(id) ? id : undefined;
}

export function normaliseCgroupId(id: bigint | number | string): string {
  return BigInt(id).toString(10);
}

export interface ContainerRef {
  containerId: string;
  podUid: string;
  namespace: string;
  podName: string;
  containerName: string;
  image?: string;
}

export interface Attribution extends ContainerRef {
  cgroupId: string;
  /** `namespace/name` of the policy whose pods this container belongs to. */
  policy?: { namespace: string; name: string; uid?: string };
}

export type BindingChange =
  | { kind: 'bound'; cgroupId: string; containerId: string }
  | { kind: 'unbound'; cgroupId: string; containerId: string; reason: string; was?: Attribution };

interface PodEntry {
  uid: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  containerIds: Set<string>;
}

/**
 * The attribution tables, without I/O: pods and policies come from watches, bindings from the cgroup
 * filesystem (see CgroupScanner). Every change to the bindings is reported to `onChange` so the agent can
 * watch/unwatch cgroups in the learner.
 */
export class AttributionTable {
  private readonly pods = new Map<string, PodEntry>();
  private readonly containers = new Map<string, ContainerRef>();
  private readonly policies = new Map<string, PahlevanPolicy>();
  /** cgroupId -> containerId, and the reverse. */
  private readonly byCgroup = new Map<string, string>();
  private readonly byContainer = new Map<string, string>();

  constructor(private readonly onChange: (change: BindingChange) => void = () => {}) {}

  upsertPolicy(policy: PahlevanPolicy): void {
    this.policies.set(`${policy.metadata.namespace}/${policy.metadata.name}`, policy);
  }

  deletePolicy(namespace: string, name: string): void {
    this.policies.delete(`${namespace}/${name}`);
  }

  /**
   * Records a pod's running containers. Containers that left the pod (restart: a new ID replaces the old
   * one; terminated; removed) lose their bindings.
   */
  upsertPod(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const namespace = pod.metadata?.namespace ?? 'default';
    const name = pod.metadata?.name ?? uid;
    const images = new Map<string, string>();
    for (const c of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])])
      if (c.image) images.set(c.name, c.image);
    const running = new Set<string>();
    for (const status of [
      ...(pod.status?.containerStatuses ?? []),
      ...(pod.status?.initContainerStatuses ?? []),
      ...(pod.status?.ephemeralContainerStatuses ?? []),
    ]) {
      const id = containerIdFromStatus(status.containerID);
      if (!id || status.state?.terminated) continue;
      running.add(id);
      const owner = this.containers.get(id);
      if (owner && owner.podUid !== uid) this.dropContainer(id, `container moved from pod ${owner.podUid}`);
      const ref: ContainerRef = {
        containerId: id,
        podUid: uid,
        namespace,
        podName: name,
        containerName: status.name,
      };
      const image = images.get(status.name);
      if (image) ref.image = image;
      this.containers.set(id, ref);
    }
    const previous = this.pods.get(uid);
    for (const id of previous?.containerIds ?? [])
      if (!running.has(id)) this.dropContainer(id, 'container ended');
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') {
      for (const id of running) this.dropContainer(id, `pod ${pod.status.phase}`);
      running.clear();
    }
    this.pods.set(uid, {
      uid,
      namespace,
      name,
      labels: { ...(pod.metadata?.labels ?? {}) },
      containerIds: running,
    });
  }

  deletePod(uid: string): void {
    const entry = this.pods.get(uid);
    if (!entry) return;
    for (const id of entry.containerIds) this.dropContainer(id, 'pod deleted');
    this.pods.delete(uid);
  }

  /** Replaces the whole pod set (after a relist): pods not in `pods` are gone. */
  resetPods(pods: V1Pod[]): void {
    const keep = new Set(pods.map((p) => p.metadata?.uid).filter((u): u is string => !!u));
    for (const uid of [...this.pods.keys()]) if (!keep.has(uid)) this.deletePod(uid);
    for (const pod of pods) this.upsertPod(pod);
  }

  /** Container IDs of running containers that have no cgroup binding yet. */
  unboundContainers(): string[] {
    return [...this.containers.keys()].filter((id) => !this.byContainer.has(id));
  }

  knowsContainer(containerId: string): boolean {
    return this.containers.has(containerId);
  }

  /**
   * Binds a cgroup id to a container, as seen on the cgroup filesystem. A cgroup id already bound to
   * another container is rebound (the kernel reused the id): the old binding is reported unbound first.
   * Returns false (and binds nothing) for containers not running in any pod on this node.
   */
  bind(cgroupIdIn: bigint | number | string, containerId: string): boolean {
    const cgroupId = normaliseCgroupId(cgroupIdIn);
    if (!this.containers.has(containerId)) return false;
    const current = this.byCgroup.get(cgroupId);
    if (current === containerId) return true;
    if (current !== undefined)
      this.unbind(cgroupId, `cgroup id reused by container ${containerId.slice(0, 12)}`);
    const oldCgroup = this.byContainer.get(containerId);
    if (oldCgroup !== undefined) this.unbind(oldCgroup, 'container moved to another cgroup');
    this.byCgroup.set(cgroupId, containerId);
    this.byContainer.set(containerId, cgroupId);
    this.onChange({ kind: 'bound', cgroupId, containerId });
    return true;
  }

  /** Removes the binding of a cgroup id (e.g. its directory is gone). */
  unbind(cgroupIdIn: bigint | number | string, reason: string): void {
    const cgroupId = normaliseCgroupId(cgroupIdIn);
    const containerId = this.byCgroup.get(cgroupId);
    if (containerId === undefined) return;
    const was = this.resolve(cgroupId);
    this.byCgroup.delete(cgroupId);
    if (this.byContainer.get(containerId) === cgroupId) this.byContainer.delete(containerId);
    this.onChange({ kind: 'unbound', cgroupId, containerId, reason, ...(was ? { was } : {}) });
  }

  bindings(): { cgroupId: string; containerId: string }[] {
    return [...this.byCgroup].map(([cgroupId, containerId]) => ({ cgroupId, containerId }));
  }

  /** Who a kernel event with this cgroup id belongs to, or undefined when it belongs to nobody we know. */
  resolve(cgroupIdIn: bigint | number | string): Attribution | undefined {
    const cgroupId = normaliseCgroupId(cgroupIdIn);
    const containerId = this.byCgroup.get(cgroupId);
    if (containerId === undefined) return undefined;
    const ref = this.containers.get(containerId);
    if (!ref) return undefined;
    const result: Attribution = { ...ref, cgroupId };
    const policy = this.policyForPod(ref.podUid);
    if (policy)
      result.policy = {
        namespace: policy.metadata.namespace ?? ref.namespace,
        name: policy.metadata.name!,
        ...(policy.metadata.uid ? { uid: policy.metadata.uid } : {}),
      };
    return result;
  }

  /**
   * The policy a pod belongs to, decided exactly as the webhook decides it at admission (selectPolicy):
   * the matching policy it is labelled with, else the oldest match.
   */
  policyForPod(podUid: string): PahlevanPolicy | undefined {
    const pod = this.pods.get(podUid);
    if (!pod || NEVER_MATCHED_NAMESPACES.has(pod.namespace)) return undefined;
    return selectPolicy([...this.policies.values()], pod.namespace, pod.labels).policy;
  }

  private dropContainer(containerId: string, reason: string): void {
    const cgroupId = this.byContainer.get(containerId);
    if (cgroupId !== undefined) this.unbind(cgroupId, reason);
    this.containers.delete(containerId);
  }
}

/** Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on v2-only hosts, .../unified on hybrid ones. */
export function detectCgroupV2Root(): string {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return '/sys/fs/cgroup';
  if (existsSync('/sys/fs/cgroup/unified/cgroup.controllers')) return '/sys/fs/cgroup/unified';
  throw new Error('no cgroup v2 hierarchy found at /sys/fs/cgroup or /sys/fs/cgroup/unified: mount cgroup2');
}

/**
 * Reads the cgroup filesystem to find container cgroups. The cgroup id the kernel reports is the inode
 * number of the cgroup's directory in the v2 hierarchy.
 */
export class CgroupScanner {
  constructor(
    readonly cgroupRoot: string = detectCgroupV2Root(),
    private readonly procRoot = '/proc',
    private readonly maxDepth = 10,
  ) {}

  /** Container cgroups under the root: containerId -> {cgroupId, path}. Unreadable subtrees are skipped. */
  scan(): Map<string, { cgroupId: string; cgroupPath: string }> {
    const found = new Map<string, { cgroupId: string; cgroupPath: string }>();
    const walk = (rel: string, depth: number): void => {
      if (depth > this.maxDepth) return;
      let entries: string[];
      try {
        entries = readdirSync(join(this.cgroupRoot, rel), { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        return;
      }
      for (const name of entries) {
        const childRel = `${rel}/${name}`;
        const container = containerFromCgroupPath(childRel);
        if (container && container.cgroupPath === childRel && !found.has(container.containerId)) {
          const ino = this.cgroupIdOf(childRel);
          if (ino !== undefined) found.set(container.containerId, { cgroupId: ino, cgroupPath: childRel });
          continue; // a container's own sub-cgroups belong to it
        }
        walk(childRel, depth + 1);
      }
    };
    walk('', 0);
    return found;
  }

  cgroupIdOf(cgroupPath: string): string | undefined {
    try {
      return statSync(join(this.cgroupRoot, cgroupPath), { bigint: true }).ino.toString(10);
    } catch {
      return undefined;
    }
  }

  /**
   * The container a process belongs to, but only if its cgroup is the one with `expectedCgroupId`: a PID
   * read after the process exited may already belong to someone else.
   */
  containerOfPid(pid: number, expectedCgroupId: bigint | number | string): CgroupContainer | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.procRoot, String(pid), 'cgroup'), 'utf8');
    } catch {
      return undefined;
    }
    const path = cgroupV2PathFromProcFile(text);
    if (!path) return undefined;
    const container = containerFromCgroupPath(path);
    if (!container) return undefined;
    const ino = this.cgroupIdOf(path);
    return ino === normaliseCgroupId(expectedCgroupId) ? container : undefined;
  }
}

/**
 * Brings the table's bindings in line with the cgroup filesystem: binds running containers whose cgroup
 * exists, rebinds reused ids, unbinds cgroups whose directory is gone. Returns the cgroup ids of
 * containers no pod on this node reports (yet): the kubelet posts a container's ID only after it started.
 */
export function syncBindings(table: AttributionTable, scanned: Map<string, { cgroupId: string }>): string[] {
  const liveCgroups = new Map<string, string>();
  for (const [containerId, { cgroupId }] of scanned) liveCgroups.set(cgroupId, containerId);
  for (const { cgroupId, containerId } of table.bindings()) {
    const live = liveCgroups.get(cgroupId);
    if (live === undefined) table.unbind(cgroupId, 'cgroup removed');
    else if (live !== containerId) table.unbind(cgroupId, 'cgroup id reused');
  }
  const unknown: string[] = [];
  for (const [containerId, { cgroupId }] of scanned)
    if (table.knowsContainer(containerId)) table.bind(cgroupId, containerId);
    else unknown.push(cgroupId);
  return unknown;
}
