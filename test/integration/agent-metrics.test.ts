// The agent's /metrics over HTTP: learned behaviours counted once per container at the learner port, the rest as
// the ClusterAgent records it (agent/metrics.ts methods), and promtool finds nothing to complain about.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { LearnerPort } from '../../agent/cluster/agent.js';
import type { Behaviour } from '../../agent/cluster/observations.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { instrumentPorts } from '../../agent/metrics-wiring.js';
import { serveMetrics } from '../../api/metrics.js';
import { promtoolProblems } from '../helpers/promtool.js';

test('agent /metrics: behaviours learned once per container, violations by policy and layer, promtool-clean', async () => {
  const metrics = new AgentMetrics({ processMetrics: true });
  let emit: ((cg: bigint, b: Behaviour[]) => void) | undefined;
  const watchOptions: ({ requireSeccomp?: boolean } | undefined)[] = [];
  const learner: LearnerPort = {
    watch: async (_cg, options) => void watchOptions.push(options),
    unwatch: async () => {},
    onBehaviour: (l) => void (emit = l),
  };
  const ports = instrumentPorts({ learner }, metrics);
  const received: number[] = [];
  ports.learner!.onBehaviour((_cg, b) => received.push(b.length));
  await ports.learner!.watch(7n);
  await ports.learner!.watch(8n, { requireSeccomp: true });
  assert.deepEqual(watchOptions, [undefined, { requireSeccomp: true }], 'watch options reach the learner');
  emit!(7n, [
    { kind: 'syscall', name: 'read' },
    { kind: 'exec', path: '/app' },
  ]);
  emit!(7n, [{ kind: 'syscall', name: 'read' }]); // reported again: not new
  emit!(8n, [{ kind: 'syscall', name: 'read' }]); // another container: new there
  await ports.learner!.unwatch(7n);
  await ports.learner!.watch(7n);
  emit!(7n, [{ kind: 'syscall', name: 'read' }]); // watched afresh: learned afresh
  assert.deepEqual(received, [2, 1, 1, 1], 'the agent still gets everything');
  // What the ClusterAgent records itself.
  metrics.violation({ namespace: 'shop', policy: 'web', container: 'app', layer: 'files', action: 'log' }, 2);
  metrics.setLayers('node-a', ['syscalls', 'network'], ['files', 'execs']);

  const server = await serveMetrics(metrics.registry, 0, '127.0.0.1');
  try {
    const { port } = server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    assert.match(text, /pahlevan_agent_behaviours_learned_total\{kind="syscall"\} 3\n/);
    assert.match(text, /pahlevan_agent_behaviours_learned_total\{kind="exec"\} 1\n/);
    assert.doesNotMatch(
      text,
      /pahlevan_agent_first_seen_events_total\{/,
      'first-seen events are the agent’s to count',
    );
    assert.match(
      text,
      /pahlevan_agent_violations_total\{namespace="shop",policy="web",container="app",layer="files",action="log"\} 2\n/,
    );
    assert.match(text, /pahlevan_agent_layer_active\{node="node-a",layer="files"\} 0\n/);
    assert.deepEqual(promtoolProblems(text), []);
    assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
