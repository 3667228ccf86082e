// Conventions for Prometheus metrics, shared by every part: one prom-client Registry per part (no global
// registry, so tests and several parts in one process never collide), names `pahlevan_<part>_<what>_<unit>`
// (`_total` for counters, base units `_seconds`, `_bytes`), HELP on everything.
import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';

export const METRIC_NAME = /^pahlevan_[a-z]+_[a-z0-9_]+$/;
/** Units Prometheus wants as base units; a name ending in another time or size unit is a mistake. */
const NON_BASE_UNITS =
  /_(milliseconds|microseconds|nanoseconds|minutes|hours|kilobytes|megabytes|ms|us|ns)(_|$)/;

const PROMTOOL_UNCLEAN_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** A fresh registry; with `processMetrics`, Node's process_* and nodejs_* metrics as well (servers want them). */
export function newRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics) {
    collectDefaultMetrics({ register: registry });
    // prom-client's gauges nodejs_active_{handles,requests,resources}_total break the `_total` = counter rule
    // (promtool complains); the same figures stay available, by type, without the suffix.
    for (const name of PROMTOOL_UNCLEAN_DEFAULTS) registry.removeSingleMetric(name);
  }
  return registry;
}

/** Checks a metric name against the conventions; throws with what is wrong. */
export function checkMetricName(name: string, type: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`metric ${name}: expected pahlevan_<part>_<what>_<unit>`);
  if (NON_BASE_UNITS.test(name)) throw new Error(`metric ${name}: use base units (_seconds, _bytes)`);
  if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name}: must end in _total`);
  if (type !== 'counter' && name.endsWith('_total'))
    throw new Error(`${type} ${name}: only counters end in _total`);
}

/** Every sample name a registry exposes (histograms as _bucket/_sum/_count), for dashboards and checks. */
export function exposedNames(registry: Registry): string[] {
  const names: string[] = [];
  for (const metric of registry.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    if (type === 'histogram') names.push(`${name}_bucket`, `${name}_sum`, `${name}_count`);
    else if (type === 'summary') names.push(name, `${name}_sum`, `${name}_count`);
    else names.push(name);
  }
  return names;
}

/** Checks every Pahlevan metric of a registry against the conventions (process metrics are prom-client's own). */
export function checkRegistry(registry: Registry): void {
  for (const metric of registry.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    if (name.startsWith('pahlevan_')) checkMetricName(name, type);
  }
}

/** Serves a registry on http://host:port/metrics (and /healthz); resolves once listening. */
export async function serveMetrics(registry: Registry, port: number, host = '0.0.0.0'): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { Allow: 'GET' }).end('only GET\n');
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(`metrics failed: ${err.message}\n`),
      );
    } else if (path === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else {
      res.writeHead(404).end('not found: try /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
