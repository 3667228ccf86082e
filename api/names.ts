// Label and annotation names, and the one function that turns validated names into a profile path.
import { createHash } from 'node:crypto';

export const LABEL_NAMESPACE_ENABLED = 'pahlevan.io/enabled';
export const LABEL_POLICY = 'pahlevan.io/policy';
export const LABEL_PROFILE_HASH = 'pahlevan.io/profile-hash';
/** JSON {containerName: image} recorded at admission, so the controller can see image drift. */
export const ANNOTATION_IMAGES = 'pahlevan.io/images';
export const SECCOMP_SUBDIR = 'pahlevan';

const DNS_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const HEX_HASH = /^[0-9a-f]{12,64}$/;

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The seccomp profile path relative to the kubelet seccomp root. Every part must already be a valid
 * Kubernetes name (DNS-1123) or a hex hash; anything else throws, so no input can escape
 * `<kubelet>/seccomp/pahlevan/`.
 */
export function localhostProfilePath(
  namespace: string,
  policy: string,
  container: string,
  hash: string,
): string {
  for (const [what, value] of [
    ['namespace', namespace],
    ['policy', policy],
    ['container', container],
  ] as const) {
    if (!DNS_NAME.test(value) || value.includes('..') || value.length > 253)
      throw new Error(`${what} ${JSON.stringify(value)} is not a valid Kubernetes name`);
  }
  if (!HEX_HASH.test(hash)) throw new Error(`profile hash ${JSON.stringify(hash)} is not a hex digest`);
  return `${SECCOMP_SUBDIR}/${namespace}/${policy}/${container}-${hash.slice(0, 16)}.json`;
}

/**
 * Where the agent installs the learning profile, relative to the kubelet seccomp root. Learning pods run
 * under it because the learner counts only what runs under a seccomp filter (bpf/LEARNER.md): the runtime's
 * setup before the filter (mount, pivot_root, sethostname, ...) then stays out of the learned profiles.
 */
export const LEARNING_PROFILE_PATH = `${SECCOMP_SUBDIR}/learning.json`;

/** A rule of the OCI LinuxSeccomp `syscalls` list, argument conditions included. */
export interface LearningProfileRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[];
}

/** The learning profile: an OCI LinuxSeccomp profile (written as the file's JSON). */
export interface LearningProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: LearningProfileRule[];
}

/** The runtime default in Docker's superset format (api/reference/containers-common-default-seccomp.json). */
export interface RuntimeDefaultReference {
  defaultAction: string;
  defaultErrnoRet?: number;
  archMap?: { architecture: string; subArchitectures?: string[] }[];
  syscalls?: {
    names?: string[];
    action: string;
    errnoRet?: number;
    args?: { index: number; value: number; valueTwo?: number; op: string }[] | null;
    includes?: { caps?: string[]; arches?: string[]; minKernel?: string };
    excludes?: { caps?: string[]; arches?: string[] };
  }[];
}

const DOCKER_ARCHES: Record<string, string[]> = {
  SCMP_ARCH_X86_64: ['amd64'],
  SCMP_ARCH_AARCH64: ['arm64'],
};

/**
 * The content of the learning profile: the runtime's default profile for `arch` as an OCI profile, with no
 * extra capabilities (the strictest the runtime default gets), so a pod that would have run RuntimeDefault
 * is not weakened while it learns. Rules keep their argument conditions and errno values; names the
 * architecture does not have (`archSyscalls`) are dropped, as libseccomp would. Only the architecture
 * itself is listed (learned profiles are single-architecture too).
 */
export function learningProfile(
  reference: RuntimeDefaultReference,
  archSyscalls: ReadonlySet<string>,
  arch = 'SCMP_ARCH_X86_64',
): LearningProfile {
  const dockerArches = DOCKER_ARCHES[arch];
  if (!dockerArches) throw new Error(`no runtime default for architecture ${arch}`);
  const syscalls: LearningProfileRule[] = [];
  for (const rule of reference.syscalls ?? []) {
    const inc = rule.includes ?? {};
    const exc = rule.excludes ?? {};
    // No capabilities: rules that need one are out, rules excluded by one stay in.
    if (inc.caps?.length) continue;
    if (inc.arches?.length && !inc.arches.some((a) => dockerArches.includes(a))) continue;
    if (exc.arches?.length && exc.arches.some((a) => dockerArches.includes(a))) continue;
    const names = (rule.names ?? []).filter((n) => archSyscalls.has(n));
    if (names.length === 0) continue;
    syscalls.push({
      names,
      action: rule.action,
      ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
      ...(rule.args?.length ? { args: rule.args.map((a) => ({ ...a })) } : {}),
    });
  }
  return {
    defaultAction: reference.defaultAction,
    ...(reference.defaultErrnoRet !== undefined ? { defaultErrnoRet: reference.defaultErrnoRet } : {}),
    architectures: [arch],
    syscalls,
  };
}
