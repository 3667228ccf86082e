// Loads the reference data the attack surface is measured against (api/reference/): the container runtime's
// default seccomp profile and the architecture's syscall table. Kept apart from the pure api/attack-surface.ts.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  allowedSyscalls,
  computeAttackSurface,
  type AttackSurfaceReport,
  type DockerSeccompProfile,
  type SurfaceBehaviour,
  type SurfaceInput,
} from './attack-surface.js';
import { learningProfile, type RuntimeDefaultReference } from './names.js';
import type { PortRule } from './policy.js';
import type { ProfileContent } from './profile.js';

// Compiled to dist/api/: the repository root is two levels up.
const REFERENCE_DIR = fileURLToPath(new URL('../../api/reference/', import.meta.url));

export interface SurfaceReference {
  arch: string;
  archSyscalls: Set<string>;
  runtimeDefault: Set<string>;
  runtimeDefaultName: string;
}

let cached: SurfaceReference | undefined;
let cachedDefault: RuntimeDefaultReference | undefined;

/** The runtime default profile as shipped (Docker's superset format). */
export function runtimeDefaultReference(): RuntimeDefaultReference {
  cachedDefault ??= JSON.parse(
    readFileSync(REFERENCE_DIR + 'containers-common-default-seccomp.json', 'utf8'),
  ) as RuntimeDefaultReference;
  return cachedDefault;
}

/** The learning profile file's content (api/names.ts learningProfile over the reference data). */
export function learningProfileContent(): string {
  const ref = loadSurfaceReference();
  return (
    JSON.stringify(learningProfile(runtimeDefaultReference(), ref.archSyscalls, ref.arch), null, 2) + '\n'
  );
}

/** The runtime default (containers-common, no extra capabilities) and the x86_64 syscall table. */
export function loadSurfaceReference(): SurfaceReference {
  if (cached) return cached;
  const table = JSON.parse(readFileSync(REFERENCE_DIR + 'syscalls-x86_64.json', 'utf8')) as {
    arch: string;
    syscalls: Record<string, number>;
  };
  const archSyscalls = new Set(Object.keys(table.syscalls));
  const defaultProfile = runtimeDefaultReference() as DockerSeccompProfile;
  cached = {
    arch: table.arch,
    archSyscalls,
    runtimeDefault: allowedSyscalls(defaultProfile, archSyscalls, { arch: table.arch, caps: [] }),
    runtimeDefaultName: 'containers-common default (CRI-O, Podman)',
  };
  return cached;
}

/**
 * The attack surface of one container against the runtime default of this architecture: what the controller
 * puts in a policy's status (through toStatus) and what `pahlevan surface` and `pahlevan demo` print.
 */
export function attackSurfaceOf(
  container: string,
  profile: SurfaceInput['profile'],
  behaviour?: SurfaceBehaviour,
  spec?: SurfaceInput['spec'],
): AttackSurfaceReport {
  const ref = loadSurfaceReference();
  return computeAttackSurface({
    container,
    profile,
    ...(behaviour ? { behaviour } : {}),
    ...(spec ? { spec } : {}),
    runtimeDefault: ref.runtimeDefault,
    archSyscalls: ref.archSyscalls,
    arch: ref.arch,
  });
}

/**
 * The attack surface of a published profile's content (api/profile.ts: seccomp + allow-lists merged over all
 * nodes, the policy's explicit additions included): what the controller writes to status.attackSurface.
 */
export function surfaceOfContent(
  container: string,
  content: ProfileContent,
  spec?: SurfaceInput['spec'],
): AttackSurfaceReport {
  const behaviour: SurfaceBehaviour = {
    execs: content.execs,
    files: content.files.map((f) => ({ path: f.path, write: f.write })),
    listening: [],
    egress: [],
  };
  const extraRules: { ingress: PortRule[]; egress: PortRule[] } = { ingress: [], egress: [] };
  for (const p of content.ports) {
    const protocol = p.protocol === 'UDP' ? 'udp' : 'tcp';
    const ranged = (p.endPort !== undefined && p.endPort !== p.port) || p.cidr !== undefined;
    if (!ranged && p.port > 0)
      (p.direction === 'listen' ? behaviour.listening : behaviour.egress).push({ protocol, port: p.port });
    else if (p.port > 0)
      (p.direction === 'listen' ? extraRules.ingress : extraRules.egress).push({
        protocol: p.protocol,
        port: p.port,
        ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
        ...(p.cidr !== undefined ? { cidr: p.cidr } : {}),
      });
  }
  const network = spec?.network;
  const merged: SurfaceInput['spec'] = {
    ...(spec ?? {}),
    network: {
      allowDNS: network?.allowDNS ?? false,
      allowLoopback: network?.allowLoopback ?? false,
      ingress: [...(network?.ingress ?? []), ...extraRules.ingress],
      egress: [...(network?.egress ?? []), ...extraRules.egress],
    },
  };
  return attackSurfaceOf(container, content.seccomp, behaviour, merged);
}
