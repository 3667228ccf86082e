// The agent's /metrics over HTTP: learned behaviours counted once per container at the learner port, the rest as
// the ClusterAgent records it (agent/metrics.ts methods), and promtool finds nothing to complain about.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { LearnerPort } from '../../agent/cluster/agent.js';
import type { Behaviour } from '../../agent/cluster/observations.js';
import { enforcerPort, ViolationLosses } from '../../agent/cluster/adapters.js';
import type { ContainerCounters, Enforcer, LayerState } from '../../agent/enforcer.js';
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

/** The enforcer's kernel loss counters per container, as the BPF maps keep them: gone when a container is forgotten. */
function fakeEnforcer(fileMechanism = 'bpf-lsm') {
  const kernel = new Map<bigint, { net: bigint; lsm: bigint; swEvents: bigint; swPairs: bigint }>();
  const enforcer = {
    layers: (): LayerState[] => [{ layer: 'files', active: true, mechanism: fileMechanism }],
    counters: async (id: bigint): Promise<ContainerCounters> => {
      const k = kernel.get(id);
      const zero = { connect: 0n, bind: 0n, ingress: 0n, sendmsg: 0n };
      return {
        network: k && { ...zero, eventsLost: k.net },
        files: 0n,
        execs: 0n,
        syscalls: k && { total: 0n, eventsLost: k.swEvents, pairsLost: k.swPairs, bySyscall: {} },
        eventsLost: k ? k.net + k.lsm : 0n,
      };
    },
    forget: async (id: bigint) => void kernel.delete(id),
  };
  return { kernel, enforcer };
}

test('agent /metrics: ring-buffer drops and violations lost follow the kernel counters, across re-enforcement', async () => {
  const metrics = new AgentMetrics();
  let learnerLosses = { eventsLost: 2, objectsDropped: 0 };
  metrics.trackLosses(async () => learnerLosses);
  const { kernel, enforcer } = fakeEnforcer();
  const losses = new ViolationLosses(enforcer);
  metrics.trackViolationsLost(() => losses.read());
  const port = enforcerPort(enforcer as unknown as Enforcer, undefined, '/nonexistent', losses);
  /** What enforcer.enforce does to the counters: they start again from zero. */
  const enforce = async (id: bigint): Promise<void> => {
    await losses.beforeApply(id);
    kernel.set(id, { net: 0n, lsm: 0n, swEvents: 0n, swPairs: 0n });
    losses.afterApply(id, true);
  };
  await enforce(7n);
  await enforce(8n);

  const server = await serveMetrics(metrics.registry, 0, '127.0.0.1');
  try {
    const { port: httpPort } = server.address() as AddressInfo;
    const scrape = async (): Promise<string> => {
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      assert.deepEqual(promtoolProblems(text), []);
      return text;
    };
    const value = (text: string, series: string): number | undefined => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    const dropped = (ringbuf: string) => `pahlevan_agent_ringbuf_dropped_events_total{ringbuf="${ringbuf}"}`;
    const lost = (layer: string) => `pahlevan_agent_violations_lost_total{layer="${layer}"}`;

    let text = await scrape();
    assert.equal(value(text, dropped('events')), 2);
    assert.equal(value(text, lost('network')), 0, 'the series exists before the first loss');

    kernel.set(7n, { net: 2n, lsm: 3n, swEvents: 1n, swPairs: 4n });
    kernel.set(8n, { net: 1n, lsm: 0n, swEvents: 0n, swPairs: 0n });
    learnerLosses = { eventsLost: 5, objectsDropped: 1 };
    text = await scrape();
    assert.equal(value(text, dropped('events')), 5);
    assert.equal(value(text, dropped('objects')), 1);
    assert.equal(value(text, lost('network')), 3);
    assert.equal(value(text, lost('files+execs')), 3);
    assert.equal(value(text, lost('syscalls')), 5);

    // Losses after the last scrape survive the container being forgotten (its counters vanish) ...
    kernel.get(7n)!.net = 6n;
    await port.apply(7n, undefined);
    assert.equal(kernel.has(7n), false);
    // ... and re-enforcing another one (its counters restart) neither loses nor repeats what it had.
    kernel.get(8n)!.swPairs = 2n;
    await enforce(8n);
    kernel.get(8n)!.swPairs = 1n;
    text = await scrape();
    assert.equal(value(text, lost('network')), 7);
    assert.equal(value(text, lost('syscalls')), 8);
    assert.equal(value(text, lost('files+execs')), 3);
    text = await scrape();
    assert.equal(value(text, lost('syscalls')), 8, 'nothing new: nothing added');
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('violations lost: fanotify lost lines are one count for the helper, not one per container', async () => {
  const { kernel, enforcer } = fakeEnforcer('fanotify');
  const losses = new ViolationLosses(enforcer);
  for (const id of [1n, 2n, 3n]) {
    await losses.beforeApply(id);
    kernel.set(id, { net: 0n, lsm: 4n, swEvents: 0n, swPairs: 0n });
    losses.afterApply(id, true);
  }
  assert.equal((await losses.read())['files+execs'], 4);
  for (const k of kernel.values()) k.lsm = 6n;
  assert.equal((await losses.read())['files+execs'], 6);
});
