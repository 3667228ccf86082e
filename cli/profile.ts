// `pahlevan profile get NAME [-o oci|spo]` and `pahlevan profile merge FILE...`.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import { POLICY_PLURAL, PolicySpec, formatIssue } from '../api/policy.js';
import { OBSERVATION_KIND, ObservationSpec } from '../api/observation.js';
import { mergeObservations } from '../webhook/controller/merge.js';
import type { PahlevanPolicy } from '../api/policy.js';
import { OciSeccompProfile } from '../api/seccomp.js';
import { PROFILE_PLURAL, type PahlevanProfile } from '../api/profile.js';
import {
  action,
  addKubeOptions,
  CliError,
  connect,
  crdMissing,
  explain,
  type KubeOptions,
} from './kube-context.js';

type Action = OciSeccompProfile['defaultAction'];
/** Most permissive first: merging keeps the more permissive action for a syscall (a union of behaviour). */
const PERMISSIVENESS: Action[] = [
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_KILL_PROCESS',
];

/**
 * Union of OCI seccomp profiles: a syscall allowed by any input is allowed. Inputs must agree on the
 * default action (merging an allow-list with a deny-list has no meaning); architectures are united.
 */
export function mergeOciProfiles(profiles: OciSeccompProfile[]): OciSeccompProfile {
  if (profiles.length === 0) throw new CliError('nothing to merge: give at least one profile file');
  const defaults = new Set(profiles.map((p) => p.defaultAction));
  if (defaults.size > 1)
    throw new CliError(
      `the profiles have different default actions (${[...defaults].join(', ')}): merge only profiles of one kind`,
    );
  const defaultAction = profiles[0]!.defaultAction;
  const best = new Map<string, { action: Action; errnoRet?: number }>();
  for (const p of profiles)
    for (const rule of p.syscalls)
      for (const name of rule.names) {
        const current = best.get(name);
        if (!current || PERMISSIVENESS.indexOf(rule.action) < PERMISSIVENESS.indexOf(current.action))
          best.set(name, {
            action: rule.action,
            ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
          });
      }
  const groups = new Map<string, { names: string[]; action: Action; errnoRet?: number }>();
  for (const [name, rule] of [...best].sort(([a], [b]) => a.localeCompare(b))) {
    if (rule.action === defaultAction) continue; // same as the default: no rule needed
    const key = `${rule.action}/${rule.errnoRet ?? ''}`;
    let g = groups.get(key);
    if (!g) {
      g = {
        names: [],
        action: rule.action,
        ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
      };
      groups.set(key, g);
    }
    g.names.push(name);
  }
  const architectures = [...new Set(profiles.flatMap((p) => p.architectures ?? []))].sort();
  const errno = profiles.find((p) => p.defaultErrnoRet !== undefined)?.defaultErrnoRet;
  return {
    defaultAction,
    ...(errno !== undefined ? { defaultErrnoRet: errno } : {}),
    ...(architectures.length ? { architectures } : {}),
    syscalls: [...groups.values()].sort(
      (a, b) => PERMISSIVENESS.indexOf(a.action) - PERMISSIVENESS.indexOf(b.action),
    ),
  };
}

/**
 * The OCI profiles in a file's text: a bare OCI profile (JSON or YAML), a PahlevanProfile (its
 * spec.seccomp), an SPO SeccompProfile (its spec), or several of them as YAML documents or a List.
 * PahlevanNodeObservation objects (raw learned behaviour, e.g. `kubectl get pahlevannodeobservations -o
 * yaml`) are returned apart: they are merged with the controller's own merge.
 */
export function documentsFromText(
  text: string,
  source: string,
): { profiles: OciSeccompProfile[]; observations: ObservationSpec[] } {
  let docs: unknown[];
  try {
    docs = parseAllDocuments(text).map((d) => {
      if (d.errors.length) throw new Error(d.errors[0]!.message);
      return d.toJS() as unknown;
    });
  } catch (err) {
    throw new CliError(`${source}: not JSON or YAML (${(err as Error).message})`);
  }
  const profiles: OciSeccompProfile[] = [];
  const observations: ObservationSpec[] = [];
  const visit = (doc: unknown): void => {
    if (doc === null || doc === undefined) return;
    const obj = doc as { kind?: string; items?: unknown[]; spec?: { seccomp?: unknown } };
    let candidate: unknown = doc;
    if (obj.kind === 'List' && Array.isArray(obj.items)) return obj.items.forEach(visit);
    if (obj.kind === OBSERVATION_KIND) {
      const parsed = ObservationSpec.safeParse(obj.spec);
      if (!parsed.success)
        throw new CliError(
          `${source}: not a valid ${OBSERVATION_KIND} (${parsed.error.issues.slice(0, 3).map(formatIssue).join('; ')})`,
        );
      observations.push(parsed.data);
      return;
    }
    if (obj.kind === 'PahlevanProfile') candidate = obj.spec?.seccomp;
    else if (obj.kind === 'SeccompProfile') candidate = obj.spec;
    const parsed = OciSeccompProfile.safeParse(candidate);
    if (!parsed.success)
      throw new CliError(
        `${source}: not a seccomp profile (${parsed.error.issues.slice(0, 3).map(formatIssue).join('; ')})`,
      );
    profiles.push(parsed.data);
  };
  docs.forEach(visit);
  if (profiles.length === 0 && observations.length === 0) throw new CliError(`${source}: no profile in it`);
  return { profiles, observations };
}

export function profilesFromText(text: string, source: string): OciSeccompProfile[] {
  const { profiles, observations } = documentsFromText(text, source);
  return [...profiles, ...seccompFromObservations(observations)];
}

/**
 * Node observations merged exactly as the controller merges them (union over nodes, the runtime's
 * required syscalls, no policy additions), one seccomp profile per container name (or only `container`).
 */
export function seccompFromObservations(
  observations: ObservationSpec[],
  container?: string,
): OciSeccompProfile[] {
  if (observations.length === 0) return [];
  const merged = mergeObservations(PolicySpec.parse({ selector: {} }), observations);
  const chosen = merged.containers.filter((c) => container === undefined || c.container === container);
  if (chosen.length === 0)
    throw new CliError(
      `no observations for container ${container}; they cover ${merged.containers.map((c) => c.container).join(', ')}`,
    );
  return chosen.map((c) => c.content.seccomp);
}

/** A Security Profiles Operator SeccompProfile object carrying the same profile. */
export function toSpoSeccompProfile(
  name: string,
  namespace: string,
  profile: OciSeccompProfile,
  labels: Record<string, string> = {},
): Record<string, unknown> {
  return {
    apiVersion: 'security-profiles-operator.x-k8s.io/v1beta1',
    kind: 'SeccompProfile',
    metadata: { name, namespace, ...(Object.keys(labels).length ? { labels } : {}) },
    spec: {
      defaultAction: profile.defaultAction,
      ...(profile.architectures ? { architectures: profile.architectures } : {}),
      syscalls: profile.syscalls.map((s) => ({
        action: s.action,
        names: s.names,
        ...(s.errnoRet !== undefined ? { errnoRet: s.errnoRet } : {}),
      })),
    },
  };
}

interface GetOptions extends KubeOptions {
  output: string;
  container?: string;
}

export function register(program: Command): void {
  const profile = program.command('profile').description('Export and merge learned seccomp profiles');

  addKubeOptions(
    profile
      .command('get')
      .description(
        "A policy's published (merged) profile, as an OCI seccomp profile or an SPO SeccompProfile",
      )
      .argument('<name>', 'policy name, or a PahlevanProfile name (<policy>.<container>.<hash>)')
      .option('-c, --container <name>', 'container (when the policy covers several)')
      .option('-o, --output <format>', 'oci or spo', 'oci'),
  ).action(
    action(async (name: string, opts: GetOptions) => {
      if (!['oci', 'spo'].includes(opts.output)) throw new CliError(`-o ${opts.output}: choose oci or spo`);
      const { kc, objects, namespace } = connect(opts);
      const read = async <T>(plural: string, n: string): Promise<T | undefined> =>
        objects.get<T>(plural, namespace, n).catch((err: unknown) => {
          throw crdMissing(err, 'Pahlevan') ?? explain(err, `reading ${n}`, kc);
        });
      let object: PahlevanProfile | undefined;
      if (name.includes('.')) object = await read<PahlevanProfile>(PROFILE_PLURAL, name);
      else {
        const policy = await read<PahlevanPolicy>(POLICY_PLURAL, name);
        if (!policy)
          throw new CliError(
            `no PahlevanPolicy ${name} in namespace ${namespace}: list them with \`pahlevan status -n ${namespace}\`.`,
          );
        const published = policy.status?.profiles ?? [];
        if (published.length === 0)
          throw new CliError(
            `PahlevanPolicy ${namespace}/${name} has no published profile yet (phase ${policy.status?.phase ?? 'Pending'}): ` +
              `follow it with \`pahlevan status ${name} -n ${namespace} --watch\`, or end learning with \`pahlevan trace stop ${name}\`.`,
          );
        const containers = [...new Set(published.map((p) => p.container))];
        const container = opts.container ?? (containers.length === 1 ? containers[0] : undefined);
        if (!container)
          throw new CliError(
            `PahlevanPolicy ${name} covers containers ${containers.join(', ')}: choose one with -c.`,
          );
        const entry = published.filter((p) => p.container === container).at(-1);
        if (!entry)
          throw new CliError(
            `PahlevanPolicy ${name} has no profile for container ${container} (it has ${containers.join(', ')}).`,
          );
        object = await read<PahlevanProfile>(PROFILE_PLURAL, entry.profileName);
        if (!object)
          throw new CliError(
            `PahlevanProfile ${entry.profileName} is listed in the policy status but missing; try again shortly.`,
          );
      }
      if (!object) throw new CliError(`no PahlevanProfile ${name} in namespace ${namespace}.`);
      if (opts.output === 'oci') process.stdout.write(JSON.stringify(object.spec.seccomp, null, 2) + '\n');
      else
        process.stdout.write(
          stringify(
            toSpoSeccompProfile(
              `${object.spec.policy}-${object.spec.container}`,
              namespace,
              object.spec.seccomp,
              {
                'pahlevan.io/policy': object.spec.policy,
                'pahlevan.io/profile-hash': object.spec.hash.slice(0, 16),
              },
            ),
          ),
        );
    }),
  );

  profile
    .command('merge')
    .description(
      'Merge seccomp profiles offline: OCI JSON, PahlevanProfile, SPO SeccompProfile or PahlevanNodeObservation files (union)',
    )
    .argument('<files...>', 'profile files (- for stdin)')
    .option('-o, --output <format>', 'oci or spo', 'oci')
    .option('--name <name>', 'name of the SPO object', 'merged')
    .option('-c, --container <name>', 'with node observations: the container to build the profile of')
    .action(
      action(async (files: string[], opts: { output: string; name: string; container?: string }) => {
        if (!['oci', 'spo'].includes(opts.output)) throw new CliError(`-o ${opts.output}: choose oci or spo`);
        const profiles: OciSeccompProfile[] = [];
        const observations: ObservationSpec[] = [];
        for (const f of files) {
          let text: string;
          try {
            text = readFileSync(f === '-' ? 0 : f, 'utf8');
          } catch (err) {
            throw new CliError(`cannot read ${f}: ${(err as Error).message}`);
          }
          const docs = documentsFromText(text, f);
          profiles.push(...docs.profiles);
          observations.push(...docs.observations);
        }
        profiles.push(...seccompFromObservations(observations, opts.container));
        const merged = mergeOciProfiles(profiles);
        process.stdout.write(
          opts.output === 'oci'
            ? JSON.stringify(merged, null, 2) + '\n'
            : stringify(toSpoSeccompProfile(opts.name, 'default', merged)),
        );
      }),
    );
}
