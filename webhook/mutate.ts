// Pod mutation as a pure function: (admission request, policies) -> mutated pod and the JSON patch between
// the two (fast-json-patch `compare`, so escaping of `/` and `~` in keys and missing parents are right by
// construction). Nothing here does I/O; the server calls it with the in-memory policy cache.
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import {
  ANNOTATION_IMAGES,
  LABEL_POLICY,
  LABEL_PROFILE_HASH,
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

/** The published profile to attach to a container, or why none is attached. */
export function usableProfile(
  policy: PahlevanPolicy,
  containerName: string,
  image: string | undefined,
): { profile: PublishedProfile } | { reason: string } {
  const entries = (policy.status?.profiles ?? []).filter((p) => p.container === containerName);
  if (entries.length === 0) return { reason: 'no published profile' };
  const usable = entries.filter((p) => p.usable && !p.stale && isSafeProfilePath(p.localhostProfile));
  if (usable.length === 0) return { reason: 'profile not installed on every ready node (or stale)' };
  // A profile learned from another image may miss syscalls the new image needs: attach only a matching one.
  const match =
    usable.find((p) => p.image !== undefined && p.image === image) ?? usable.find((p) => !p.image);
  if (!match) return { reason: `profile was learned from another image than ${image ?? '(none)'}` };
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
export function profileSetHash(attached: readonly { container: string; hash: string }[]): string {
  const lines = attached.map((a) => `${a.container}=${a.hash}`).sort();
  return sha256Hex(lines.join('\n')).slice(0, 16);
}

interface ContainerList {
  field: 'initContainers' | 'containers' | 'ephemeralContainers';
  only?: ReadonlySet<string>;
}

/**
 * Mutates a copy of `pod`. `lists` says which container lists to treat (CREATE: init + regular;
 * ephemeralcontainers UPDATE: only the newly added ephemeral containers); `podMetadata` whether labels and
 * annotations may change (not through the ephemeralcontainers subresource, which ignores them).
 */
export function mutatePod(
  pod: Json,
  policy: PahlevanPolicy,
  lists: readonly ContainerList[],
  podMetadata: boolean,
): { pod: Json; attached: (AttachedProfile & { hash: string })[]; notes: string[] } {
  const mutated = structuredClone(pod);
  const spec = mutated.spec as Json;
  const podProfile = seccompOf(spec.securityContext);
  const attached: (AttachedProfile & { hash: string })[] = [];
  const notes: string[] = [];
  for (const { field, only } of lists) {
    const containers = spec[field];
    if (!Array.isArray(containers)) continue;
    for (const container of containers) {
      if (!isRecord(container) || typeof container.name !== 'string') continue;
      if (only && !only.has(container.name)) continue;
      const image = typeof container.image === 'string' ? container.image : undefined;
      const found = usableProfile(policy, container.name, image);
      if (!('profile' in found)) {
        notes.push(`${container.name}: ${found.reason}`);
        continue;
      }
      const { profile } = found;
      const containerSc = isRecord(container.securityContext) ? container.securityContext : undefined;
      const decision = decideSeccomp(seccompOf(containerSc), podProfile, profile);
      notes.push(`${container.name}: ${decision.reason}`);
      if (decision.set)
        container.securityContext = {
          ...(containerSc ?? {}),
          seccompProfile: { type: 'Localhost', localhostProfile: profile.localhostProfile },
        };
      const final = seccompOf(container.securityContext) ?? podProfile;
      if (final?.type === 'Localhost' && final.localhostProfile === profile.localhostProfile)
        attached.push({
          container: container.name,
          localhostProfile: profile.localhostProfile,
          hash: profile.hash,
        });
    }
  }
  if (podMetadata) {
    const metadata = mutated.metadata as Json;
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
  return { pod: mutated, attached, notes };
}

/** Real pods nest a dozen levels; anything far deeper is hostile and would overflow recursive copies. */
export const MAX_OBJECT_DEPTH = 100;

/** Iterative (no recursion, so no stack overflow on hostile input). */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    if (depth >= limit) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
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
  const mutation = mutatePod({ ...pod, metadata }, policy, lists, isCreate);
  const patch = compare(pod, mutation.pod);
  return {
    outcome: patch.length > 0 ? 'patched' : 'unchanged',
    reason: mutation.notes.join('; ') || 'labels only',
    patch,
    policy: policy.metadata.name!,
    attached: mutation.attached.map(({ container, localhostProfile }) => ({ container, localhostProfile })),
    warnings,
  };
}
