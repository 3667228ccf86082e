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
    const start = async (kind: Kind) => {
      const child = fork(fileURLToPath(import.meta.url), ['serve', kind, dir], { stdio: 'inherit' });
      children.push(child);
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
    const closedMs = Number(process.env.BENCH_CLOSED_MS ?? 5000);
    const rate = Number(process.env.BENCH_RATE ?? 1000);
    const rateMs = Number(process.env.BENCH_RATE_MS ?? 5000);
    console.log(
      `pod review ${targets.webhook.body.length} bytes; HTTPS keep-alive, ${concurrency} connections, client and servers on 127.0.0.1, servers in their own processes`,
    );
    const closed: Record<Kind, Result[]> = { echo: [], webhook: [] };
    const fixed: Record<Kind, Result[]> = { echo: [], webhook: [] };
    const agents: Record<Kind, Agent> = {
      echo: new Agent({ keepAlive: true, maxSockets: concurrency, ca }),
      webhook: new Agent({ keepAlive: true, maxSockets: concurrency, ca }),
    };
    for (const kind of ['echo', 'webhook'] as Kind[])
      await closedLoop(agents[kind], targets[kind].url, targets[kind].body, concurrency, 1500); // warm-up
    // two interleaved rounds so drift on a shared machine hits both alike
    for (let round = 0; round < 2; round++)
      for (const kind of (round % 2 ? ['webhook', 'echo'] : ['echo', 'webhook']) as Kind[]) {
        closed[kind].push(
          await closedLoop(agents[kind], targets[kind].url, targets[kind].body, concurrency, closedMs),
        );
        fixed[kind].push(await fixedRate(agents[kind], targets[kind].url, targets[kind].body, rate, rateMs));
      }
    const best = (rs: Result[], key: 'perSecond') => Math.max(...rs.map((r) => r[key]));
    const worstP = (rs: Result[], key: 'p50Ms' | 'p99Ms') => Math.max(...rs.map((r) => r[key]));
    const fmt = (n: number) => n.toFixed(n < 10 ? 2 : 0);
    console.log(
      '\nserver      closed-loop req/s   p50 ms   p99 ms   |  at %d req/s: p50 ms   p99 ms   errors',
      rate,
    );
    for (const kind of ['echo', 'webhook'] as Kind[]) {
      const c = closed[kind];
      const f = fixed[kind];
      const errors = [...c, ...f].reduce((n, r) => n + r.errors, 0);
      console.log(
        `${kind === 'echo' ? 'fastify echo' : '/mutate-pods'}  ${fmt(best(c, 'perSecond')).padStart(12)}   ${fmt(worstP(c, 'p50Ms')).padStart(6)}   ${fmt(worstP(c, 'p99Ms')).padStart(6)}   |  ${fmt(worstP(f, 'p50Ms')).padStart(19)}   ${fmt(worstP(f, 'p99Ms')).padStart(6)}   ${errors}`,
      );
    }
    const ratio = best(closed.webhook, 'perSecond') / best(closed.echo, 'perSecond');
    console.log(`\nthroughput ratio /mutate-pods : echo = ${ratio.toFixed(2)}x (goal >= 0.8x)`);
    console.log(
      `p99 at ${rate} req/s = ${worstP(fixed.webhook, 'p99Ms').toFixed(2)} ms (goal <= 5 ms); worst of 2 rounds, best throughput of 2 rounds`,
    );
    for (const a of Object.values(agents)) a.destroy();
  } finally {
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'serve') await serve(process.argv[3] as Kind, process.argv[4]!);
else await main();
