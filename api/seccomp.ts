// The OCI LinuxSeccomp subset Pahlevan emits: containerd and CRI-O accept it as a Localhost profile.
// Docker-only fields (a singular `name`, `archMap`, `includes`) are never written: containerd ignores them.
import { z } from 'zod';

export const SeccompAction = z.enum([
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_LOG',
  'SCMP_ACT_KILL_PROCESS',
]);

export const OciSeccompProfile = z.object({
  defaultAction: SeccompAction,
  defaultErrnoRet: z.number().int().optional(),
  architectures: z.array(z.string()).optional(),
  flags: z.array(z.string()).optional(),
  syscalls: z.array(
    z.object({
      names: z.array(z.string().regex(/^[a-z_][a-z0-9_]*$/)).min(1),
      action: SeccompAction,
      errnoRet: z.number().int().optional(),
    }),
  ),
});
export type OciSeccompProfile = z.infer<typeof OciSeccompProfile>;

export const ARCH_AMD64 = 'SCMP_ARCH_X86_64';
export const ARCH_ARM64 = 'SCMP_ARCH_AARCH64';
