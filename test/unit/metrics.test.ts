import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentMetrics } from '../../agent/metrics.js';
import { ControllerMetrics } from '../../webhook/controller/metrics.js';
import { checkMetricName, checkRegistry, exposedNames } from '../../api/metrics.js';
import { promtoolProblems } from '../helpers/promtool.js';

function filledAgent(): AgentMetrics {
  const m = new AgentMetrics({ processMetrics: true });
  m.containersWatched.set({ mode: 'learning' }, 3);
  m.learned('syscall', 42);
  m.learned('file');
  m.firstSeenEvents.inc({ kind: 'exec' });
  m.ringbufDropped.inc({ ringbuf: 'events' }, 0);
  // Label values with quotes, backslashes and newlines must be escaped in the exposition.
  m.violation({ namespace: 'shop', policy: 'web', container: 'a"b\\c\nd', layer: 'files', action: 'deny' });
  m.violationsLost.inc({ layer: 'syscalls' }, 0);
  m.setLayers('node-1', ['syscalls', 'network', 'files'], ['execs']);
  m.profilesInstalled.set(2);
  return m;
}

async function filledController(): Promise<ControllerMetrics> {
  const m = new ControllerMetrics({ processMetrics: true });
  m.setPhase('shop', 'web', 'Learning');
  m.setPhase('shop', 'web', 'Enforcing');
  m.setPhase('shop', 'db', 'Learning');
  m.merges.inc({ result: 'changed' });
  m.mergeDuration.observe(0.012);
  m.publications.inc({ namespace: 'shop', policy: 'web' });
  m.nodeAcks.inc({ namespace: 'shop', policy: 'web' }, 2);
  m.profileNodesInstalled.set({ namespace: 'shop', policy: 'web', container: 'app' }, 2);
  m.profileNodesReady.set({ namespace: 'shop', policy: 'web', container: 'app' }, 2);
  m.selfHealingActions.inc({ namespace: 'shop', policy: 'web', strategy: 'Rollback' });
  m.learnedBehaviours.set({ namespace: 'shop', policy: 'web', kind: 'syscall' }, 61);
  m.stableWindows.set({ namespace: 'shop', policy: 'web' }, 3);
  m.setAttackSurface('shop', 'web', {
    container: 'app',
    syscallsAllowed: 61,
    runtimeDefaultSyscalls: 313,
    dangerousAllowed: ['ptrace'],
    listeningPorts: ['8080/tcp'],
    egressPorts: [],
    writablePaths: [],
    executables: [],
    riskScore: 18.4,
  });
  m.leader.set(1);
  return m;
}

test('the agent exposition passes promtool check metrics', async () => {
  const m = filledAgent();
  checkRegistry(m.registry);
  const text = await m.registry.metrics();
  assert.match(text, /pahlevan_agent_violations_total\{.*container="a\\"b\\\\c\\nd".*\} 1/);
  assert.deepEqual(promtoolProblems(text), []);
});

test('the controller exposition passes promtool check metrics', async () => {
  const m = await filledController();
  checkRegistry(m.registry);
  const text = await m.registry.metrics();
  assert.match(text, /pahlevan_controller_policy_phase\{namespace="shop",policy="web",phase="Enforcing"\} 1/);
  assert.match(text, /pahlevan_controller_policy_phase\{namespace="shop",policy="web",phase="Learning"\} 0/);
  assert.deepEqual(promtoolProblems(text), []);
  await m.forgetPolicy('shop', 'web');
  const after = await m.registry.metrics();
  assert.doesNotMatch(after, /policy="web"/);
  assert.match(after, /policy="db"/);
});

test('promtool really complains about a bad exposition (the check can fail)', () => {
  const bad =
    '# TYPE foo_requests counter\nfoo_requests 1\n# HELP bar_milliseconds x\n# TYPE bar_milliseconds gauge\nbar_milliseconds 3\n';
  assert.ok(promtoolProblems(bad).length > 0);
});

test('naming conventions are enforced', () => {
  assert.throws(() => checkMetricName('pahlevan_agent_events', 'counter'), /must end in _total/);
  assert.throws(() => checkMetricName('pahlevan_agent_up_total', 'gauge'), /only counters/);
  assert.throws(() => checkMetricName('pahlevan_agent_latency_milliseconds', 'histogram'), /base units/);
  assert.throws(() => checkMetricName('agent_things_total', 'counter'), /pahlevan_/);
  checkMetricName('pahlevan_webhook_request_duration_seconds', 'histogram');
  const names = exposedNames(new ControllerMetrics().registry);
  assert.ok(names.includes('pahlevan_controller_merge_duration_seconds_bucket'));
});

test('every registered part follows the naming conventions and passes promtool', async () => {
  const { allRegistries } = await import('../helpers/metric-registries.js');
  for (const { part, registry } of allRegistries()) {
    checkRegistry(registry);
    assert.deepEqual(promtoolProblems(await registry.metrics()), [], `part ${part}`);
  }
});

test('scrape-time reader: learner losses counted by delta', async () => {
  const m = new AgentMetrics();
  let losses = { eventsLost: 3, objectsDropped: 0 };
  m.trackLosses(async () => losses);
  let text = await m.registry.metrics();
  assert.match(text, /pahlevan_agent_ringbuf_dropped_events_total\{ringbuf="events"\} 3\n/);
  losses = { eventsLost: 5, objectsDropped: 1 };
  text = await m.registry.metrics();
  assert.match(text, /pahlevan_agent_ringbuf_dropped_events_total\{ringbuf="events"\} 5\n/);
  assert.match(text, /pahlevan_agent_ringbuf_dropped_events_total\{ringbuf="objects"\} 1\n/);
  assert.deepEqual(promtoolProblems(text), []);
});
