// The cluster loop on this machine: stand-in API server, the HTTPS webhook, the controller, two agents as two
// nodes (separate kubelet roots, real BPF learner and enforcer), and a simulated kubelet per node that runs
// pods as real runc containers and resolves Localhost seccomp profiles from its own kubelet root.
//
// policy (validated by the webhook) -> pods admitted through the webhook -> learned on both nodes (node 2's
// agent is cut off from the API meanwhile and catches up) -> merged -> published, acked by both nodes ->
// new pods get the Localhost profile and start under it -> one starts misbehaving, crosses the
// self-healing threshold -> rolled back to Monitor, with Events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { waitFor } from '../helpers/kube.js';
import { admitPod, validatePolicy, type AdmissionTarget } from '../helpers/admission-client.js';
import { SimKubelet } from '../helpers/sim-kubelet.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { ensureCerts, CERT_FILES } from '../../certs/certs.js';
import { startWebhookServer } from '../../webhook/server.js';
import { ClusterPolicySource } from '../../webhook/policy-cache.js';
import { ClusterAgent } from '../../agent/cluster/agent.js';
import { createNodePorts } from '../../agent/cluster/adapters.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { instrumentPorts } from '../../agent/metrics-wiring.js';
import { Learner } from '../../agent/learner.js';
import { CgroupScanner, detectCgroupV2Root } from '../../agent/cluster/attribution.js';
import type { PahlevanNodeObservation } from '../../api/observation.js';
import type { PahlevanPolicy } from '../../api/policy.js';
import type { PahlevanProfile } from '../../api/profile.js';
import { Controller } from '../../webhook/controller/controller.js';
import { LEARNING_PROFILE_PATH } from '../../api/names.js';
import { learningProfileContent } from '../../api/attack-surface-data.js';
import { pino } from 'pino';

const NS = 'shop';
/** What runc and crun do before they install the filter (bpf/LEARNER.md): never in a learned profile. */
const RUNTIME_SETUP_SYSCALLS = ['mount', 'pivot_root', 'sethostname', 'umount2', 'seccomp'];
const SERVICE = 'pahlevan-webhook.pahlevan-system.svc';
const debug = process.env.PAHLEVAN_TEST_DEBUG
  ? (node: string) => ({
      info: (o: object, m?: string) => console.error(node, 'info', m, JSON.stringify(o)),
      warn: (o: object, m?: string) => console.error(node, 'warn', m, JSON.stringify(o)),
      error: (o: object, m?: string) => console.error(node, 'error', m, JSON.stringify(o)),
      debug: () => {},
    })
  : undefined;

/** The workload: reads a file in a loop; once /trigger/go exists it also calls ioprio_set(2), never learned. */
const WORKLOAD = [
  '/bin/busybox',
  'sh',
  '-c',
  'while :; do /bin/busybox cat /etc/hostname >/dev/null; ' +
    'if [ -e /trigger/go ]; then /bin/busybox ionice -c 3 /bin/busybox true || echo denied; fi; /bin/busybox sleep 0.2; done',
];

function podSpec(name: string, node: string, triggerDir: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { app: 'web' } },
    spec: {
      nodeName: node,
      restartPolicy: 'Never',
      containers: [
        {
          name: 'app',
          image: 'busybox:1.36',
          command: WORKLOAD,
          volumeMounts: [{ name: 'trigger', mountPath: '/trigger', readOnly: true }],
        },
      ],
      volumes: [{ name: 'trigger', hostPath: { path: triggerDir } }],
    },
  };
}

test('learn on two nodes, publish, attach, enforce, self-heal', { timeout: 300_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'pvt-e2e-'));
  const api = await FakeApiServer.start({ bookmarkIntervalMs: 500 });
  const cleanups: (() => Promise<unknown>)[] = [];
  const kc = api.kubeConfig(NS);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  try {
    // --- cluster: namespace opted in, two Ready nodes ---
    await core.createNamespace({
      body: { metadata: { name: NS, labels: { 'pahlevan.io/enabled': 'true' } } },
    });
    await core.createNamespace({ body: { metadata: { name: 'pahlevan-system' } } });
    for (const node of ['n1', 'n2']) {
      await core.createNode({ body: { metadata: { name: node } } });
      await core.replaceNodeStatus({
        name: node,
        body: {
          metadata: { name: node },
          status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ok' }] },
        },
      });
    }

    // --- webhook over HTTPS with a fresh CA; it reads policies through the API like in the cluster ---
    const certDir = join(tmp, 'certs');
    ensureCerts(certDir, [SERVICE]);
    const kubeconfigFile = join(tmp, 'kubeconfig');
    writeFileSync(kubeconfigFile, kc.exportConfig());
    process.env.KUBECONFIG = kubeconfigFile;
    const policies = new ClusterPolicySource({ info() {}, warn() {}, error() {} });
    await policies.start();
    cleanups.push(() => policies.stop());
    const webhook = await startWebhookServer({
      port: 0,
      host: '127.0.0.1',
      certDir,
      policies,
      namespace: 'pahlevan-system',
      processMetrics: false,
    });
    cleanups.push(() => webhook.close());
    const admission: AdmissionTarget = {
      url: webhook.url,
      caPem: readFileSync(join(certDir, CERT_FILES.caBundle), 'utf8'),
      serverName: SERVICE,
    };

    // --- two nodes: agent (real learner + enforcer) and kubelet each; node 2's agent talks through a proxy ---
    const proxy = await TcpProxy.start(api.port);
    cleanups.push(() => proxy.stop());
    const agents = new Map<string, ClusterAgent>();
    const nodeMetrics = new Map<string, AgentMetrics>();
    const kubelets = new Map<string, SimKubelet>();
    for (const node of ['n1', 'n2']) {
      const nodeKc = new KubeConfig();
      nodeKc.loadFromString(
        kc
          .exportConfig()
          .replace(`127.0.0.1:${api.port}`, `127.0.0.1:${node === 'n2' ? proxy.port : api.port}`),
      );
      const logger = debug?.(node);
      const pinDir = `/sys/fs/bpf/pahlevan-e2e-${node}-${process.pid}`;
      cleanups.push(async () => Learner.removePins(pinDir));
      const loaded = await createNodePorts(logger ?? { info() {}, warn() {}, error() {}, debug() {} }, {
        pinDir,
        cgroupAttachDir: join(detectCgroupV2Root(), 'pahlevan'),
      });
      cleanups.push(() => loaded.close());
      // Composed as `pahlevan agent` composes them: metrics counted at the ports.
      const metrics = new AgentMetrics();
      nodeMetrics.set(node, metrics);
      const ports = { ...loaded, ...instrumentPorts(loaded, metrics, node) };
      const kubeletRoot = join(tmp, node, 'kubelet');
      const agent = new ClusterAgent({
        node,
        kubeConfig: nodeKc,
        kubeletRoot,
        stateDir: join(tmp, node, 'state'),
        scanner: new CgroupScanner(),
        rescanIntervalMs: 200,
        writeDebounceMs: 100,
        maxBackoffMs: 1000,
        ...(ports.learner ? { learner: ports.learner } : {}),
        ...(ports.enforcer ? { enforcer: ports.enforcer } : {}),
        ...(logger ? { logger } : {}),
        metrics,
      });
      assert.ok(ports.learner, 'the real learner loaded');
      await agent.start();
      cleanups.push(() => agent.stop());
      agents.set(node, agent);
      // The runtime hook: the agent sees the container's cgroup before its first instruction.
      const kubelet = new SimKubelet(kc, node, kubeletRoot, () => agent.sync());
      await kubelet.start();
      cleanups.push(() => kubelet.stop());
      kubelets.set(node, kubelet);
    }

    // --- the policy, validated by the webhook, then stored ---
    const policy = {
      apiVersion: 'pahlevan.io/v1alpha1',
      kind: 'PahlevanPolicy',
      metadata: { name: 'web', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        learning: { duration: '6s', window: '2s', stableWindows: 2, autoEnforce: true },
        enforcement: { mode: 'Enforce', layers: ['syscalls'] },
        selfHealing: { enabled: true, threshold: 3, window: '4s', strategy: 'Rollback', cooldown: '1m' },
      },
    };
    await validatePolicy(admission, policy);
    await custom.createNamespacedCustomObject({
      group: 'pahlevan.io',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'pahlevanpolicies',
      body: policy,
    });
    await waitFor(() => policies.policies().length === 1, 'the webhook sees the policy');

    // --- two controller replicas; c1 gets the Lease first ---
    const controllerLogger = pino({ level: process.env.PAHLEVAN_TEST_DEBUG ? 'info' : 'silent' });
    const c1 = new Controller({
      kubeConfig: kc,
      identity: 'c1',
      leaseDurationSeconds: 3,
      renewDeadlineMs: 2000,
      retryPeriodMs: 500,
      resyncMs: 500,
      debounceMs: 100,
      logger: controllerLogger,
    });
    await c1.start();
    cleanups.push(() => c1.stop());
    await waitFor(() => c1.isLeader, 'c1 leads', 10_000);
    const c2 = new Controller({
      kubeConfig: kc,
      identity: 'c2',
      leaseDurationSeconds: 3,
      renewDeadlineMs: 2000,
      retryPeriodMs: 500,
      resyncMs: 500,
      debounceMs: 100,
      logger: controllerLogger,
    });
    await c2.start();
    cleanups.push(() => c2.stop());

    // Node 2's agent loses the API server before its pod starts.
    proxy.setCut(true);

    // --- pods admitted through the webhook, one per node ---
    const quietTrigger = join(tmp, 'trigger-quiet');
    mkdirSync(quietTrigger);
    const createPod = async (name: string, node: string, trigger = quietTrigger): Promise<V1Pod> => {
      const admitted = await admitPod(admission, podSpec(name, node, trigger));
      return core.createNamespacedPod({ namespace: NS, body: admitted });
    };
    const p1 = await createPod('web-1', 'n1');
    assert.equal(p1.metadata?.labels?.['pahlevan.io/policy'], 'web', 'the webhook labels learning pods');
    assert.deepEqual(
      { ...p1.spec?.containers[0]?.securityContext?.seccompProfile },
      { type: 'Localhost', localhostProfile: LEARNING_PROFILE_PATH },
      'learning pods run under the learning profile (the runtime default as a file)',
    );
    const p2 = await createPod('web-2', 'n2');
    assert.equal(
      p2.spec?.containers[0]?.securityContext?.seccompProfile?.localhostProfile,
      LEARNING_PROFILE_PATH,
    );
    // Each agent installed it at start, so the learning pods start under it (a missing file would not start).
    for (const node of ['n1', 'n2'])
      assert.equal(
        readFileSync(join(tmp, node, 'kubelet', 'seccomp', LEARNING_PROFILE_PATH), 'utf8'),
        learningProfileContent(),
        `the learning profile is installed on ${node}`,
      );

    const observation = (node: string) =>
      api.getObject('pahlevan.io', 'pahlevannodeobservations', NS, `web.${node}`) as
        PahlevanNodeObservation | undefined;
    const learned = (node: string) => {
      const c = observation(node)?.spec.containers.find((x) => x.name === 'app');
      return !!c && 'openat' in c.syscalls && '/bin/busybox' in c.execs;
    };
    await waitFor(() => learned('n1'), 'node 1 reports what web-1 did', 30_000);
    assert.equal(kubelets.get('n1')!.containersOf('web-1')[0]?.seccomp, LEARNING_PROFILE_PATH);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(observation('n2'), undefined, 'node 2 is cut off: nothing reached the API yet');
    proxy.setCut(false);
    await waitFor(() => learned('n2'), 'node 2 catches up after the outage', 30_000);
    assert.deepEqual(observation('n2')!.spec.containers[0]!.pods, ['web-2']);

    // --- the controller leader dies mid-learning (no lease release); the other takes over ---
    assert.ok(c1.isLeader && !c2.isLeader, 'c1 leads');
    await c1.stop(false);
    await waitFor(() => c2.isLeader, 'c2 takes over the lease', 30_000);

    // --- merged, published, acked by both nodes, usable; autoEnforce -> Enforcing ---
    const readPolicy = () =>
      api.getObject('pahlevan.io', 'pahlevanpolicies', NS, 'web') as unknown as PahlevanPolicy;
    await waitFor(
      () =>
        readPolicy().status?.phase === 'Enforcing' && !!readPolicy().status?.profiles?.some((p) => p.usable),
      'the profile is published, installed on both nodes and enforced',
      60_000,
    );
    const published = readPolicy().status!.profiles!.find((p) => p.usable)!;
    assert.equal(published.container, 'app');
    assert.equal(published.nodesInstalled, 2);
    const profileObject = api.getObject(
      'pahlevan.io',
      'pahlevanprofiles',
      NS,
      published.profileName,
    ) as unknown as PahlevanProfile;
    assert.ok(profileObject, 'the immutable PahlevanProfile exists');
    for (const node of ['n1', 'n2']) {
      const file = join(tmp, node, 'kubelet', 'seccomp', published.localhostProfile);
      assert.deepEqual(
        JSON.parse(readFileSync(file, 'utf8')),
        profileObject.spec.seccomp,
        `installed on ${node}`,
      );
      assert.ok(
        observation(node)!.spec.installed.some((i) => i.hash === published.hash),
        `${node} acked`,
      );
    }
    // Only what ran under the filter was learned: none of the runtime's setup before it.
    const allowed = profileObject.spec.seccomp.syscalls.flatMap((r) => r.names);
    for (const setup of RUNTIME_SETUP_SYSCALLS)
      assert.ok(!allowed.includes(setup), `the published profile does not allow ${setup} (runtime setup)`);
    assert.ok(allowed.includes('execve') && allowed.includes('openat'), 'the workload itself was learned');
    // Both nodes' behaviour is in the merged profile (union), with coverage from both nodes.
    assert.ok(
      profileObject.spec.learnedFrom && profileObject.spec.learnedFrom.nodes === 2,
      'learned from both nodes',
    );

    // --- new pods get the Localhost profile and run under it ---
    const loudTrigger = join(tmp, 'trigger-loud');
    mkdirSync(loudTrigger);
    const p3 = await createPod('web-3', 'n1', loudTrigger);
    const p4 = await createPod('web-4', 'n2');
    for (const p of [p3, p4]) {
      const sp = p.spec!.containers[0]!.securityContext?.seccompProfile;
      assert.equal(sp?.type, 'Localhost', `${p.metadata!.name} gets a Localhost profile`);
      assert.equal(sp?.localhostProfile, published.localhostProfile);
    }
    await waitFor(
      () =>
        kubelets.get('n1')!.containersOf('web-3').length === 1 &&
        kubelets.get('n2')!.containersOf('web-4').length === 1,
      'the new pods start',
      30_000,
    );
    const web3 = kubelets.get('n1')!.containersOf('web-3')[0]!;
    const web4 = kubelets.get('n2')!.containersOf('web-4')[0]!;
    assert.equal(web3.seccomp, published.localhostProfile, 'web-3 runs under the learned profile');
    assert.equal(web4.seccomp, published.localhostProfile, 'web-4 runs under the learned profile');
    await new Promise((r) => setTimeout(r, 2000));
    for (const rc of [web3, web4]) {
      const exited = await Promise.race([rc.container.exited.then(() => true), Promise.resolve(false)]);
      assert.ok(!exited, `${rc.pod} keeps running under its profile (output: ${rc.output.slice(-300)})`);
    }

    // Starting under the gated profile is reliable: runc's post-filter syscalls (also the timing-dependent
    // ones no recording can be relied on to see) are in it. More starts, on both nodes.
    const more = ['web-5', 'web-6', 'web-7', 'web-8', 'web-9', 'web-10'];
    for (const [i, name] of more.entries()) await createPod(name, i % 2 ? 'n2' : 'n1');
    const started = (name: string, i: number) => kubelets.get(i % 2 ? 'n2' : 'n1')!.containersOf(name)[0];
    await waitFor(() => more.every((name, i) => started(name, i)), 'the further pods start', 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    for (const [i, name] of more.entries()) {
      const rc = started(name, i)!;
      assert.equal(rc.seccomp, published.localhostProfile);
      const exited = await Promise.race([rc.container.exited.then(() => true), Promise.resolve(false)]);
      assert.ok(
        !exited,
        `${name} starts and keeps running under the profile (output: ${rc.output.slice(-300)})`,
      );
    }

    assert.ok(
      !profileObject.spec.seccomp.syscalls.some((r) => r.names.includes('ioprio_set')),
      'ioprio_set was never learned',
    );
    // --- web-3 starts misbehaving: ioprio_set(2) is denied, counted, reported, and the policy rolls back ---
    writeFileSync(join(loudTrigger, 'go'), '');
    await waitFor(
      () => web3.output.includes('denied'),
      'the profile denies what web-3 never did while learning',
      30_000,
    );
    assert.ok(!web4.output.includes('denied'), 'web-4 behaves');
    await waitFor(
      () => (observation('n1')?.spec.violations.denied ?? []).some((d) => d.what.includes('ioprio_set')),
      'node 1 reports the denied ioprio_set calls',
      30_000,
    );
    await waitFor(
      () => readPolicy().status?.phase === 'RolledBack',
      'self-healing rolls the policy back',
      60_000,
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}; status ${JSON.stringify(readPolicy().status)}; n1 violations ${JSON.stringify(observation('n1')?.spec.violations)}`,
      );
    });
    assert.equal(readPolicy().status?.selfHealing?.lastAction, 'Rollback');
    // Every transition is also an Event on the policy (written right after the status).
    const reasons = async () =>
      (await core.listNamespacedEvent({ namespace: NS })).items
        .filter((e) => e.involvedObject.kind === 'PahlevanPolicy' && e.involvedObject.name === 'web')
        .map((e) => e.reason);
    await waitFor(async () => (await reasons()).includes('RolledBack'), 'the RolledBack Event', 10_000).catch(
      async (err: Error) => {
        throw new Error(`${err.message}: Events ${(await reasons()).join(', ')}`);
      },
    );
    for (const reason of ['ProfilePublished', 'ProfileUsable', 'Enforcing', 'RolledBack'])
      assert.ok((await reasons()).includes(reason), `Event ${reason}`);
  } finally {
    for (const c of cleanups.reverse())
      await c().catch((err: Error) => console.error('cleanup:', err.message));
    await api.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});
