// Shared checks for kernel tests: they run for real and fail naming what is missing, never skip.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is dist/test/helpers/kernel.js once built). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BPF_OUT = `${REPO_ROOT}bpf/.output/`;

/** Throws naming the first missing prerequisite. */
export function requireKernelTestPrerequisites(extra: { binaries?: string[] } = {}): void {
  if (process.getuid?.() !== 0) throw new Error('kernel tests must run as root (BPF, cgroups, containers)');
  if (!existsSync('/sys/kernel/btf/vmlinux'))
    throw new Error('kernel feature missing: BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)');
  for (const f of ['learner.bpf.o', 'bench_empty.bpf.o', 'pahlevan-bpfd', 'syscall-loop'])
    if (!existsSync(BPF_OUT + f))
      throw new Error(`build output missing: bpf/.output/${f} (run npm run build)`);
  for (const bin of ['runc', 'crun', 'busybox', 'unshare', ...(extra.binaries ?? [])]) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `required program missing: ${bin} (Debian package ${bin === 'unshare' ? 'util-linux' : bin})`,
      );
    }
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs = 10000): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

/** GET http://127.0.0.1:port/path -> "status body" (a new connection each time). */
export async function httpGet(port: number, path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: 'close' } });
  return `${res.status} ${await res.text()}`;
}
