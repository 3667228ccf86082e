// The cluster agent against the stand-in API server (real @kubernetes/client-node): it watches the pods of
// its own node, attributes learner events through a cgroup tree, writes its node's observation object,
// installs published profiles and acks them, catches up after an API outage and an agent restart, and
// removes files and watches when policies and pods go away. The learner here is a scripted stand-in;
// test/kernel/cluster-attribution.test.ts and test/e2e/cluster.test.ts use the real one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { waitFor } from '../helpers/kube.js';
import {
  ClusterAgent,
  type EnforcementTarget,
  type EnforcerPort,
  type LearnerPort,
} from '../../agent/cluster/agent.js';
import { CgroupScanner } from '../../agent/cluster/attribution.js';
import type { Behaviour } from '../../agent/cluster/observations.js';
import type { PahlevanNodeObservation } from '../../api/observation.js';
import { buildProfileSpec, profileObjectName } from '../../api/profile.js';
import { LEARNING_PROFILE_PATH } from '../../api/names.js';
import { learningProfileContent } from '../../api/attack-surface-data.js';

class ScriptedLearner implements LearnerPort {
  watched = new Set<bigint>();
  ungated: bigint[] = [];
  forgotten: bigint[] = [];
  private listeners: ((id: bigint, b: Behaviour[]) => void)[] = [];
  async watch(id: bigint, options?: { requireSeccomp?: boolean }) {
    this.watched.add(id);
    if (!options?.requireSeccomp) this.ungated.push(id);
  }
  async unwatch(id: bigint) {
    this.watched.delete(id);
    this.forgotten.push(id);
  }
  onBehaviour(l: (id: bigint, b: Behaviour[]) => void) {
    this.listeners.push(l);
  }
  emit(id: bigint, b: Behaviour[]) {
    for (const l of this.listeners) l(id, b);
  }
}

const debugLogger = {
  info: (o: object, m?: string) => console.error('info', m, JSON.stringify(o)),
  warn: (o: object, m?: string) => console.error('warn', m, JSON.stringify(o)),
  error: (o: object, m?: string) => console.error('error', m, JSON.stringify(o)),
  debug: (o: object, m?: string) => console.error('debug', m, JSON.stringify(o)),
};
const group = 'pahlevan.io';
const version = 'v1alpha1';

test('the agent learns, reports, installs, acks, survives an outage and a restart, and cleans up', async () => {
  const api = await FakeApiServer.start({ bookmarkIntervalMs: 200 });
  const tmp = mkdtempSync(join(tmpdir(), 'pvt-agent-'));
  const cgroupRoot = join(tmp, 'cgroup');
  const kubeletRoot = join(tmp, 'kubelet');
  const stateDir = join(tmp, 'state');
  const kc = api.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const agents: ClusterAgent[] = [];
  const learner = new ScriptedLearner();
  const newAgent = () => {
    const agent = new ClusterAgent({
      node: 'n1',
      kubeConfig: kc,
      kubeletRoot,
      stateDir,
      learner,
      scanner: new CgroupScanner(cgroupRoot),
      rescanIntervalMs: 50,
      writeDebounceMs: 20,
      maxBackoffMs: 200,
      ...(process.env.PAHLEVAN_TEST_DEBUG ? { logger: debugLogger } : {}),
    });
    agents.push(agent);
    return agent;
  };
  try {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } });
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: 'shop',
      plural: 'pahlevanpolicies',
      body: {
        apiVersion: 'pahlevan.io/v1alpha1',
        kind: 'PahlevanPolicy',
        metadata: { name: 'web', namespace: 'shop' },
        spec: { selector: { matchLabels: { app: 'web' } } },
      },
    });
    // Two pods: one on this node, one on another node (its cgroup even exists here: it must be ignored).
    const mine = randomBytes(32).toString('hex');
    const theirs = randomBytes(32).toString('hex');
    const makePod = async (
      name: string,
      node: string,
      id: string,
      learningProfile = true,
    ): Promise<V1Pod> => {
      const created = await core.createNamespacedPod({
        namespace: 'shop',
        body: {
          metadata: { name, labels: { app: 'web' } },
          spec: {
            nodeName: node,
            containers: [
              {
                name: 'nginx',
                image: 'nginx:1',
                // as the webhook admits learning pods
                ...(learningProfile
                  ? {
                      securityContext: {
                        seccompProfile: { type: 'Localhost', localhostProfile: LEARNING_PROFILE_PATH },
                      },
                    }
                  : {}),
              },
            ],
          },
        },
      });
      mkdirSync(join(cgroupRoot, 'kubepods', `pod${created.metadata!.uid}`, id), { recursive: true });
      return core.replaceNamespacedPodStatus({
        namespace: 'shop',
        name,
        body: {
          ...created,
          status: {
            phase: 'Running',
            containerStatuses: [
              {
                name: 'nginx',
                image: 'nginx:1',
                imageID: '',
                ready: true,
                restartCount: 0,
                containerID: `containerd://${id}`,
                state: { running: {} },
              },
            ],
          },
        },
      });
    };
    const podMine = await makePod('web-1', 'n1', mine);
    const podTheirs = await makePod('web-2', 'n2', theirs);
    const cgroupOf = (pod: V1Pod, id: string) =>
      statSync(join(cgroupRoot, 'kubepods', `pod${pod.metadata!.uid}`, id), { bigint: true }).ino;
    const cgMine = cgroupOf(podMine, mine);
    const cgTheirs = cgroupOf(podTheirs, theirs);

    let agent = newAgent();
    await agent.start();
    await waitFor(() => learner.watched.has(cgMine), 'the learner watches the container of our pod');
    learner.emit(cgMine, [
      { kind: 'syscall', name: 'read' },
      { kind: 'exec', path: '/usr/sbin/nginx' },
    ]);
    learner.emit(cgTheirs, [{ kind: 'syscall', name: 'ptrace' }]); // not ours: never attributed
    const observation = () =>
      api.getObject(group, 'pahlevannodeobservations', 'shop', 'web.n1') as
        PahlevanNodeObservation | undefined;
    await waitFor(
      () => !!observation()?.spec.containers[0]?.execs['/usr/sbin/nginx'],
      'the observation object',
    );
    let spec = observation()!.spec;
    assert.equal(spec.node, 'n1');
    assert.deepEqual(Object.keys(spec.containers[0]!.syscalls), ['read']);
    assert.deepEqual(learner.ungated, [], 'containers are learned only under their seccomp filter');
    assert.equal(
      readFileSync(join(kubeletRoot, 'seccomp', LEARNING_PROFILE_PATH), 'utf8'),
      learningProfileContent(),
      'the learning profile is installed at start',
    );
    // A pod without a filter (admitted before its policy, say) is learned ungated once it is attributed.
    const unconfined = randomBytes(32).toString('hex');
    const podUnconfined = await makePod('web-9', 'n1', unconfined, false);
    const cgUnconfined = cgroupOf(podUnconfined, unconfined);
    await waitFor(
      () => learner.ungated.includes(cgUnconfined),
      'the unconfined container is watched ungated',
    );
    assert.deepEqual(learner.ungated, [cgUnconfined], 'only that one');
    assert.deepEqual(spec.containers[0]!.pods, ['web-1']);
    assert.deepEqual(spec.containers[0]!.images, ['nginx:1']);
    assert.equal(observation()!.metadata.labels?.['pahlevan.io/node'], 'n1');

    // Publish a profile: the agent installs it under the kubelet root and acks its hash.
    const content = {
      seccomp: {
        defaultAction: 'SCMP_ACT_ERRNO' as const,
        syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' as const }],
      },
      execs: ['/usr/sbin/nginx'],
      files: [],
      ports: [],
    };
    const profileSpec = buildProfileSpec('shop', 'web', 'nginx', content);
    const profileName = profileObjectName('web', 'nginx', profileSpec.hash);
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: 'shop',
      plural: 'pahlevanprofiles',
      body: {
        apiVersion: 'pahlevan.io/v1alpha1',
        kind: 'PahlevanProfile',
        metadata: { name: profileName, namespace: 'shop' },
        spec: profileSpec,
      },
    });
    const file = join(kubeletRoot, 'seccomp', profileSpec.localhostProfile);
    await waitFor(() => existsSync(file), 'the profile file');
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), content.seccomp);
    await waitFor(
      () => observation()?.spec.installed.some((i) => i.hash === profileSpec.hash) ?? false,
      'the ack of the installed hash',
    );

    // The API server goes away; learning goes on; the agent restarts during the outage.
    api.setAvailable(false);
    learner.emit(cgMine, [{ kind: 'syscall', name: 'write' }]);
    learner.emit(cgMine, [{ kind: 'port', direction: 'listen', protocol: 'TCP', port: 8080 }]);
    await new Promise((r) => setTimeout(r, 300));
    await agent.stop();
    agent = newAgent();
    await agent.start();
    learner.emit(cgMine, [{ kind: 'file', path: '/var/cache/nginx/x', write: true }]); // not yet attributable
    await new Promise((r) => setTimeout(r, 300));
    api.setAvailable(true);
    await waitFor(() => {
      const c = observation()?.spec.containers[0];
      return !!c?.syscalls.write && c.ports.length === 1 && !!c.files['/var/cache/nginx/x'];
    }, 'everything learned during the outage and across the restart reaches the API');
    spec = observation()!.spec;
    assert.deepEqual(
      spec.containers[0]!.syscalls.read,
      { count: 1, pods: 1 },
      'no double counting after restart',
    );

    // The watch history is compacted and every watch is cut: resuming gets 410 Gone, the agent relists.
    const podLists = () =>
      api.requests.filter((r) => r.startsWith('GET /api/v1/pods') && !r.includes('watch=true')).length;
    const listsBefore = podLists();
    api.compact();
    api.closeWatches();
    await waitFor(() => podLists() > listsBefore, 'the agent relists pods after 410 Gone');

    // The pod goes away: its cgroup is unwatched (and forgotten).
    await core.deleteNamespacedPod({ namespace: 'shop', name: 'web-1' });
    rmSync(join(cgroupRoot, 'kubepods', `pod${podMine.metadata!.uid}`), { recursive: true });
    await waitFor(() => learner.forgotten.includes(cgMine), 'the learner forgets the gone container');

    // The policy is deleted: its profile files go too (no pod references them any more).
    await custom.deleteNamespacedCustomObject({
      group,
      version,
      namespace: 'shop',
      plural: 'pahlevanpolicies',
      name: 'web',
    });
    await waitFor(() => !existsSync(file), 'the unreferenced profile file is removed');
  } finally {
    for (const a of agents) await a.stop().catch(() => {});
    await api.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a new container cgroup is picked up at once, not at the next periodic rescan', async () => {
  const api = await FakeApiServer.start();
  const tmp = mkdtempSync(join(tmpdir(), 'pvt-agent-'));
  const cgroupRoot = join(tmp, 'cgroup');
  mkdirSync(cgroupRoot);
  const kc = api.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const learner = new ScriptedLearner();
  const agent = new ClusterAgent({
    node: 'n1',
    kubeConfig: kc,
    kubeletRoot: join(tmp, 'kubelet'),
    stateDir: join(tmp, 'state'),
    learner,
    scanner: new CgroupScanner(cgroupRoot),
    rescanIntervalMs: 600_000,
  });
  try {
    await agent.start();
    // The kubelet reports the container first; its cgroup appears afterwards (the pod event's rescan finds
    // nothing, and the periodic one is ten minutes away).
    const id = randomBytes(32).toString('hex');
    await core.createNamespacedPod({
      namespace: 'default',
      body: { metadata: { name: 'p' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] } },
    });
    await new Promise((r) => setTimeout(r, 300));
    const dir = join(cgroupRoot, 'kubepods', 'podx', id);
    mkdirSync(dir, { recursive: true });
    const cgroupId = statSync(dir, { bigint: true }).ino;
    await waitFor(() => learner.watched.has(cgroupId), 'the learner watches the new cgroup', 5_000);
  } finally {
    await agent.stop();
    await api.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('after publication: the profiled image is enforced, a new image is monitored and learned again', async () => {
  const api = await FakeApiServer.start();
  const tmp = mkdtempSync(join(tmpdir(), 'pvt-agent-'));
  const cgroupRoot = join(tmp, 'cgroup');
  const kc = api.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const learner = new ScriptedLearner();
  const applied = new Map<bigint, EnforcementTarget | undefined>();
  const enforcer: EnforcerPort = {
    probe: async () => ({ active: ['syscalls'], missing: [] }),
    apply: async (id, target) => void applied.set(id, target),
    onViolation: () => {},
  };
  const agent = new ClusterAgent({
    node: 'n1',
    kubeConfig: kc,
    kubeletRoot: join(tmp, 'kubelet'),
    stateDir: join(tmp, 'state'),
    learner,
    enforcer,
    scanner: new CgroupScanner(cgroupRoot),
    rescanIntervalMs: 50,
    writeDebounceMs: 20,
  });
  try {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } });
    const spec = buildProfileSpec('shop', 'web', 'app', {
      seccomp: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] },
      execs: [],
      files: [],
      ports: [],
    });
    const profileName = profileObjectName('web', 'app', spec.hash);
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: 'shop',
      plural: 'pahlevanprofiles',
      body: {
        apiVersion: 'pahlevan.io/v1alpha1',
        kind: 'PahlevanProfile',
        metadata: { name: profileName, namespace: 'shop' },
        spec,
      },
    });
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: 'shop',
      plural: 'pahlevanpolicies',
      body: {
        apiVersion: 'pahlevan.io/v1alpha1',
        kind: 'PahlevanPolicy',
        metadata: { name: 'web', namespace: 'shop' },
        spec: {
          selector: { matchLabels: { app: 'web' } },
          enforcement: { mode: 'Enforce', layers: ['syscalls'] },
        },
      },
    });
    await custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version,
        namespace: 'shop',
        plural: 'pahlevanpolicies',
        name: 'web',
        body: {
          status: {
            phase: 'Enforcing',
            profiles: [
              {
                container: 'app',
                hash: spec.hash,
                localhostProfile: spec.localhostProfile,
                profileName,
                image: 'app:1',
                syscalls: 1,
                nodesInstalled: 1,
                nodesReady: 1,
                usable: true,
              },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    await agent.start();
    const runPod = async (name: string, image: string): Promise<bigint> => {
      const id = randomBytes(32).toString('hex');
      const created = await core.createNamespacedPod({
        namespace: 'shop',
        body: {
          metadata: { name, labels: { app: 'web' } },
          spec: { nodeName: 'n1', containers: [{ name: 'app', image }] },
        },
      });
      const dir = join(cgroupRoot, 'kubepods', `pod${created.metadata!.uid}`, id);
      mkdirSync(dir, { recursive: true });
      await core.replaceNamespacedPodStatus({
        namespace: 'shop',
        name,
        body: {
          ...created,
          status: {
            phase: 'Running',
            containerStatuses: [
              {
                name: 'app',
                image,
                imageID: '',
                ready: true,
                restartCount: 0,
                containerID: `containerd://${id}`,
                state: { running: {} },
              },
            ],
          },
        },
      });
      return statSync(dir, { bigint: true }).ino;
    };
    const same = await runPod('web-1', 'app:1');
    const drifted = await runPod('web-2', 'app:2');
    await waitFor(() => applied.has(same) && applied.has(drifted), 'both containers get enforcement');
    assert.equal(applied.get(same)!.modes.syscalls, 'Enforce', 'the image the profile was learned from');
    assert.equal(
      applied.get(drifted)!.modes.syscalls,
      'Monitor',
      'a new image: previous profile, Monitor only',
    );
    assert.equal(applied.get(drifted)!.profileName, profileName);
    await waitFor(() => learner.watched.has(drifted), 'the new image is learned again');
    assert.ok(!learner.watched.has(same), 'the profiled image is not learned');
    learner.emit(drifted, [{ kind: 'syscall', name: 'write' }]);
    learner.emit(same, [{ kind: 'syscall', name: 'ptrace' }]); // not learning: ignored
    const observed = () =>
      (
        api.getObject(group, 'pahlevannodeobservations', 'shop', 'web.n1') as
          PahlevanNodeObservation | undefined
      )?.spec.containers[0];
    await waitFor(() => !!observed()?.syscalls.write, 'the new image behaviour is reported');
    assert.deepEqual(observed()!.images, ['app:1', 'app:2'], 'what runs is reported in every phase');
    assert.ok(!('ptrace' in observed()!.syscalls));
  } finally {
    await agent.stop();
    await api.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});
