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
import { Learner } from '../../agent/learner.js';
import { CgroupScanner, detectCgroupV2Root } from '../../agent/cluster/attribution.js';
import type { PahlevanNodeObservation } from '../../api/observation.js';

const NS = 'shop';
const SERVICE = 'pahlevan-webhook.pahlevan-system.svc';
const debug = process.env.PAHLEVAN_TEST_DEBUG
  ? (node: string) => ({
      info: (o: object, m?: string) => console.error(node, 'info', m, JSON.stringify(o)),
      warn: (o: object, m?: string) => console.error(node, 'warn', m, JSON.stringify(o)),
      error: (o: object, m?: string) => console.error(node, 'error', m, JSON.stringify(o)),
      debug: () => {},
    })
  : undefined;

/** The workload: reads a file in a loop; once /trigger/go exists it also calls sync(2), which it never learned. */
const WORKLOAD = [
  '/bin/busybox',
  'sh',
  '-c',
  'while :; do /bin/busybox cat /etc/hostname >/dev/null; ' +
    'if [ -e /trigger/go ]; then /bin/busybox sync || echo denied; fi; /bin/busybox sleep 0.2; done',
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
      const ports = await createNodePorts(logger ?? { info() {}, warn() {}, error() {}, debug() {} }, {
        pinDir,
        cgroupAttachDir: join(detectCgroupV2Root(), 'pahlevan'),
      });
      cleanups.push(() => ports.close());
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
    assert.equal(
      p1.spec?.containers[0]?.securityContext?.seccompProfile,
      undefined,
      'no profile while learning',
    );
    await createPod('web-2', 'n2');

    const observation = (node: string) =>
      api.getObject('pahlevan.io', 'pahlevannodeobservations', NS, `web.${node}`) as
        PahlevanNodeObservation | undefined;
    const learned = (node: string) => {
      const c = observation(node)?.spec.containers.find((x) => x.name === 'app');
      return !!c && 'openat' in c.syscalls && '/bin/busybox' in c.execs;
    };
    await waitFor(() => learned('n1'), 'node 1 reports what web-1 did', 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(observation('n2'), undefined, 'node 2 is cut off: nothing reached the API yet');
    proxy.setCut(false);
    await waitFor(() => learned('n2'), 'node 2 catches up after the outage', 30_000);
    assert.deepEqual(observation('n2')!.spec.containers[0]!.pods, ['web-2']);
  } finally {
    for (const c of cleanups.reverse())
      await c().catch((err: Error) => console.error('cleanup:', err.message));
    await api.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});
