// The policy lifecycle as a pure function: (policy spec, previous status, merged observations, nodes, time)
// -> (next status, profiles to publish, Events, self-healing action). Everything it needs to remember lives in
// the status it returns, so a new leader continues where the old one stopped.
//
// Learning -> (duration elapsed AND stableWindows windows without new behaviour; any new behaviour restarts the
// count) -> profiles published -> Enforcing (autoEnforce) or Monitoring (waiting for the admin: setting
// autoEnforce later promotes it). Enforcing -> self-healing when violations in one window reach the threshold:
// Rollback (RolledBack: Monitor mode, stays there until the spec changes), Relax (republish with what was
// denied), Relearn (back to Learning). A cooldown between actions and the sticky RolledBack phase keep it from
// flapping. Image drift marks the container's profile stale and restarts the stability count; the previous
// profile stays attached until a new one covering the new image is published.
import type { Condition, PolicySpec, PolicyStatus, PublishedProfile, Phase } from '../../api/policy.js';
import { parseDurationMs } from '../../api/policy.js';
import type { DeniedBehaviour } from '../../api/observation.js';

/** Annotation on a policy that ends learning now (`pahlevan trace stop`): any value, conventionally a time. */
export const ANNOTATION_END_LEARNING = 'pahlevan.io/end-learning';

/**
 * `pahlevan trace stop` stamps the end-learning annotation with a time; it ends the learning run that was going
 * on then, not a later one (a Relearn starts a new run, the old stamp must not end it at once).
 */
export function endLearningRequested(annotation: string | undefined, startedAt: string | undefined): boolean {
  if (annotation === undefined) return false;
  const requestedMs = Date.parse(annotation);
  if (Number.isNaN(requestedMs) || startedAt === undefined) return true;
  return requestedMs >= Date.parse(startedAt);
}

export interface DesiredProfile {
  container: string;
  /** Content hash of what would be published now. */
  hash: string;
  images: string[];
  syscalls: number;
  profileName: string;
  localhostProfile: string;
  /** Every allowed syscall is also allowed by the runtime default (the webhook may then replace RuntimeDefault). */
  withinRuntimeDefault?: boolean;
}

export interface LifecycleInput {
  nowMs: number;
  generation: number;
  spec: PolicySpec;
  status: PolicyStatus | undefined;
  endLearningRequested?: boolean;
  merged: {
    containers: DesiredProfile[];
    podsObserved: number;
    nodesReporting: number;
    totals: { syscalls: number; execs: number; files: number; ports: number };
  };
  /** The desired profiles with what was denied added: published instead when the Relax strategy fires. */
  relaxed?: DesiredProfile[];
  /** Per published profile object: the images it was learned from (PahlevanProfile spec.images). */
  coveredImages?: Map<string, string[]>;
  /** Names of the nodes that are Ready now. */
  readyNodes: string[];
  /** Per node: profile hashes its agent installed (acks). */
  installedByNode: Map<string, Set<string>>;
  nodeLayers: { node: string; active: string[]; missing: { layer: string; reason: string }[] }[];
  violations: {
    /** Violations counted in the last self-healing window, over all nodes. */
    inWindow: number;
    total: number;
    byLayer: Record<string, number>;
    denied: DeniedBehaviour[];
  };
}

export interface LifecycleEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface LifecycleResult {
  status: PolicyStatus;
  /** Containers whose desired profile must exist as a PahlevanProfile object before the status is written. */
  publish: string[];
  events: LifecycleEvent[];
  action?: 'Rollback' | 'Relax' | 'Relearn';
}

const iso = (ms: number) => new Date(ms).toISOString();

function setCondition(
  conditions: Condition[],
  next: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>,
  nowMs: number,
  generation: number,
): Condition[] {
  const prev = conditions.find((c) => c.type === next.type);
  const changed = !prev || prev.status !== next.status;
  const cond: Condition = {
    ...next,
    lastTransitionTime: changed ? iso(nowMs) : prev.lastTransitionTime,
    observedGeneration: generation,
  };
  return [...conditions.filter((c) => c.type !== next.type), cond].sort((a, b) => (a.type < b.type ? -1 : 1));
}

export function reconcilePolicy(input: LifecycleInput): LifecycleResult {
  const { nowMs, spec, generation, merged } = input;
  const prev: PolicyStatus = input.status ?? {};
  const events: LifecycleEvent[] = [];
  const windowMs = parseDurationMs(spec.learning.window);
  const durationMs = parseDurationMs(spec.learning.duration);
  const specChanged = prev.observedGeneration !== undefined && prev.observedGeneration !== generation;
  let phase: Phase = prev.phase ?? 'Learning';
  let action: LifecycleResult['action'];
  const selfHealing = { ...(prev.selfHealing ?? {}) };

  // --- learning progress: new behaviour = the merged learned sets grew (sets only grow, so counts compare) ---
  const prevLearning = prev.learning;
  let startedAtMs = prevLearning?.startedAt ? Date.parse(prevLearning.startedAt) : nowMs;
  let lastNewMs = prevLearning?.lastNewBehaviourAt ? Date.parse(prevLearning.lastNewBehaviourAt) : undefined;
  const t = merged.totals;
  const grew =
    prevLearning !== undefined &&
    (t.syscalls !== (prevLearning.syscalls ?? 0) ||
      t.execs !== (prevLearning.execs ?? 0) ||
      t.files !== (prevLearning.files ?? 0) ||
      t.ports !== (prevLearning.ports ?? 0));
  if (grew) lastNewMs = nowMs;

  // --- image drift: a container now runs an image its published profile was not learned from ---
  let profiles: PublishedProfile[] = (prev.profiles ?? []).map((p) => ({ ...p }));
  const desiredByName = new Map(merged.containers.map((c) => [c.container, c]));
  for (const p of profiles) {
    const d = desiredByName.get(p.container);
    if (!d) continue;
    if (p.hash === d.hash) {
      p.stale = false; // the hash covers the images: this version was learned from what runs now
      continue;
    }
    const covered = new Set(input.coveredImages?.get(p.profileName) ?? (p.image ? [p.image] : []));
    if (covered.size === 0) continue;
    const stale = d.images.some((i) => !covered.has(i));
    if (stale && !p.stale) {
      events.push({
        type: 'Warning',
        reason: 'ImageDrift',
        message: `container ${p.container} runs ${d.images.filter((i) => !covered.has(i)).join(', ')}, profile ${p.profileName} was learned from ${[...covered].join(', ')}: re-learning it; new pods run under the previous profile in Monitor mode`,
      });
      lastNewMs = nowMs; // the new image's behaviour must settle before a new version is published
    }
    if (stale) p.stale = true;
  }

  const stableWindows = Math.max(0, Math.floor((nowMs - (lastNewMs ?? startedAtMs)) / windowMs));
  const learnedLongEnough = nowMs - startedAtMs >= durationMs;
  const stable = stableWindows >= spec.learning.stableWindows;
  const hasData = merged.containers.length > 0;

  // --- phase transitions ---
  const publish = new Set<string>();
  const transition = (to: Phase, reason: string, message: string, type: 'Normal' | 'Warning' = 'Normal') => {
    if (to === phase) return;
    events.push({ type, reason, message: `${phase} -> ${to}: ${message}` });
    phase = to;
  };
  const afterPublish = (): Phase => (spec.learning.autoEnforce ? 'Enforcing' : 'Monitoring');

  if (phase === 'Learning') {
    if (hasData && (input.endLearningRequested || (learnedLongEnough && stable))) {
      for (const c of merged.containers) publish.add(c.container);
      const why = input.endLearningRequested
        ? 'learning ended on request'
        : `learned for ${spec.learning.duration}, ${stableWindows} window(s) without new behaviour`;
      transition(afterPublish(), spec.learning.autoEnforce ? 'Enforcing' : 'AwaitingApproval', why);
    }
  } else if (phase === 'Monitoring') {
    if (spec.learning.autoEnforce) transition('Enforcing', 'Enforcing', 'autoEnforce set');
  } else if (phase === 'RolledBack' || phase === 'Failed') {
    if (specChanged) transition(afterPublish(), 'Resumed', `spec changed (generation ${generation})`);
  }

  // Continuous merge after publication: a changed or stale profile is republished once behaviour is stable
  // again; a spec-only change (explicit allow/deny) is republished at once.
  if (phase !== 'Learning') {
    for (const c of merged.containers) {
      const current = profiles.find((p) => p.container === c.container && !isPending(p, profiles));
      const differs = !current || current.hash !== c.hash || current.stale;
      if (differs && (stable || specChanged)) publish.add(c.container);
    }
  }

  // --- self-healing (only where something is enforced) ---
  const sh = spec.selfHealing;
  const cooldownMs = parseDurationMs(sh.cooldown);
  const lastActionMs = selfHealing.lastActionAt ? Date.parse(selfHealing.lastActionAt) : undefined;
  // Never in the reconcile that promotes or resumes: the violations must have been counted while enforcing
  // (the controller restarts its count when the phase changes).
  if (
    sh.enabled &&
    prev.phase === 'Enforcing' &&
    phase === 'Enforcing' &&
    input.violations.inWindow >= sh.threshold &&
    (lastActionMs === undefined || nowMs - lastActionMs >= cooldownMs)
  ) {
    action = sh.strategy;
    const reason = `${input.violations.inWindow} violations in ${sh.window} (threshold ${sh.threshold})`;
    selfHealing.lastAction = sh.strategy;
    selfHealing.lastActionAt = iso(nowMs);
    selfHealing.reason = reason;
    if (sh.strategy === 'Rollback') {
      transition(
        'RolledBack',
        'RolledBack',
        `${reason}: back to Monitor mode until the policy changes`,
        'Warning',
      );
    } else if (sh.strategy === 'Relearn') {
      transition('Learning', 'Relearning', `${reason}: learning again`, 'Warning');
      startedAtMs = nowMs;
      lastNewMs = undefined;
      publish.clear();
    } else {
      events.push({ type: 'Warning', reason: 'Relaxed', message: `${reason}: allowing what was denied` });
      for (const c of input.relaxed ?? merged.containers) {
        desiredByName.set(c.container, c);
        publish.add(c.container);
      }
    }
  }

  // --- profiles: new versions become current once every ready node has them ---
  const ready = input.readyNodes;
  const installedOn = (hash: string) => ready.filter((n) => input.installedByNode.get(n)?.has(hash)).length;
  for (const name of [...publish].sort()) {
    const d = desiredByName.get(name)!;
    const previous = profiles.filter((p) => p.container === name);
    if (previous.some((p) => p.hash === d.hash)) continue; // already published (the hash covers the images)
    // The image the webhook matches pods against: the one new to this container, else the last one.
    const known = new Set(
      previous.flatMap((p) => input.coveredImages?.get(p.profileName) ?? (p.image ? [p.image] : [])),
    );
    const image = d.images.filter((i) => !known.has(i)).at(-1) ?? d.images.at(-1);
    profiles.push({
      container: name,
      hash: d.hash,
      localhostProfile: d.localhostProfile,
      profileName: d.profileName,
      ...(image !== undefined ? { image } : {}),
      syscalls: d.syscalls,
      nodesInstalled: 0,
      nodesReady: ready.length,
      usable: false,
      stale: false,
      ...(d.withinRuntimeDefault !== undefined ? { withinRuntimeDefault: d.withinRuntimeDefault } : {}),
    });
    events.push({
      type: 'Normal',
      reason: 'ProfilePublished',
      message: `profile ${d.profileName} for container ${name}: ${d.syscalls} syscalls, hash ${d.hash.slice(0, 16)}`,
    });
  }
  for (const p of profiles) {
    p.nodesReady = ready.length;
    p.nodesInstalled = installedOn(p.hash);
    const wasUsable = p.usable;
    p.usable = ready.length > 0 && p.nodesInstalled === ready.length;
    if (p.usable && !wasUsable)
      events.push({
        type: 'Normal',
        reason: 'ProfileUsable',
        message: `profile ${p.profileName} installed on all ${ready.length} ready node(s)`,
      });
  }
  // Per container keep the newest usable version and any newer pending one; older versions are dropped.
  profiles = pruneVersions(profiles);

  // --- status ---
  let conditions = prev.conditions ?? [];
  const setC = (c: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>) =>
    (conditions = setCondition(conditions, c, nowMs, generation));
  setC(
    phase === 'Learning'
      ? {
          type: 'Learning',
          status: 'True',
          reason: hasData ? 'Observing' : 'NoObservations',
          message: `${stableWindows}/${spec.learning.stableWindows} stable window(s), ${merged.podsObserved} pod(s) on ${merged.nodesReporting} node(s)`,
        }
      : {
          type: 'Learning',
          status: 'False',
          reason: 'Published',
          message: 'learning finished, profiles published',
        },
  );
  const current = profiles.filter((p) => !isPending(p, profiles));
  const allUsable = current.length > 0 && current.every((p) => p.usable);
  setC(
    current.length === 0
      ? {
          type: 'ProfilesReady',
          status: 'False',
          reason: 'NotPublished',
          message: 'no profile published yet',
        }
      : allUsable && profiles.every((p) => p.usable)
        ? {
            type: 'ProfilesReady',
            status: 'True',
            reason: 'InstalledOnAllNodes',
            message: `${profiles.length} profile(s) installed on ${ready.length} ready node(s)`,
          }
        : {
            type: 'ProfilesReady',
            status: 'False',
            reason: 'WaitingForAcks',
            message: profiles
              .filter((p) => !p.usable)
              .map((p) => `${p.profileName}: ${p.nodesInstalled}/${p.nodesReady} nodes`)
              .join(', '),
          },
  );
  setC(
    phase === 'Enforcing'
      ? { type: 'Enforcing', status: 'True', reason: 'Enforcing', message: `mode ${spec.enforcement.mode}` }
      : {
          type: 'Enforcing',
          status: 'False',
          reason: phase === 'Monitoring' ? 'AwaitingApproval' : phase,
          message:
            phase === 'Monitoring'
              ? 'profiles published; set spec.learning.autoEnforce to enforce'
              : phase === 'RolledBack'
                ? `rolled back: ${selfHealing.reason ?? ''}`
                : `phase ${phase}`,
        },
  );
  const staleOnes = profiles.filter((p) => p.stale);
  setC(
    staleOnes.length > 0
      ? {
          type: 'Drifted',
          status: 'True',
          reason: 'ImageChanged',
          message: `re-learning ${staleOnes.map((p) => p.container).join(', ')}`,
        }
      : {
          type: 'Drifted',
          status: 'False',
          reason: 'ImagesMatch',
          message: 'profiles match the running images',
        },
  );
  const missing = input.nodeLayers.filter((n) => n.missing.length > 0);
  setC(
    missing.length > 0
      ? {
          type: 'Degraded',
          status: 'True',
          reason: 'LayersMissing',
          message: missing
            .map((n) => `${n.node}: ${n.missing.map((m) => `${m.layer} (${m.reason})`).join(', ')}`)
            .join('; '),
        }
      : {
          type: 'Degraded',
          status: 'False',
          reason: 'AllLayersActive',
          message: 'every reporting node enforces every layer',
        },
  );

  const status: PolicyStatus = {
    phase,
    observedGeneration: generation,
    conditions,
    learning: {
      startedAt: iso(startedAtMs),
      podsObserved: merged.podsObserved,
      nodesReporting: merged.nodesReporting,
      syscalls: t.syscalls,
      files: t.files,
      execs: t.execs,
      ports: t.ports,
      stableWindows: action === 'Relearn' ? 0 : stableWindows,
      ...(lastNewMs !== undefined ? { lastNewBehaviourAt: iso(lastNewMs) } : {}),
    },
    profiles,
    violations: {
      total: input.violations.total,
      byLayer: input.violations.byLayer,
      ...(input.violations.denied.length > 0
        ? {
            lastAt:
              input.violations.denied
                .map((d) => d.lastAt ?? '')
                .sort()
                .at(-1) || undefined,
            recent: [...input.violations.denied]
              .sort((a, b) => b.count - a.count || (a.what < b.what ? -1 : 1))
              .slice(0, 10)
              .map((d) => ({ layer: d.layer, container: d.container, what: d.what, count: d.count })),
          }
        : {}),
    },
    nodes: input.nodeLayers.map((n) => ({ node: n.node, active: n.active, missing: n.missing })),
    ...(Object.keys(selfHealing).length > 0 ? { selfHealing } : {}),
  };
  if (status.violations && status.violations.lastAt === undefined) delete status.violations.lastAt;
  return { status, publish: [...publish].sort(), events, ...(action ? { action } : {}) };
}

/** A version is pending while it is not usable and an older usable version of the same container exists. */
function isPending(p: PublishedProfile, all: PublishedProfile[]): boolean {
  return !p.usable && all.some((o) => o.container === p.container && o !== p && o.usable);
}

function pruneVersions(profiles: PublishedProfile[]): PublishedProfile[] {
  const out: PublishedProfile[] = [];
  const containers = [...new Set(profiles.map((p) => p.container))].sort();
  for (const c of containers) {
    const versions = profiles.filter((p) => p.container === c); // oldest first (publication order)
    const newest = versions.at(-1)!;
    if (newest.usable) out.push(newest);
    else {
      // Keep the newest usable one (still attached by the webhook) before the pending newest one.
      const usable = versions.filter((p) => p.usable).at(-1);
      if (usable) out.push(usable);
      out.push(newest);
    }
  }
  return out;
}
