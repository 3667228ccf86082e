import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentMetrics } from '../../agent/metrics.js';
import { instrumentPorts } from '../../agent/metrics-wiring.js';
import type { EnforcementTarget, EnforcerPort } from '../../agent/cluster/agent.js';
import type { Layer } from '../../api/policy.js';

test('with kernel counters, violations are counted exactly once: from the counts, not from the events', async () => {
  let kernel = 0;
  let onV: ((id: bigint, layer: Layer, what: string, n: number) => void) | undefined;
  const inner: EnforcerPort = {
    probe: async () => ({ active: ['syscalls'], missing: [] }),
    apply: async () => {},
    onViolation: (l) => void (onV = l),
    violationCounts: async () => [{ layer: 'syscalls', what: 'ioprio_set', count: kernel }],
  };
  const metrics = new AgentMetrics();
  const port = instrumentPorts({ enforcer: inner }, metrics, 'n1').enforcer!;
  assert.ok(port.violationCounts, 'the exact counts pass through the wrapper');
  const events: number[] = [];
  port.onViolation((_id, _layer, _what, n) => events.push(n));
  const target: EnforcementTarget = {
    namespace: 'shop',
    policy: 'web',
    container: 'app',
    profileName: 'p',
    profile: { seccomp: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] }, execs: [], files: [], ports: [] },
    modes: { syscalls: 'Enforce', files: 'Off', execs: 'Off', network: 'Off' },
    network: { allowDNS: true, allowLoopback: true },
  };
  await port.apply(7n, target);
  onV!(7n, 'syscalls', 'ioprio_set', 1); // first-of-its-kind event
  kernel = 5;
  await port.violationCounts!(7n);
  kernel = 12;
  await port.violationCounts!(7n);
  assert.deepEqual(events, [1], 'the agent still hears the event');
  const text = await metrics.registry.metrics();
  assert.match(
    text,
    /pahlevan_agent_violations_total\{namespace="shop",policy="web",container="app",layer="syscalls",action="deny"\} 12\n/,
  );
});
