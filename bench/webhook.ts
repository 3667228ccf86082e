// `npm run bench:webhook`: /mutate-pods throughput and latency over HTTPS keep-alive, next to a bare fastify
// TLS JSON echo measured in the same run with the same client. Each server runs in its own process (as in
// production); the client is this process. Prints throughput ratio and p50/p99, closed loop and at a fixed
// 1,000 requests/s (latency measured from the scheduled send time, so queueing is not hidden).
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { ensureCerts } from '../certs/certs.js';
import { startWebhookServer } from '../webhook/server.js';
import { StaticPolicySource } from '../webhook/policy-cache.js';
import { handleReview } from '../webhook/handler.js';
import { policy, review, webPod } from '../test/helpers/admission-fixtures.js';

type Kind = 'echo' | 'webhook';

async function serve(kind: Kind, certDir: string): Promise<void> {
  let port: number;
  if (kind === 'webhook') {
    const server = await startWebhookServer({
      port: 0,
      host: '127.0.0.1',
      certDir,
      policies: new StaticPolicySource([
        policy(),
        policy({ name: 'other', spec: { selector: { matchLabels: { app: 'api' } } } }),
      ]),
      namespace: 'pahlevan-system',
    });
    port = server.port;
  } else {
    const app = Fastify({
      https: { key: readFileSync(join(certDir, 'tls.key')), cert: readFileSync(join(certDir, 'tls.crt')) },
      bodyLimit: 7 * 1024 * 1024,
      keepAliveTimeout: 75_000,
    });
    app.post('/echo', async (req) => req.body);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    port = typeof address === 'object' && address ? address.port : 0;
  }
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
    if (m === 'exit') process.exit(0); // a clean exit lets --cpu-prof write its profile
  });
  process.send!({ port });
}

function post(agent: Agent, url: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.on('data', () => {});
        res.on('end', () =>
          res.statusCode === 200 ? resolve(res.statusCode) : reject(new Error(`status ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Result {
  requests: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  serverCpuMicrosPerRequest?: number;
}

async function closedLoop(
  agent: Agent,
  url: string,
  body: Buffer,
  concurrency: number,
  durationMs: number,
): Promise<Result> {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + durationMs;
  const start = performance.now();
  await Promise.all(
    [...Array(concurrency)].map(async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await post(agent, url, body);
          latencies.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsedS = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    perSecond: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
  };
}

async function fixedRate(
  agent: Agent,
  url: string,
  body: Buffer,
  ratePerS: number,
  durationMs: number,
): Promise<Result> {
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  let sent = 0;
  const total = Math.floor((ratePerS * durationMs) / 1000);
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * ratePerS) / 1000));
    for (; sent < due; sent++) {
      const scheduled = start + (sent * 1000) / ratePerS;
      pending.push(
        post(agent, url, body).then(
          () => void latencies.push(performance.now() - scheduled),
          () => void errors++,
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    perSecond: latencies.length / ((performance.now() - start) / 1000),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-bench-${process.pid}-`));
  const children: ReturnType<typeof fork>[] = [];
  try {
    ensureCerts(dir, ['127.0.0.1']);
    const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const childOf: Partial<Record<Kind, ReturnType<typeof fork>>> = {};
    const cpuMicros = (kind: Kind) =>
      new Promise<number>((resolve) => {
        const child = childOf[kind]!;
        child.once('message', (m) => {
          const { cpu } = m as { cpu: NodeJS.CpuUsage };
          resolve(cpu.user + cpu.system);
        });
        child.send('cpu');
      });
    const start = async (kind: Kind) => {
      // BENCH_CPU_PROF=DIR writes a CPU profile of each server process into DIR
      const profileDir = process.env.BENCH_CPU_PROF;
      const child = fork(fileURLToPath(import.meta.url), ['serve', kind, dir], {
        stdio: 'inherit',
        execArgv: profileDir
          ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${kind}.cpuprofile`]
          : [],
      });
      children.push(child);
      childOf[kind] = child;
      const { port } = await new Promise<{ port: number }>((resolve, reject) => {
        child.once('message', (m) => resolve(m as { port: number }));
        child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
      });
      return `https://127.0.0.1:${port}`;
    };
    const targets: Record<Kind, { url: string; body: Buffer }> = {
      echo: { url: `${await start('echo')}/echo`, body: Buffer.from(JSON.stringify(review(webPod()))) },
      webhook: {
        url: `${await start('webhook')}/mutate-pods`,
        body: Buffer.from(JSON.stringify(review(webPod()))),
      },
    };
    const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
    const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
    const closedMs = Number(process.env.BENCH_CLOSED_MS ?? 2500);
    const rate = Number(process.env.BENCH_RATE ?? 1000);
    const rateMs = Number(process.env.BENCH_RATE_MS ?? 2500);
    console.log(
      `pod review ${targets.webhook.body.length} bytes; HTTPS keep-alive, ${concurrency} connections; client and servers on 127.0.0.1, each server in its own process; ${rounds} interleaved rounds`,
    );
    const closed: Record<Kind, Result[]> = { echo: [], webhook: [] };
    const fixed: Record<Kind, Result[]> = { echo: [], webhook: [] };
    const agents: Record<Kind, Agent> = {
      echo: new Agent({ keepAlive: true, maxSockets: concurrency, ca }),
      webhook: new Agent({ keepAlive: true, maxSockets: concurrency, ca }),
    };
    for (const kind of ['echo', 'webhook'] as Kind[])
      await closedLoop(agents[kind], targets[kind].url, targets[kind].body, concurrency, 1500); // warm-up
    // Short interleaved rounds, alternating order: load from other work on a shared machine hits both alike,
    // and each round's ratio compares two measurements taken seconds apart.
    for (let round = 0; round < rounds; round++)
      for (const kind of (round % 2 ? ['webhook', 'echo'] : ['echo', 'webhook']) as Kind[]) {
        const { url, body } = targets[kind];
        const cpuBefore = await cpuMicros(kind);
        const result = await closedLoop(agents[kind], url, body, concurrency, closedMs);
        result.serverCpuMicrosPerRequest = ((await cpuMicros(kind)) - cpuBefore) / result.requests;
        closed[kind].push(result);
        fixed[kind].push(await fixedRate(agents[kind], url, body, rate, rateMs));
      }
    const median = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)]!;
    };
    const med = (rs: Result[], key: 'perSecond' | 'p50Ms' | 'p99Ms' | 'serverCpuMicrosPerRequest') =>
      median(rs.map((r) => r[key] ?? NaN));
    const fmt = (n: number) => n.toFixed(n < 10 ? 2 : 0);
    console.log(
      `\n(medians over rounds)  closed loop: req/s   p50 ms   p99 ms   server CPU us/req  |  at ${rate} req/s: p50 ms   p99 ms   errors`,
    );
    for (const kind of ['echo', 'webhook'] as Kind[]) {
      const c = closed[kind];
      const f = fixed[kind];
      const errors = [...c, ...f].reduce((n, r) => n + r.errors, 0);
      console.log(
        `${(kind === 'echo' ? 'bare fastify TLS echo' : 'pahlevan /mutate-pods').padEnd(22)} ${fmt(med(c, 'perSecond')).padStart(18)}   ${fmt(med(c, 'p50Ms')).padStart(6)}   ${fmt(med(c, 'p99Ms')).padStart(6)}   ${fmt(med(c, 'serverCpuMicrosPerRequest')).padStart(17)}  |  ${fmt(med(f, 'p50Ms')).padStart(20)}   ${fmt(med(f, 'p99Ms')).padStart(6)}   ${errors}`,
      );
    }
    const roundRatios = closed.webhook.map((w, i) => w.perSecond / closed.echo[i]!.perSecond);
    const cpuRatios = closed.webhook.map(
      (w, i) => closed.echo[i]!.serverCpuMicrosPerRequest! / w.serverCpuMicrosPerRequest!,
    );
    console.log(
      `\nthroughput ratio /mutate-pods : echo = ${median(roundRatios).toFixed(2)}x median (rounds: ${roundRatios.map((r) => r.toFixed(2)).join(' ')}); goal >= 0.8x`,
    );
    console.log(
      `server CPU capacity ratio (echo CPU per request / webhook CPU per request) = ${median(cpuRatios).toFixed(2)}x median`,
    );
    console.log(
      `/mutate-pods at ${rate} req/s: p50 ${med(fixed.webhook, 'p50Ms').toFixed(2)} ms, p99 ${med(fixed.webhook, 'p99Ms').toFixed(2)} ms (median of rounds; goal p99 <= 5 ms); echo p99 ${med(fixed.echo, 'p99Ms').toFixed(2)} ms`,
    );
    // the admission decision alone, in this process: parse + handleReview vs parse only (same body)
    const text = targets.webhook.body.toString();
    const policies = [policy()];
    const perOpMicros = (fn: () => void, n: number) => {
      for (let i = 0; i < n / 10; i++) fn();
      // CPU time, not wall time: on a shared machine other processes' load does not count
      const before = process.cpuUsage();
      for (let i = 0; i < n; i++) fn();
      const used = process.cpuUsage(before);
      return (used.user + used.system) / n;
    };
    const parseOnly = perOpMicros(() => JSON.parse(text), 20_000);
    const decision = perOpMicros(() => handleReview('mutate-pods', JSON.parse(text), policies), 20_000);
    console.log(
      `in-process CPU: JSON.parse of the review ${parseOnly.toFixed(1)} us; parse + handleReview (decision, patch, base64) ${decision.toFixed(1)} us`,
    );
    const load = (await import('node:os')).loadavg()[0]!;
    console.log(
      `1-minute load average during the run: ${load.toFixed(1)} on ${(await import('node:os')).cpus().length} CPUs`,
    );
    for (const a of Object.values(agents)) a.destroy();
  } finally {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => child.kill(), 2000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.send('exit');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'serve') await serve(process.argv[3] as Kind, process.argv[4]!);
else await main();
