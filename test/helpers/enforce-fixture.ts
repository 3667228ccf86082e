// Shared by the enforcement kernel tests and bench/enforce.ts: records the probe server
// (test/helpers/probe-server.py) in a real runc container, so enforcement starts from a real learned
// profile, and talks to it over HTTP.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRecording, writeRecording } from '../../agent/recorder.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/dist\/$/, '/');
export const PROBE_SERVER = `${REPO_ROOT}test/helpers/probe-server.py`;
/** keyctl on x86_64: a syscall the probe server never makes while recorded. */
export const UNLEARNED_SYSCALL_NR = 250;

export interface ProbeResult {
  ok: boolean;
  errno?: string;
}

export async function probe(
  address: string,
  port: number,
  path: string,
  timeoutMs = 8000,
): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${address}:${port}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
      return (await res.json()) as ProbeResult;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`probe server at ${address}:${port} did not answer ${path}: ${String(last)}`);
}

export function listen(address: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => s.end());
    server.once('error', reject);
    server.listen(port, address, () => resolve(server));
  });
}

/** Tries a TCP connection: 'connected', 'refused' (RST), or 'timeout' (no answer: dropped). */
export function tcpAttempt(address: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? 'error'));
    });
  });
}

export interface RecordedProbe {
  dir: string;
  profileDir: string;
  dataDir: string;
  serverPort: number;
  learnedEgressPort: number;
  mounts: Array<{ destination: string; type: string; source: string; options: string[] }>;
  cleanup(): void;
}

/**
 * Records the probe server doing its normal job: serve HTTP on serverPort, connect to
 * learnedEgressPort, read /pvt/learned.txt, run /bin/true, load its syscall helper (no unlearned call).
 */
export async function recordProbe(runtime: 'runc' | 'crun' = 'runc'): Promise<RecordedProbe> {
  const dir = mkdtempSync(join(tmpdir(), 'pvt-enforce-'));
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  writeFileSync(join(dataDir, 'learned.txt'), 'learned\n');
  writeFileSync(join(dataDir, 'secret.txt'), 'secret\n');
  const serverPort = 20000 + (process.pid % 10000);
  const learnedEgressPort = serverPort + 1;
  const mounts = [{ destination: '/pvt', type: 'bind', source: dataDir, options: ['rbind', 'ro'] }];
  const upstream = await listen('127.0.0.1', learnedEgressPort);
  // Our own learner pins (RULES: unique bpffs dirs per test run); removed with the pins' links after.
  const pinDir = `/sys/fs/bpf/pahlevan-enftest-${process.pid}`;
  try {
    const recording = await startRecording({
      pinDir,
      runtime,
      command: ['python3', '-S', PROBE_SERVER, String(serverPort)],
      net: 'host',
      mounts,
      stdio: 'pipe',
    });
    const steps = [
      '/ping',
      `/connect?host=127.0.0.1&port=${learnedEgressPort}`,
      '/open?path=/pvt/learned.txt',
      '/exec?path=/bin/true',
      `/burst?nr=${UNLEARNED_SYSCALL_NR}&n=0`,
      '/ping',
    ];
    try {
      for (const s of steps) {
        const r = await probe('127.0.0.1', serverPort, s, 20000);
        if (!r.ok) throw new Error(`recording step ${s} failed: ${JSON.stringify(r)}`);
      }
    } catch (err) {
      await recording.stop().catch(() => undefined);
      throw err;
    }
    const result = await recording.stop();
    const profileDir = join(dir, 'profile');
    writeRecording(profileDir, result);
    return {
      dir,
      profileDir,
      dataDir,
      serverPort,
      learnedEgressPort,
      mounts,
      cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    upstream.close();
    rmSync(pinDir, { recursive: true, force: true });
  }
}
