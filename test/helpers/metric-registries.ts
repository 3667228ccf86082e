// Every part's metric registry, filled the way the part fills it: the dashboard test checks the dashboard's
// queries against these names, and the metrics test runs promtool on each exposition. A part that adds a metrics
// module registers it here.
import type { Registry } from 'prom-client';
import { AgentMetrics } from '../../agent/metrics.js';
import { ControllerMetrics } from '../../webhook/controller/metrics.js';
import { createMetrics as createWebhookMetrics } from '../../webhook/metrics.js';

export function allRegistries(): { part: string; registry: Registry }[] {
  return [
    { part: 'agent', registry: new AgentMetrics().registry },
    { part: 'controller', registry: new ControllerMetrics().registry },
    { part: 'webhook', registry: createWebhookMetrics().registry },
  ];
}
