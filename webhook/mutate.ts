// Pod mutation as a pure function: (admission request, policies) -> mutated pod and the JSON patch between
// the two (fast-json-patch `compare`, so escaping of `/` and `~` in keys and missing parents are right by
// construction). Nothing here does I/O; the server calls it with the in-memory policy cache.
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import {
  ANNOTATION_IMAGES,
  LABEL_POLICY,
  LABEL_PROFILE_HASH,
  LEARNING_PROFILE_PATH,
  SECCOMP_SUBDIR,
  sha256Hex,
} from '../api/names.js';
import type { PahlevanPolicy, PublishedProfile } from '../api/policy.js';
import { matchesSelector } from '../api/selector.js';
import type { AdmissionRequest } from './admission.js';

const { compare } = fastJsonPatch;

export const MIRROR_POD_ANNOTATION = 'kubernetes.io/config.mirror';
export const ALWAYS_EXCLUDED_NAMESPACES = ['kube-system'] as const;

export interface MutationOptions {
  /** Namespaces never matched: the webhook's own and kube-system (always added). */
  excludedNamespaces?: readonly string[];
}

export interface AttachedProfile {
  container: string;
  localhostProfile: string;
}

export interface MutationResult {
  /** Why the pod was (not) changed, for logs and metrics. */
  outcome: 'patched' | 'unchanged' | 'skipped';
  reason: string;
  patch: Operation[];
  policy?: string;
  attached: AttachedProfile[];
  warnings: string[];
}

type Json = Record<string, unknown>;

interface SeccompProfileField {
  type?: unknown;
  localhostProfile?: unknown;
}

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function skipped(reason: string, warnings: string[] = []): MutationResult {
  return { outcome: 'skipped', reason, patch: [], attached: [], warnings };
}

function stringRecord(value: unknown): Record<string, string> | undefined {
  if (!isRecord(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

// Where a profile may live: under pahlevan/, built from DNS names and a hex hash (see localhostProfilePath).
const SAFE_PROFILE_PATH = /^pahlevan\/[a-z0-9][-a-z0-9.]*\/[a-z0-9][-a-z0-9.]*\/[a-z0-9][-a-z0-9.]*\.json$/;
export function isSafeProfilePath(path: string): boolean {
  return SAFE_PROFILE_PATH.test(path) && !path.split('/').some((seg) => seg === '..' || seg.startsWith('..'));
}

// Cached policies are immutable snapshots: index their profiles once per object, not once per request.
const profileIndexes = new WeakMap<PahlevanPolicy, Map<string, { usable: PublishedProfile[] }>>();
function profileIndex(policy: PahlevanPolicy): Map<string, { usable: PublishedProfile[] }> {
  let index = profileIndexes.get(policy);
  if (!index) {
    index = new Map();
    for (const p of policy.status?.profiles ?? []) {
      let entry = index.get(p.container);
      if (!entry) index.set(p.container, (entry = { usable: [] }));
      if (p.usable && !p.stale && isSafeProfilePath(p.localhostProfile)) entry.usable.push(p);
    }
    profileIndexes.set(policy, index);
  }
  return index;
}

/** The published profile to attach to a container, or why none is attached. */
export function usableProfile(
  policy: PahlevanPolicy,
  containerName: string,
  image: string | undefined,
): { profile: PublishedProfile } | { reason: string } {
  const entry = profileIndex(policy).get(containerName);
  if (!entry) return { reason: 'no published profile' };
  const usable = entry.usable;
  if (usable.length === 0) return { reason: 'profile not installed on every ready node (or stale)' };
  // A profile learned from other images may miss syscalls a new image needs: attach only a matching one.
  // `image` lists the learned images, comma-separated (the controller merges replicas of several images).
  const match =
    usable.find((p) => p.image !== undefined && p.image !== '' && p.image.split(',').includes(image ?? '')) ??
    usable.find((p) => !p.image);
  if (!match) return { reason: `profile was learned from other images than ${image ?? '(none)'}` };
  return { profile: match };
}

export type ProfileDecision = { set: boolean; reason: string };

/**
 * Never weaken: a profile is set when the container would otherwise run Unconfined, replaces RuntimeDefault
 * only when the learned profile is known to be within it, replaces an older Pahlevan profile on the same
 * container, and never replaces a user's own Localhost profile (at container or pod level).
 */
export function decideSeccomp(
  containerProfile: SeccompProfileField | undefined,
  podProfile: SeccompProfileField | undefined,
  profile: Pick<PublishedProfile, 'localhostProfile' | 'withinRuntimeDefault'>,
): ProfileDecision {
  const level = containerProfile !== undefined ? 'container' : 'pod';
  const effective = containerProfile ?? podProfile;
  if (effective === undefined) return { set: true, reason: 'no seccomp profile (Unconfined)' };
  switch (effective.type) {
    case 'Unconfined':
      return { set: true, reason: `${level}-level Unconfined replaced` };
    case 'RuntimeDefault':
      return profile.withinRuntimeDefault
        ? { set: true, reason: `learned profile is within RuntimeDefault (${level}-level)` }
        : {
            set: false,
            reason: `${level}-level RuntimeDefault kept: learned profile not known to be stricter`,
          };
    case 'Localhost':
      if (effective.localhostProfile === profile.localhostProfile)
        return { set: false, reason: 'profile already attached' };
      if (
        level === 'container' &&
        typeof effective.localhostProfile === 'string' &&
        effective.localhostProfile.startsWith(`${SECCOMP_SUBDIR}/`)
      )
        return { set: true, reason: 'older Pahlevan profile replaced' };
      return { set: false, reason: `${level}-level Localhost profile chosen by the user kept` };
    default:
      return { set: false, reason: `${level}-level seccomp type ${JSON.stringify(effective.type)} kept` };
  }
}

/**
 * While a container has no usable profile it learns, and the learner counts only what runs under a seccomp
 * filter: the learning profile (the runtime default as a Localhost file, api/names.ts) is that filter. It
 * replaces Unconfined and RuntimeDefault (it is the runtime default, so nothing is weakened) and an older
 * Pahlevan profile on the container (re-learning needs the full runtime default); never a user's own
 * Localhost profile or a type it does not know. The learning profile is the runtime default without extra
 * capabilities: a privileged container, or one that adds capabilities, could need what it denies (the
 * runtime widens its default for them), so those are left as they are.
 */
export function decideLearningSeccomp(
  containerProfile: SeccompProfileField | undefined,
  podProfile: SeccompProfileField | undefined,
  containerSecurityContext?: Json,
): ProfileDecision {
  if (containerSecurityContext?.privileged === true)
    return { set: false, reason: 'privileged: learning profile not set' };
  const caps = containerSecurityContext?.capabilities;
  if (isRecord(caps) && Array.isArray(caps.add) && caps.add.length > 0)
    return { set: false, reason: 'adds capabilities: learning profile not set (it has none)' };
  const level = containerProfile !== undefined ? 'container' : 'pod';
  const effective = containerProfile ?? podProfile;
  if (effective === undefined) return { set: true, reason: 'learning profile set (no seccomp profile)' };
  switch (effective.type) {
    case 'Unconfined':
      return { set: true, reason: `${level}-level Unconfined replaced by the learning profile` };
    case 'RuntimeDefault':
      return { set: true, reason: `${level}-level RuntimeDefault replaced by the learning profile (equal)` };
    case 'Localhost':
      if (effective.localhostProfile === LEARNING_PROFILE_PATH)
        return { set: false, reason: 'learning profile already attached' };
      if (
        level === 'container' &&
        typeof effective.localhostProfile === 'string' &&
        effective.localhostProfile.startsWith(`${SECCOMP_SUBDIR}/`)
      )
        return { set: true, reason: 'older Pahlevan profile replaced by the learning profile' };
      return { set: false, reason: `${level}-level Localhost profile chosen by the user kept (not learned)` };
    default:
      return { set: false, reason: `${level}-level seccomp type ${JSON.stringify(effective.type)} kept` };
  }
}

function seccompOf(securityContext: unknown): SeccompProfileField | undefined {
  if (!isRecord(securityContext)) return undefined;
  const sp = securityContext.seccompProfile;
  return isRecord(sp) ? sp : undefined;
}

export function isWindowsPod(spec: Json): boolean {
  const os = spec.os;
  if (isRecord(os) && typeof os.name === 'string' && os.name.toLowerCase() === 'windows') return true;
  const nodeSelector = spec.nodeSelector;
  if (isRecord(nodeSelector) && nodeSelector['kubernetes.io/os'] === 'windows') return true;
  const sc = spec.securityContext;
  return isRecord(sc) && isRecord(sc.windowsOptions) && sc.windowsOptions.hostProcess === true;
}

/** The policy a pod falls under: a matching one it is already labelled with, else the oldest match. */
export function selectPolicy(
  policies: readonly PahlevanPolicy[],
  namespace: string,
  labels: Record<string, string> | undefined,
): { policy?: PahlevanPolicy; warnings: string[] } {
  const candidates = policies
    .filter(
      (p) =>
        p.metadata.namespace === namespace &&
        p.metadata.name &&
        !(p.metadata as Json).deletionTimestamp &&
        matchesSelector(p.spec.selector, labels),
    )
    .sort(
      (a, b) =>
        (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') ||
        a.metadata.name!.localeCompare(b.metadata.name!),
    );
  if (candidates.length === 0) return { warnings: [] };
  const labelled = labels?.[LABEL_POLICY];
  const policy = candidates.find((p) => p.metadata.name === labelled) ?? candidates[0]!;
  const warnings =
    candidates.length > 1
      ? [
          `pod matches ${candidates.length} PahlevanPolicies (${candidates.map((p) => p.metadata.name).join(', ')}); using ${policy.metadata.name}`,
        ]
      : [];
  return { policy, warnings };
}

/** Hash over the set of attached profiles, short enough for a label value. */
const profileSetHashes = new Map<string, string>();
export function profileSetHash(attached: readonly { container: string; hash: string }[]): string {
  const key = attached
    .map((a) => `${a.container}=${a.hash}`)
    .sort()
    .join('\n');
  let hash = profileSetHashes.get(key);
  if (hash === undefined) {
    hash = sha256Hex(key).slice(0, 16);
    if (profileSetHashes.size >= 10_000) profileSetHashes.clear(); // bounded: keys come from requests
    profileSetHashes.set(key, hash);
  }
  return hash;
}

interface ContainerList {
  field: 'initContainers' | 'containers' | 'ephemeralContainers';
  only?: ReadonlySet<string>;
}

const CONTAINER_FIELDS = ['initContainers', 'containers', 'ephemeralContainers'] as const;

function pick(source: Json, keys: readonly string[]): Json {
  const out: Json = {};
  for (const key of keys) if (Object.prototype.hasOwnProperty.call(source, key)) out[key] = source[key];
  return out;
}

/**
 * The only parts of a pod mutation may touch (labels, annotations, each container's securityContext), laid
 * out like the pod itself so that `compare` on two projections yields paths valid on the whole pod. Copying
 * and diffing this instead of the whole pod keeps the cost independent of everything else in the spec.
 */
export function podProjection(pod: Json): Json {
  const out: Json = {};
  if (isRecord(pod.metadata)) out.metadata = pick(pod.metadata, ['labels', 'annotations']);
  const spec = pod.spec as Json;
  const projected: Json = {};
  for (const field of CONTAINER_FIELDS) {
    const list = spec[field];
    if (Array.isArray(list))
      projected[field] = list.map((c) => (isRecord(c) ? pick(c, ['securityContext']) : c));
  }
  out.spec = projected;
  return out;
}

/**
 * Computes the mutation of `pod` on a copy of its projection. `lists` says which container lists to treat
 * (CREATE: init + regular; ephemeralcontainers UPDATE: only the newly added ephemeral containers);
 * `podMetadata` whether labels and annotations may change (not through the ephemeralcontainers subresource,
 * which ignores them).
 */
export function mutatePod(
  pod: Json,
  policy: PahlevanPolicy,
  lists: readonly ContainerList[],
  podMetadata: boolean,
): { before: Json; after: Json; attached: (AttachedProfile & { hash: string })[]; notes: string[] } {
  const before = podProjection(pod);
  // a second projection is a safe copy: mutation replaces its (fresh) containers and maps, never edits shared ones
  const after = podProjection(pod);
  const spec = pod.spec as Json;
  const mutatedSpec = after.spec as Json;
  const podProfile = seccompOf(spec.securityContext);
  const attached: (AttachedProfile & { hash: string })[] = [];
  const notes: string[] = [];
  for (const { field, only } of lists) {
    const containers = spec[field];
    if (!Array.isArray(containers)) continue;
    containers.forEach((container: unknown, index: number) => {
      if (!isRecord(container) || typeof container.name !== 'string') return;
      if (only && !only.has(container.name)) return;
      const image = typeof container.image === 'string' ? container.image : undefined;
      const found = usableProfile(policy, container.name, image);
      const target = (mutatedSpec[field] as Json[])[index]!;
      const containerSc = isRecord(target.securityContext) ? target.securityContext : undefined;
      if (!('profile' in found)) {
        const learning = decideLearningSeccomp(seccompOf(containerSc), podProfile, containerSc);
        notes.push(`${container.name}: ${found.reason}; ${learning.reason}`);
        if (learning.set)
          target.securityContext = {
            ...(containerSc ?? {}),
            seccompProfile: { type: 'Localhost', localhostProfile: LEARNING_PROFILE_PATH },
          };
        return;
      }
      const { profile } = found;
      const decision = decideSeccomp(seccompOf(containerSc), podProfile, profile);
      notes.push(`${container.name}: ${decision.reason}`);
      if (decision.set)
        target.securityContext = {
          ...(containerSc ?? {}),
          seccompProfile: { type: 'Localhost', localhostProfile: profile.localhostProfile },
        };
      const final = seccompOf(target.securityContext) ?? podProfile;
      if (final?.type === 'Localhost' && final.localhostProfile === profile.localhostProfile)
        attached.push({
          container: container.name,
          localhostProfile: profile.localhostProfile,
          hash: profile.hash,
        });
    });
  }
  if (podMetadata) {
    const metadata: Json = isRecord(after.metadata) ? after.metadata : {};
    after.metadata = metadata;
    const labels: Json = isRecord(metadata.labels) ? { ...metadata.labels } : {};
    labels[LABEL_POLICY] = policy.metadata.name!;
    if (attached.length > 0) labels[LABEL_PROFILE_HASH] = profileSetHash(attached);
    // A hash label copied from elsewhere must not claim profiles this pod does not have.
    else delete labels[LABEL_PROFILE_HASH];
    metadata.labels = labels;
    const images: Record<string, string> = {};
    for (const field of ['initContainers', 'containers'] as const) {
      const containers = spec[field];
      if (!Array.isArray(containers)) continue;
      for (const c of containers)
        if (isRecord(c) && typeof c.name === 'string' && typeof c.image === 'string')
          images[c.name] = c.image;
    }
    const annotations = isRecord(metadata.annotations) ? metadata.annotations : {};
    metadata.annotations = { ...annotations, [ANNOTATION_IMAGES]: JSON.stringify(images) };
  }
  return { before, after, attached, notes };
}

/** Real pods nest a dozen levels; anything far deeper is hostile and would overflow recursive copies. */
export const MAX_OBJECT_DEPTH = 100;

/** Recursion is bounded by `limit`, so hostile nesting cannot overflow the stack. */
export function nestsDeeperThan(value: unknown, limit: number, depth = 0): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (depth >= limit) return true;
  if (Array.isArray(value)) {
    for (const child of value) if (nestsDeeperThan(child, limit, depth + 1)) return true;
  } else {
    for (const key in value)
      if (nestsDeeperThan((value as Record<string, unknown>)[key], limit, depth + 1)) return true;
  }
  return false;
}

/** The whole decision for one AdmissionReview request on /mutate-pods. */
export function mutatePodRequest(
  request: AdmissionRequest,
  policies: readonly PahlevanPolicy[],
  options: MutationOptions = {},
): MutationResult {
  const resource = request.resource?.resource;
  if (resource !== undefined && resource !== 'pods') return skipped(`resource ${resource} is not pods`);
  if (request.kind?.kind !== undefined && request.kind.kind !== 'Pod')
    return skipped(`kind ${request.kind.kind} is not Pod`);
  const subResource = request.subResource ?? '';
  const isCreate = request.operation === 'CREATE' && subResource === '';
  const isEphemeral = request.operation === 'UPDATE' && subResource === 'ephemeralcontainers';
  if (!isCreate && !isEphemeral)
    return skipped(
      `operation ${request.operation ?? '(none)'}${subResource ? ` on ${subResource}` : ''} is not mutated`,
    );

  const pod = request.object;
  if (!isRecord(pod) || !isRecord(pod.spec)) return skipped('object is not a pod', ['object is not a pod']);
  if (nestsDeeperThan(pod, MAX_OBJECT_DEPTH) || nestsDeeperThan(request.oldObject, MAX_OBJECT_DEPTH))
    return skipped('object nests too deeply', [
      `pod nests deeper than ${MAX_OBJECT_DEPTH} levels; not mutated`,
    ]);
  const metadata = isRecord(pod.metadata) ? pod.metadata : {};
  const namespace =
    (typeof request.namespace === 'string' && request.namespace) ||
    (typeof metadata.namespace === 'string' ? metadata.namespace : '');
  if (!namespace) return skipped('pod has no namespace');
  const excluded = new Set([...ALWAYS_EXCLUDED_NAMESPACES, ...(options.excludedNamespaces ?? [])]);
  if (excluded.has(namespace)) return skipped(`namespace ${namespace} is never matched`);

  const annotations = stringRecord(metadata.annotations);
  if (annotations && MIRROR_POD_ANNOTATION in annotations) return skipped('mirror pod');
  if (isWindowsPod(pod.spec)) return skipped('Windows pod (seccomp does not apply)');

  const labels = stringRecord(metadata.labels);
  const { policy, warnings } = selectPolicy(policies, namespace, labels);
  if (!policy) return skipped('no PahlevanPolicy selects this pod');

  let lists: ContainerList[];
  if (isCreate) {
    lists = [{ field: 'initContainers' }, { field: 'containers' }];
  } else {
    const old = request.oldObject;
    const oldNames = new Set<string>();
    if (isRecord(old) && isRecord(old.spec) && Array.isArray(old.spec.ephemeralContainers))
      for (const c of old.spec.ephemeralContainers)
        if (isRecord(c) && typeof c.name === 'string') oldNames.add(c.name);
    const current = Array.isArray(pod.spec.ephemeralContainers) ? pod.spec.ephemeralContainers : [];
    const added = new Set<string>();
    for (const c of current)
      if (isRecord(c) && typeof c.name === 'string' && !oldNames.has(c.name)) added.add(c.name);
    if (added.size === 0)
      return { ...skipped('no new ephemeral containers'), policy: policy.metadata.name!, warnings };
    lists = [{ field: 'ephemeralContainers', only: added }];
  }
  // only the projection is copied and diffed; it must not nest deeper than any real pod does
  if (nestsDeeperThan(podProjection(pod), MAX_OBJECT_DEPTH))
    return skipped('object nests too deeply', [
      `pod nests deeper than ${MAX_OBJECT_DEPTH} levels; not mutated`,
    ]);
  const mutation = mutatePod(pod, policy, lists, isCreate);
  const patch = compare(mutation.before, mutation.after);
  return {
    outcome: patch.length > 0 ? 'patched' : 'unchanged',
    reason: mutation.notes.join('; ') || 'labels only',
    patch,
    policy: policy.metadata.name!,
    attached: mutation.attached.map(({ container, localhostProfile }) => ({ container, localhostProfile })),
    warnings,
  };
}
