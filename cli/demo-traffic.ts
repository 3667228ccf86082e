// Traffic for `pahlevan demo`: the normal requests a user makes (learned, then replayed under enforcement) and
// the attack script, over plain HTTP to the sample service (cli/demo-assets/service.py) on loopback.
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  latencyMs: number;
}

/** One GET; resolves with the status, the JSON body and the wall time, rejects on transport errors. */
export function get(port: number, path: string, timeoutMs = 5000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          body = { ok: false, error: `not JSON: ${text.slice(0, 80)}` };
        }
        resolve({ status: res.statusCode ?? 0, body, latencyMs });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Waits until the service answers /health (the container is up), or throws after timeoutMs. */
export async function waitForService(
  port: number,
  timeoutMs: number,
  alive?: () => boolean,
): Promise<number> {
  const started = Date.now();
  let lastError = '';
  while (Date.now() - started < timeoutMs) {
    if (alive && !alive()) throw new Error('the service container exited before it answered');
    try {
      const r = await get(port, '/health', 1000);
      if (r.status === 200) return Date.now() - started;
      lastError = `status ${r.status}`;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `the sample service did not answer on 127.0.0.1:${port} within ${timeoutMs} ms (${lastError})`,
  );
}

/** The normal user journey: browse items, load static files, health checks, version. */
export const NORMAL_PATHS = [
  '/health',
  '/api/items',
  '/api/items/1',
  '/api/items/3',
  '/static?name=index.html',
  '/static?name=style.css',
  '/api/version',
  '/api/items/9',
];

export interface TrafficResult {
  requests: number;
  succeeded: number;
  failures: { path: string; status: number; error: string }[];
  latenciesMs: number[];
}

/** Sends `rounds` rounds of the normal journey, one request at a time; onProgress after each request. */
export async function normalTraffic(
  port: number,
  rounds: number,
  onProgress?: (done: number, total: number) => void,
): Promise<TrafficResult> {
  const total = rounds * NORMAL_PATHS.length;
  const result: TrafficResult = { requests: 0, succeeded: 0, failures: [], latenciesMs: [] };
  for (let round = 0; round < rounds; round++) {
    for (const path of NORMAL_PATHS) {
      result.requests++;
      try {
        const r = await get(port, path);
        // /api/items/9 is a normal 404: the service answering as designed is a success.
        const expected = path === '/api/items/9' ? r.status === 404 : r.status === 200 && r.body.ok === true;
        if (expected) result.succeeded++;
        else
          result.failures.push({ path, status: r.status, error: String(r.body.error ?? r.body.errno ?? '') });
        // The first round warms caches (the first container start reads python from disk): not measured.
        if (round > 0 || rounds === 1) result.latenciesMs.push(r.latencyMs);
      } catch (err) {
        result.failures.push({ path, status: 0, error: (err as Error).message });
      }
      onProgress?.(result.requests, total);
    }
  }
  return result;
}

export interface AttackStep {
  id: string;
  title: string;
  /** The layer expected to stop it (what the report compares the counted violations with). */
  layer: 'execs' | 'files' | 'network' | 'syscalls';
  path: (ctx: { exfilPort: number; secretRelative: string }) => string;
}

export const ATTACK_STEPS: AttackStep[] = [
  {
    id: 'shell',
    title: 'spawn a shell',
    layer: 'execs',
    path: () => '/api/version?cmd=' + encodeURIComponent('/bin/sh -c id'),
  },
  {
    id: 'secret',
    title: 'read a secret file',
    layer: 'files',
    path: ({ secretRelative }) => '/static?name=' + encodeURIComponent(secretRelative),
  },
  {
    id: 'egress',
    title: 'connect out (exfiltrate)',
    layer: 'network',
    path: ({ exfilPort }) => `/api/webhook?port=${exfilPort}`,
  },
  {
    id: 'ptrace',
    title: 'dangerous syscall (ptrace)',
    layer: 'syscalls',
    path: () => '/debug/trace',
  },
];

export interface AttackOutcome {
  id: string;
  title: string;
  layer: string;
  succeeded: boolean;
  /** The service answered that the kernel refused the operation (EPERM/EACCES): blocked, not crashed. */
  blocked: boolean;
  /** What the service saw: errno name, output excerpt or the transport error. */
  detail: string;
}

const REFUSED = new Set(['EPERM', 'EACCES']);

export async function runAttack(
  step: AttackStep,
  port: number,
  ctx: { exfilPort: number; secretRelative: string },
): Promise<AttackOutcome> {
  const base = { id: step.id, title: step.title, layer: step.layer };
  try {
    const r = await get(port, step.path(ctx));
    const ok = r.status === 200 && r.body.ok === true;
    const errno = typeof r.body.errno === 'string' ? r.body.errno : undefined;
    const detail = ok
      ? String(r.body.output ?? r.body.content ?? r.body.ptrace ?? (r.body.sent ? 'sent' : 'ok'))
          .trim()
          .slice(0, 40)
      : String(errno ?? r.body.error ?? `HTTP ${r.status}`);
    return { ...base, succeeded: ok, blocked: !ok && errno !== undefined && REFUSED.has(errno), detail };
  } catch (err) {
    // No answer at all: the service is down. That is a failure of the demo, never a "block".
    return { ...base, succeeded: false, blocked: false, detail: `no answer: ${(err as Error).message}` };
  }
}

/** A listener on loopback standing in for the attacker's server; counts what reaches it. */
export async function exfilListener(): Promise<{
  port: number;
  received: () => number;
  close: () => Promise<void>;
}> {
  let received = 0;
  const server: Server = createServer((socket) => {
    socket.on('data', () => {
      received++;
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('exfil listener has no port');
  return {
    port: address.port,
    received: () => received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface LatencyStats {
  count: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
}

export function latencyStats(samplesMs: readonly number[]): LatencyStats {
  if (samplesMs.length === 0) return { count: 0, p50Ms: 0, p99Ms: 0, meanMs: 0 };
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const round3 = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    count: sorted.length,
    p50Ms: round3(at(0.5)),
    p99Ms: round3(at(0.99)),
    meanMs: round3(sorted.reduce((s, x) => s + x, 0) / sorted.length),
  };
}
