// Pure profile generation: a learned syscall set -> the OCI LinuxSeccomp subset (api/seccomp.ts) that
// containerd, CRI-O, runc and crun accept. Deny by default (SCMP_ACT_ERRNO = EPERM), allow what was learned.
import {
  ARCH_AMD64,
  ARCH_ARM64,
  RUNTIME_TIMING_SYSCALLS,
  SIGNAL_SYSCALLS,
  type OciSeccompProfile,
} from '../api/seccomp.js';

export { RUNTIME_TIMING_SYSCALLS, SIGNAL_SYSCALLS };
import { arm64NamesOf, type Arch } from './syscall-table.js';
import type { Runtime } from './container.js';

export interface ProfileOptions {
  arch: Arch;
  /** Also list the arm64 names of the same set (for a cluster with arm64 nodes). */
  includeArm64?: boolean;
  /** Add the timing-dependent post-filter syscalls of the runtime(s) the profile is for. */
  runtime?: Runtime;
  runtimes?: Runtime[];
  /** Post-filter syscalls of other runtimes, learned by calibration (see recorder.ts), to add. */
  runtimeSyscalls?: Iterable<string>;
}

const ARCH_NAME: Record<Arch, string> = { x86_64: ARCH_AMD64, aarch64: ARCH_ARM64 };

export function buildSeccompProfile(syscalls: Iterable<string>, options: ProfileOptions): OciSeccompProfile {
  const names = new Set<string>();
  for (const s of syscalls) if (/^[a-z_][a-z0-9_]*$/.test(s)) names.add(s);
  const runtimes = new Set([...(options.runtime ? [options.runtime] : []), ...(options.runtimes ?? [])]);
  for (const r of runtimes) for (const s of RUNTIME_TIMING_SYSCALLS[r]) names.add(s);
  for (const s of options.runtimeSyscalls ?? []) if (/^[a-z_][a-z0-9_]*$/.test(s)) names.add(s);
  const architectures = [ARCH_NAME[options.arch]];
  if (options.includeArm64 && options.arch === 'x86_64') {
    architectures.push(ARCH_ARM64);
    for (const n of arm64NamesOf([...names])) names.add(n);
  }
  if (names.size === 0) throw new Error('no syscalls learned: nothing ran under the recording filter');
  for (const s of SIGNAL_SYSCALLS) names.add(s);
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures,
    syscalls: [{ names: [...names].sort(), action: 'SCMP_ACT_ALLOW' }],
  };
}
