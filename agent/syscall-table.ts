// Syscall numbers -> names for the node's architecture, and the arm64 names of an x86_64 set.
import { ARM64_SYSCALLS, X86_64_SYSCALLS } from './syscall-table.generated.js';

export type Arch = 'x86_64' | 'aarch64';

export function nodeArch(): Arch {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'aarch64';
  throw new Error(`unsupported architecture ${process.arch}: Pahlevan knows x86_64 and arm64 syscall tables`);
}

const tables: Record<Arch, ReadonlyMap<number, string>> = {
  x86_64: X86_64_SYSCALLS,
  aarch64: ARM64_SYSCALLS,
};
const arm64Names = new Set(ARM64_SYSCALLS.values());

export function syscallName(nr: number, arch: Arch = nodeArch()): string | undefined {
  return tables[arch].get(nr);
}

export function syscallNumber(name: string, arch: Arch = nodeArch()): number | undefined {
  for (const [nr, n] of tables[arch]) if (n === name) return nr;
  return undefined;
}

/**
 * x86_64 legacy syscalls that arm64 never had: the same program built for arm64 makes the modern
 * call instead (glibc and musl implement open() with openat, stat() with newfstatat, fork() with clone...).
 */
const ARM64_EQUIVALENT: Readonly<Record<string, readonly string[]>> = {
  open: ['openat'],
  creat: ['openat'],
  stat: ['newfstatat'],
  lstat: ['newfstatat'],
  access: ['faccessat', 'faccessat2'],
  pipe: ['pipe2'],
  dup2: ['dup3'],
  poll: ['ppoll'],
  select: ['pselect6'],
  pause: ['ppoll'],
  epoll_wait: ['epoll_pwait'],
  epoll_create: ['epoll_create1'],
  inotify_init: ['inotify_init1'],
  eventfd: ['eventfd2'],
  signalfd: ['signalfd4'],
  mkdir: ['mkdirat'],
  mknod: ['mknodat'],
  rmdir: ['unlinkat'],
  unlink: ['unlinkat'],
  rename: ['renameat', 'renameat2'],
  link: ['linkat'],
  symlink: ['symlinkat'],
  readlink: ['readlinkat'],
  chmod: ['fchmodat'],
  chown: ['fchownat'],
  lchown: ['fchownat'],
  fork: ['clone'],
  vfork: ['clone'],
  getdents: ['getdents64'],
  utime: ['utimensat'],
  utimes: ['utimensat'],
  futimesat: ['utimensat'],
  alarm: ['setitimer'],
  getpgrp: ['getpgid'],
  time: ['clock_gettime'],
};

/** The arm64 names of a set of x86_64 syscall names (x86-only calls map to their arm64 equivalents). */
export function arm64NamesOf(x86Names: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const name of x86Names) {
    if (arm64Names.has(name)) out.add(name);
    for (const eq of ARM64_EQUIVALENT[name] ?? []) if (arm64Names.has(eq)) out.add(eq);
  }
  return [...out].sort();
}
