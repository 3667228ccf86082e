// The controller against the stand-in API server, through the real client-node: agents are played by tests
// writing PahlevanNodeObservation objects the way the agent does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { waitFor } from '../helpers/kube.js';
import { Controller } from '../../webhook/controller/controller.js';
import { API_VERSION, GROUP, VERSION, POLICY_PLURAL, type PahlevanPolicy } from '../../api/policy.js';
import {
  OBSERVATION_KIND,
  OBSERVATION_PLURAL,
  observationName,
  type ObservationSpec,
} from '../../api/observation.js';
import { PROFILE_PLURAL, type PahlevanProfile } from '../../api/profile.js';
import { ALWAYS_ALLOWED_SYSCALLS, type OciSeccompProfile } from '../../api/seccomp.js';

/** The allowed names beyond the ones every profile carries (api/seccomp.ts). */
const learnedNames = (seccomp: OciSeccompProfile): string[] =>
  seccomp.syscalls[0]!.names.filter((n) => !ALWAYS_ALLOWED_SYSCALLS.includes(n));

let api: FakeApiServer;
let kc: KubeConfig;
let custom: CustomObjectsApi;
let core: CoreV1Api;
const silent = pino({ level: 'silent' });
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

before(async () => {
  api = await FakeApiServer.start({ namespaces: ['default', 'pahlevan-system', 'apps'] });
  kc = api.kubeConfig();
  custom = kc.makeApiClient(CustomObjectsApi);
  core = kc.makeApiClient(CoreV1Api);
  for (const name of ['n1', 'n2']) {
    await core.createNode({ body: { metadata: { name } } });
    await core.replaceNodeStatus({
      name,
      body: {
        ...(await core.readNode({ name })),
        status: { conditions: [{ type: 'Ready', status: 'True' }] },
      },
    });
  }
});
after(async () => {
  await api.stop();
});

function controller(identity: string): Controller {
  return new Controller({
    kubeConfig: kc,
    identity,
    leaseNamespace: 'pahlevan-system',
    leaseDurationSeconds: 2,
    renewDeadlineMs: 1000,
    retryPeriodMs: 200,
    resyncMs: 100,
    debounceMs: 20,
    logger: silent,
  });
}

async function createPolicy(name: string, spec: Record<string, unknown>): Promise<void> {
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: 'apps',
    plural: POLICY_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: 'PahlevanPolicy',
      metadata: { name },
      spec: { selector: { matchLabels: { app: name } }, ...spec },
    },
  });
}

async function getPolicy(name: string): Promise<PahlevanPolicy> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: 'apps',
    plural: POLICY_PLURAL,
    name,
  })) as PahlevanPolicy;
}

function observation(
  policy: string,
  node: string,
  syscalls: string[],
  extra: Partial<ObservationSpec> = {},
): ObservationSpec {
  return {
    policy,
    node,
    agent: { startedAt: '2026-01-01T00:00:00Z' },
    containers: [
      {
        name: 'web',
        images: ['registry.example/web:1'],
        pods: [`web-${node}`],
        syscalls: Object.fromEntries(syscalls.map((s) => [s, { count: 1, pods: 1 }])),
        execs: { '/usr/bin/web': { count: 1, pods: 1 } },
        files: { '/etc/hosts': { count: 1, pods: 1, write: false } },
        ports: [{ direction: 'listen', protocol: 'TCP', port: 8080, count: 1, pods: 1 }],
      },
    ],
    violations: { total: 0, byLayer: {}, denied: [] },
    layers: { active: ['syscalls', 'network'], missing: [{ layer: 'files', reason: 'no BPF-LSM' }] },
    installed: [],
    ...extra,
  };
}

/** Writes (creates or merge-patches) a node's observation, as that node's agent does. */
async function report(spec: ObservationSpec): Promise<void> {
  const name = observationName(spec.policy, spec.node);
  try {
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'apps',
      plural: OBSERVATION_PLURAL,
      body: { apiVersion: API_VERSION, kind: OBSERVATION_KIND, metadata: { name }, spec },
    });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
    await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: 'apps', plural: OBSERVATION_PLURAL, name, body: { spec } },
      merge,
    );
  }
}

async function profilesOf(policy: string): Promise<PahlevanProfile[]> {
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: 'apps',
    plural: PROFILE_PLURAL,
  })) as { items: PahlevanProfile[] };
  return list.items.filter((p) => p.spec.policy === policy);
}

async function eventsOf(policy: string): Promise<{ reason: string; type: string }[]> {
  const list = await core.listNamespacedEvent({
    namespace: 'apps',
    fieldSelector: `involvedObject.name=${policy}`,
  });
  return list.items.map((e) => ({ reason: e.reason!, type: e.type! }));
}

test('learn -> publish -> acked by both nodes -> usable -> violations over the threshold -> rolled back, with Events', async () => {
  const c = controller('solo');
  await c.start();
  try {
    await createPolicy('web', {
      learning: { duration: '1s', window: '300ms', stableWindows: 2, autoEnforce: true },
      selfHealing: { threshold: 5, window: '5s', strategy: 'Rollback', cooldown: '1m' },
    });
    await report(observation('web', 'n1', ['read', 'write', 'openat']));
    await report(observation('web', 'n2', ['read', 'write', 'accept4']));

    await waitFor(async () => (await getPolicy('web')).status?.phase === 'Enforcing', 'phase Enforcing');
    let policy = await getPolicy('web');
    const published = policy.status!.profiles!;
    assert.equal(published.length, 1);
    assert.equal(published[0]!.usable, false, 'not usable before the nodes acked');
    const [profile] = await profilesOf('web');
    assert.ok(profile, 'the PahlevanProfile object exists');
    assert.equal(profile.metadata.name, published[0]!.profileName);
    assert.equal(profile.spec.hash, published[0]!.hash);
    assert.deepEqual(learnedNames(profile.spec.seccomp), ['accept4', 'openat', 'read', 'write']);
    assert.deepEqual(profile.spec.coverage!.read, { nodes: 2, pods: 2 });
    assert.equal(policy.status!.learning!.nodesReporting, 2);
    assert.equal(
      published[0]!.withinRuntimeDefault,
      true,
      'read/write/openat/accept4 are all in the runtime default',
    );
    assert.equal(published[0]!.image, 'registry.example/web:1');
    assert.deepEqual(profile.spec.images, ['registry.example/web:1']);
    const surface = policy.status!.attackSurface!;
    assert.equal(surface[0]!.container, 'web');
    assert.equal(surface[0]!.syscallsAllowed, 4 + ALWAYS_ALLOWED_SYSCALLS.length);
    assert.ok(surface[0]!.runtimeDefaultSyscalls > 4);
    assert.equal(policy.status!.conditions!.find((x) => x.type === 'Degraded')!.status, 'True');

    // Both agents install the file and acknowledge the hash.
    const hash = published[0]!.hash;
    await report(observation('web', 'n1', ['read', 'write', 'openat'], { installed: [{ hash }] }));
    await waitFor(async () => (await getPolicy('web')).status!.profiles![0]!.nodesInstalled === 1, 'one ack');
    assert.equal((await getPolicy('web')).status!.profiles![0]!.usable, false);
    await report(observation('web', 'n2', ['read', 'write', 'accept4'], { installed: [{ hash }] }));
    await waitFor(
      async () => (await getPolicy('web')).status!.profiles![0]!.usable === true,
      'usable after both acks',
    );

    // The workload misbehaves: denials counted by the agent cross the threshold within the window.
    await report(
      observation('web', 'n1', ['read', 'write', 'openat'], {
        installed: [{ hash }],
        violations: {
          total: 7,
          byLayer: { syscalls: 7 },
          denied: [{ container: 'web', layer: 'syscalls', what: 'ptrace', count: 7 }],
        },
      }),
    );
    await waitFor(async () => (await getPolicy('web')).status?.phase === 'RolledBack', 'phase RolledBack');
    policy = await getPolicy('web');
    assert.equal(policy.status!.selfHealing!.lastAction, 'Rollback');
    assert.equal(policy.status!.violations!.total, 7);
    assert.deepEqual(policy.status!.violations!.recent, [
      { layer: 'syscalls', container: 'web', what: 'ptrace', count: 7 },
    ]);
    const events = await eventsOf('web');
    for (const reason of ['Enforcing', 'ProfilePublished', 'ProfileUsable', 'RolledBack'])
      assert.ok(
        events.some((e) => e.reason === reason),
        `an Event ${reason} (got ${events.map((e) => e.reason).join(', ')})`,
      );
    assert.equal(events.find((e) => e.reason === 'RolledBack')!.type, 'Warning');
    assert.equal(events.filter((e) => e.reason === 'RolledBack').length, 1, 'one rollback, no flapping');
  } finally {
    await c.stop();
  }
});

test('kill the leader mid-learning: the standby takes over the Lease and nothing learned is lost', async () => {
  const a = controller('replica-a');
  const b = controller('replica-b');
  await a.start();
  await waitFor(() => a.isLeader, 'replica-a to lead');
  await b.start();
  try {
    await createPolicy('api', {
      learning: { duration: '4s', window: '300ms', stableWindows: 2, autoEnforce: true },
    });
    await report(observation('api', 'n1', ['read', 'write']));
    await waitFor(
      async () => (await getPolicy('api')).status?.learning?.syscalls === 2,
      'learning progress from replica-a',
    );
    const before = (await getPolicy('api')).status!;
    assert.equal(before.phase, 'Learning');
    assert.ok(!b.isLeader, 'only one leader');

    // Crash replica-a: it stops without releasing its Lease, as a killed process would.
    await a.stop(false);
    // Behaviour learned while nobody leads lands in the API all the same.
    await report(observation('api', 'n2', ['read', 'write', 'epoll_wait']));
    await waitFor(() => b.isLeader, 'replica-b to take over after the lease expires');
    const lease = await kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: 'pahlevan-controller', namespace: 'pahlevan-system' });
    assert.equal(lease.spec!.holderIdentity, 'replica-b');
    assert.ok((lease.spec!.leaseTransitions ?? 0) >= 1);

    await waitFor(
      async () => (await getPolicy('api')).status?.phase === 'Enforcing',
      'publication by replica-b',
      15_000,
    );
    const after = (await getPolicy('api')).status!;
    assert.equal(after.learning!.startedAt, before.learning!.startedAt, 'the learning clock continued');
    const [profile] = await profilesOf('api');
    assert.deepEqual(learnedNames(profile!.spec.seccomp), ['epoll_wait', 'read', 'write']);
    assert.equal(after.learning!.nodesReporting, 2);
  } finally {
    await b.stop();
    await a.stop();
  }
});

test('a standby never acts: two replicas, one writer', async () => {
  const a = controller('one');
  const b = controller('two');
  await a.start();
  await b.start();
  try {
    await waitFor(() => a.isLeader || b.isLeader, 'a leader');
    await new Promise((r) => setTimeout(r, 600));
    assert.notEqual(a.isLeader, b.isLeader, 'exactly one leader');
    const standby = a.isLeader ? b : a;
    assert.equal(standby.reconciles, 0, 'the standby reconciled nothing');
  } finally {
    await a.stop();
    await b.stop();
  }
  // A clean stop releases the Lease: the next candidate does not wait for expiry.
  const lease = await kc
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: 'pahlevan-controller', namespace: 'pahlevan-system' });
  assert.equal(lease.spec!.holderIdentity, undefined);
});

test('Relax republishes with what was denied; image drift publishes a new version; superseded versions are deleted', async () => {
  const c = controller('relaxer');
  await c.start();
  try {
    await createPolicy('rlx', {
      learning: { duration: '500ms', window: '200ms', stableWindows: 1, autoEnforce: true },
      selfHealing: { threshold: 3, window: '5s', strategy: 'Relax', cooldown: '1m' },
    });
    const base = (extra: Partial<ObservationSpec> = {}, syscalls = ['read', 'write']) =>
      observation('rlx', 'n1', syscalls, extra);
    await report(base());
    await report(observation('rlx', 'n2', ['read', 'write']));
    await waitFor(async () => (await getPolicy('rlx')).status?.phase === 'Enforcing', 'Enforcing');
    const first = (await getPolicy('rlx')).status!.profiles![0]!;
    const ackBoth = async (hashes: string[], extra: Partial<ObservationSpec> = {}, syscalls?: string[]) => {
      await report(base({ installed: hashes.map((hash) => ({ hash })), ...extra }, syscalls));
      await report(
        observation('rlx', 'n2', syscalls ?? ['read', 'write'], {
          installed: hashes.map((hash) => ({ hash })),
          ...extra,
        }),
      );
    };
    await ackBoth([first.hash]);
    await waitFor(async () => (await getPolicy('rlx')).status!.profiles![0]!.usable, 'first version usable');

    // Denials of ptrace cross the threshold: Relax publishes a version that allows it.
    const denied = {
      total: 4,
      byLayer: { syscalls: 4 },
      denied: [{ container: 'web', layer: 'syscalls' as const, what: 'ptrace', count: 4 }],
    };
    await ackBoth([first.hash], { violations: denied });
    await waitFor(async () => (await getPolicy('rlx')).status!.selfHealing?.lastAction === 'Relax', 'Relax');
    const relaxed = (await getPolicy('rlx')).status!.profiles!.at(-1)!;
    assert.notEqual(relaxed.hash, first.hash);
    assert.equal((await getPolicy('rlx')).status!.phase, 'Enforcing');
    const relaxedObject = (await profilesOf('rlx')).find((p) => p.spec.hash === relaxed.hash)!;
    assert.deepEqual(learnedNames(relaxedObject.spec.seccomp), ['ptrace', 'read', 'write']);

    // Once both nodes have the relaxed version, the first one is superseded and deleted.
    await ackBoth([first.hash, relaxed.hash], { violations: denied });
    await waitFor(async () => (await profilesOf('rlx')).length === 1, 'the superseded version deleted');
    assert.deepEqual(
      (await getPolicy('rlx')).status!.profiles!.map((p) => [p.hash, p.usable]),
      [[relaxed.hash, true]],
    );

    // A new image: the profile is stale, a new version (learned from both images, keeping the relaxation) follows.
    await report(
      base({
        installed: [{ hash: relaxed.hash }],
        violations: denied,
        containers: [
          { ...base().containers[0]!, images: ['registry.example/web:1', 'registry.example/web:2'] },
        ],
      }),
    );
    await waitFor(
      async () => (await eventsOf('rlx')).some((e) => e.reason === 'ImageDrift'),
      'an ImageDrift Event',
    );
    await waitFor(
      async () => (await getPolicy('rlx')).status!.profiles!.length === 2,
      'a new version after drift',
    );
    const [old, next] = (await getPolicy('rlx')).status!.profiles!;
    assert.equal(old!.stale, true);
    assert.equal(old!.usable, true, 'the previous version stays attached until the new one is installed');
    assert.equal(next!.image, 'registry.example/web:2');
    const nextObject = (await profilesOf('rlx')).find((p) => p.spec.hash === next!.hash)!;
    assert.deepEqual(nextObject.spec.images, ['registry.example/web:1', 'registry.example/web:2']);
    assert.ok(
      nextObject.spec.seccomp.syscalls[0]!.names.includes('ptrace'),
      'the relaxation is carried over',
    );
  } finally {
    await c.stop();
  }
});

test('an API server outage: informers and the Lease recover, reconciling resumes', async () => {
  const c = controller('survivor');
  await c.start();
  try {
    await waitFor(() => c.isLeader, 'leading');
    await createPolicy('outage', { learning: { duration: '1h', window: '1m', stableWindows: 3 } });
    await report(observation('outage', 'n1', ['read']));
    await waitFor(
      async () => (await getPolicy('outage')).status?.learning?.syscalls === 1,
      'first reconcile',
    );
    api.setAvailable(false);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the renew deadline
    assert.equal(c.isLeader, false, 'it stepped down when it could not renew');
    api.setAvailable(true);
    await report(observation('outage', 'n1', ['read', 'write', 'close']));
    await waitFor(() => c.isLeader, 'leading again');
    await waitFor(
      async () => (await getPolicy('outage')).status?.learning?.syscalls === 3,
      'reconciling resumed',
      20_000,
    );
  } finally {
    await c.stop();
  }
});
