// Prometheus metrics of the webhook, in a registry of its own (several servers may live in one test process).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface WebhookMetrics {
  registry: Registry;
  requests: Counter<'webhook' | 'operation' | 'outcome'>;
  duration: Histogram<'webhook'>;
  patchOperations: Counter<'webhook'>;
  certExpiry: Gauge;
  certReloads: Counter<'result'>;
  cachedPolicies: Gauge;
}

export function createMetrics(options: { processMetrics?: boolean } = {}): WebhookMetrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // gauges named *_total break Prometheus naming rules (promtool check metrics); the per-type
    // nodejs_active_{handles,requests,resources} gauges carry the same information
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ])
      registry.removeSingleMetric(name);
  }
  return {
    registry,
    requests: new Counter({
      name: 'pahlevan_webhook_requests_total',
      help: 'Admission requests by webhook, operation and outcome.',
      labelNames: ['webhook', 'operation', 'outcome'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'pahlevan_webhook_request_duration_seconds',
      help: 'Time to answer an admission request, from parsed body to reply.',
      labelNames: ['webhook'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    patchOperations: new Counter({
      name: 'pahlevan_webhook_patch_operations_total',
      help: 'JSON patch operations returned by the mutating webhook.',
      labelNames: ['webhook'],
      registers: [registry],
    }),
    certExpiry: new Gauge({
      name: 'pahlevan_webhook_certificate_expiry_timestamp_seconds',
      help: 'Unix time at which the served TLS certificate expires.',
      registers: [registry],
    }),
    certReloads: new Counter({
      name: 'pahlevan_webhook_certificate_reloads_total',
      help: 'Serving certificate reload attempts by result.',
      labelNames: ['result'],
      registers: [registry],
    }),
    cachedPolicies: new Gauge({
      name: 'pahlevan_webhook_cached_policies',
      help: 'PahlevanPolicies in the admission cache.',
      registers: [registry],
    }),
  };
}
