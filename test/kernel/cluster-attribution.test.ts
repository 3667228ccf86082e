// Attribution on the real kernel: real runc containers named like CRI containers (64-hex IDs), the real
// learner, the real cgroup tree. Behaviour lands on the right pod and container name; a second container
// running at the same time stays apart; what a container did before the kubelet reported its ID is kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { startContainer } from '../../agent/container.js';
import { Learner } from '../../agent/learner.js';
import { AttributionTable, CgroupScanner, syncBindings } from '../../agent/cluster/attribution.js';
import { learnerPort } from '../../agent/cluster/adapters.js';
import { ObservationStore, type Behaviour } from '../../agent/cluster/observations.js';
import { parsePolicy } from '../../api/policy.js';

const pinDir = `/sys/fs/bpf/pahlevan-test-clusterattr-${process.pid}`;
let learner: Learner;

before(async () => {
  learner = await Learner.start({ pinDir });
});
after(async () => {
  await learner?.stop();
  Learner.removePins(pinDir);
});

function pod(uid: string, name: string, container: string, id: string): V1Pod {
  return {
    metadata: { uid, name, namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: 'n1', containers: [{ name: container, image: 'busybox:1' }] },
    status: {
      phase: 'Running',
      containerStatuses: [
        {
          name: container,
          image: 'busybox:1',
          imageID: '',
          ready: true,
          restartCount: 0,
          containerID: `containerd://${id}`,
          state: { running: {} },
        },
      ],
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('real containers are attributed to their pod and container name, apart from each other', async () => {
  const policy = parsePolicy({
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name: 'web', namespace: 'shop', uid: 'u-web' },
    spec: { selector: { matchLabels: { app: 'web' } } },
  });
  assert.ok(policy.ok);
  const table = new AttributionTable();
  table.upsertPolicy(policy.policy);
  const store = new ObservationStore('n1');
  const pending = new Map<string, Behaviour[]>();
  const port = learnerPort(learner);
  port.onBehaviour((cgroupId, behaviours) => {
    const who = table.resolve(cgroupId);
    if (!who?.policy) {
      const key = cgroupId.toString();
      pending.set(key, [...(pending.get(key) ?? []), ...behaviours]);
      return;
    }
    store.record(
      {
        policy: who.policy,
        containerName: who.containerName,
        containerId: who.containerId,
        podName: who.podName,
      },
      behaviours,
    );
  });
  const scanner = new CgroupScanner();
  const idA = randomBytes(32).toString('hex');
  const idB = randomBytes(32).toString('hex');
  // A reads a file and execs cat; B only execs true. Both start before the "kubelet" reports them.
  const a = await startContainer({
    runtime: 'runc',
    id: idA,
    command: ['/bin/busybox', 'sh', '-c', 'sleep 0.3; /bin/busybox cat /etc/hostname >/dev/null; sleep 0.3'],
    beforeStart: async ({ id }) => {
      const found = scanner.scan().get(idA);
      assert.equal(
        found?.cgroupId,
        id.toString(),
        'the scanner finds the runc cgroup by its directory inode',
      );
      await port.watch(id); // speculative watch: no pod reports this container yet
    },
  });
  const b = await startContainer({
    runtime: 'runc',
    id: idB,
    command: ['/bin/busybox', 'sh', '-c', 'sleep 0.3; /bin/busybox true; sleep 0.3'],
    beforeStart: async ({ id }) => port.watch(id),
  });
  try {
    await sleep(150);
    // The kubelet reports the containers now; the scan binds them.
    table.upsertPod(pod('uid-a', 'web-a', 'nginx', idA));
    table.upsertPod(pod('uid-b', 'web-b', 'sidecar', idB));
    syncBindings(table, scanner.scan());
    assert.equal(table.resolve(a.cgroupId)?.podName, 'web-a');
    assert.equal(table.resolve(b.cgroupId)?.containerName, 'sidecar');
    // Replay what was seen before the binding (the agent does this on bind).
    for (const [cgroupId, behaviours] of pending) {
      const who = table.resolve(cgroupId)!;
      store.record(
        {
          policy: who.policy!,
          containerName: who.containerName,
          containerId: who.containerId,
          podName: who.podName,
        },
        behaviours,
      );
    }
    await Promise.all([a.exited, b.exited]);
    await sleep(100);
    const spec = store.spec('shop/web')!;
    const nginx = spec.containers.find((c) => c.name === 'nginx')!;
    const sidecar = spec.containers.find((c) => c.name === 'sidecar')!;
    assert.ok(nginx && sidecar, `both containers observed: ${spec.containers.map((c) => c.name)}`);
    assert.deepEqual(nginx.pods, ['web-a']);
    assert.deepEqual(sidecar.pods, ['web-b']);
    assert.ok('/bin/busybox' in nginx.execs, `nginx execs ${Object.keys(nginx.execs)}`);
    assert.ok(
      Object.keys(nginx.files).some((f) => f.endsWith('/etc/hostname')),
      `nginx files ${Object.keys(nginx.files)}`,
    );
    assert.ok(
      !Object.keys(sidecar.files).some((f) => f.endsWith('/etc/hostname')),
      'the sidecar did not read /etc/hostname: nothing of nginx leaked into it',
    );
    for (const c of [nginx, sidecar]) {
      assert.ok('execve' in c.syscalls, `${c.name} syscalls ${Object.keys(c.syscalls)}`);
      assert.ok('nanosleep' in c.syscalls || 'clock_nanosleep' in c.syscalls, `${c.name} slept`);
    }
    // The kernel snapshot agrees with the streamed events (the agent uses it after restarts).
    const snapshot = await port.snapshot!(a.cgroupId);
    assert.ok(snapshot.some((s) => s.kind === 'syscall' && s.name === 'execve'));
  } finally {
    await port.unwatch(a.cgroupId).catch(() => {});
    await port.unwatch(b.cgroupId).catch(() => {});
    await a.cleanup();
    await b.cleanup();
  }
});
