// The agent's /metrics over HTTP, fed through the instrumented learner and enforcer ports the cluster agent
// uses: counts follow what passed through, and promtool finds nothing to complain about.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { EnforcementTarget, EnforcerPort, LearnerPort } from '../../agent/cluster/agent.js';
import type { Behaviour } from '../../agent/cluster/observations.js';
import type { Layer } from '../../api/policy.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { instrumentPorts } from '../../agent/metrics-wiring.js';
import { serveMetrics } from '../../api/metrics.js';
import { promtoolProblems } from '../helpers/promtool.js';

function fakePorts(): {
  learner: LearnerPort;
  enforcer: EnforcerPort;
  behave: (cg: bigint, b: Behaviour[]) => void;
  violate: (cg: bigint, layer: Layer, what: string, n: number) => void;
} {
  let onB: ((cg: bigint, b: Behaviour[]) => void) | undefined;
  let onV: ((cg: bigint, layer: Layer, what: string, n: number) => void) | undefined;
  return {
    learner: { watch: async () => {}, unwatch: async () => {}, onBehaviour: (l) => void (onB = l) },
    enforcer: {
      probe: async () => ({
        active: ['syscalls', 'network', 'files', 'execs'] as Layer[],
        missing: [],
      }),
      apply: async () => {},
      onViolation: (l) => void (onV = l),
    },
    behave: (cg, b) => onB?.(cg, b),
    violate: (cg, layer, what, n) => onV?.(cg, layer, what, n),
  };
}

test('agent /metrics: learning and enforcement counted through the ports, promtool-clean', async () => {
  const metrics = new AgentMetrics({ processMetrics: true });
  const fake = fakePorts();
  const ports = instrumentPorts(fake, metrics, 'node-a');
  const received: number[] = [];
  ports.learner!.onBehaviour((_cg, b) => received.push(b.length));
  ports.enforcer!.onViolation(() => received.push(-1));
  await ports.enforcer!.probe();
  await ports.learner!.watch(7n);
  fake.behave(7n, [
    { kind: 'syscall', name: 'read' },
    { kind: 'exec', path: '/app' },
  ]);
  fake.behave(7n, [{ kind: 'syscall', name: 'read' }]); // seen again: an event, not a new behaviour
  const target: EnforcementTarget = {
    namespace: 'shop',
    policy: 'web',
    container: 'app',
    profileName: 'web-app-abc',
    profile: { seccomp: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] }, execs: [], files: [], ports: [] },
    modes: { syscalls: 'Enforce', files: 'Monitor', execs: 'Enforce', network: 'Alert' },
    network: { allowDNS: true, allowLoopback: true },
  };
  await ports.enforcer!.apply(7n, target);
  fake.violate(7n, 'files', '/etc/shadow', 2);
  fake.violate(7n, 'network', 'tcp 10.0.0.1:25', 1);
  assert.deepEqual(received, [2, 1, -1, -1], 'the agent still gets everything');

  const server = await serveMetrics(metrics.registry, 0, '127.0.0.1');
  try {
    const { port } = server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    assert.match(text, /pahlevan_agent_behaviours_learned_total\{kind="syscall"\} 1\n/);
    assert.match(text, /pahlevan_agent_first_seen_events_total\{kind="syscall"\} 2\n/);
    assert.match(text, /pahlevan_agent_containers_watched\{mode="learning"\} 1\n/);
    assert.match(
      text,
      /pahlevan_agent_violations_total\{namespace="shop",policy="web",container="app",layer="files",action="log"\} 2\n/,
    );
    assert.match(text, /pahlevan_agent_violations_total\{[^}]*layer="network",action="alert"\} 1\n/);
    assert.match(text, /pahlevan_agent_layer_active\{node="node-a",layer="execs"\} 1\n/);
    assert.deepEqual(promtoolProblems(text), []);
    assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
