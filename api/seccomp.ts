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

/**
 * Syscalls a runtime may make after it installed the filter that a recording cannot be relied on to
 * see, because they depend on timing rather than on the workload. Everything else the runtime does under
 * the filter is learned, since the learner counts exactly the syscalls made under a seccomp filter.
 * - runc (Go): its init process keeps running Go code between seccomp() and execve(). Go's scheduler
 *   preempts goroutines with SIGURG (sysmon, asynchronous: it returns through rt_sigreturn) and parks and
 *   wakes threads with futex; whether either happens in that window is a race. PLATFORM.md measured
 *   runc 1.1.5 crashing in 5 of 40 starts without rt_sigreturn although no recording saw it.
 *   getpid + tgkill: how Go delivers the preemption signal to a thread; sched_yield, nanosleep: spinning
 *   and osyield in the same scheduler paths.
 * - crun (C, single-threaded): installs the filter immediately before execve and does nothing else,
 *   so no syscall is timing-dependent; execve itself is always learned.
 */
export const RUNTIME_TIMING_SYSCALLS: Readonly<Record<'runc' | 'crun', readonly string[]>> = {
  runc: ['futex', 'rt_sigreturn', 'getpid', 'tgkill', 'sched_yield', 'nanosleep'],
  crun: [],
};

/**
 * Syscalls that the kernel, not the program, makes happen, so a recording sees them only when a signal
 * arrived at the right moment: rt_sigreturn returns from any signal handler, restart_syscall resumes a
 * sleep (nanosleep, poll, futex wait) a signal interrupted. Every workload can need them at any time, and
 * the runtime's default profile allows both; a demo service crashed in half its runs without
 * restart_syscall.
 */
export const SIGNAL_SYSCALLS: readonly string[] = ['restart_syscall', 'rt_sigreturn'];

/** Every syscall a profile must allow whatever was recorded, for a node whose runtime is not known. */
export const ALWAYS_ALLOWED_SYSCALLS: readonly string[] = [
  ...new Set([...SIGNAL_SYSCALLS, ...Object.values(RUNTIME_TIMING_SYSCALLS).flat()]),
].sort();
