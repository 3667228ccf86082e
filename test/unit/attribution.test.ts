import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import {
  AttributionTable,
  CgroupScanner,
  cgroupV2PathFromProcFile,
  containerFromCgroupPath,
  containerIdFromStatus,
  syncBindings,
  type BindingChange,
} from '../../agent/cluster/attribution.js';
import { parsePolicy, type PahlevanPolicy } from '../../api/policy.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c0ffee'.padEnd(64, '1');

test('container IDs come out of every runtime cgroup form', () => {
  const cases: [string, string | undefined, string | undefined][] = [
    [
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-${A}.scope`,
      A,
      'containerd',
    ],
    [`/kubepods.slice/kubepods-pod99.slice/crio-${B}.scope`, B, 'cri-o'],
    [`/kubepods.slice/kubepods-pod99.slice/crio-conmon-${B}.scope`, undefined, undefined],
    [`/system.slice/docker-${A}.scope`, A, 'docker'],
    [`/machine.slice/libpod-${C}.scope`, C, 'podman'],
    [`/kubepods/burstable/pod1234-5678/${C}`, C, 'cgroupfs'],
    [`/docker/${A}`, A, 'cgroupfs'],
    [`/kubepods.slice/kubepods-pod1.slice/cri-containerd-${A}.scope/init.scope`, A, 'containerd'],
    ['/user.slice/user-0.slice/session-3.scope', undefined, undefined],
    ['/', undefined, undefined],
    [`/kubepods/pod1/${A.slice(1)}`, undefined, undefined], // 63 hex: not a container ID
  ];
  for (const [path, id, runtime] of cases) {
    const got = containerFromCgroupPath(path);
    assert.equal(got?.containerId, id, path);
    assert.equal(got?.runtime, runtime, path);
  }
  assert.equal(
    containerFromCgroupPath(`/kubepods.slice/kubepods-pod1.slice/cri-containerd-${A}.scope/init.scope`)
      ?.cgroupPath,
    `/kubepods.slice/kubepods-pod1.slice/cri-containerd-${A}.scope`,
  );
});

test('the v2 line of /proc/<pid>/cgroup is used on hybrid hosts', () => {
  const text = `12:memory:/kubepods/pod1/${A}\n1:name=systemd:/x\n0::/kubepods/pod1/${B}\n`;
  assert.equal(cgroupV2PathFromProcFile(text), `/kubepods/pod1/${B}`);
  assert.equal(cgroupV2PathFromProcFile('3:cpu:/x\n'), undefined);
});

test('status container IDs lose their runtime scheme and must be 64 hex', () => {
  assert.equal(containerIdFromStatus(`containerd://${A}`), A);
  assert.equal(containerIdFromStatus(`cri-o://${B}`), B);
  assert.equal(containerIdFromStatus('containerd://../../etc'), undefined);
  assert.equal(containerIdFromStatus(undefined), undefined);
});

function policy(name: string, namespace: string, matchLabels: Record<string, string>): PahlevanPolicy {
  const r = parsePolicy({
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name, namespace, uid: `uid-${name}` },
    spec: { selector: { matchLabels } },
  });
  assert.ok(r.ok);
  return r.policy;
}

function pod(
  uid: string,
  name: string,
  containers: { name: string; id?: string; terminated?: boolean }[],
  labels: Record<string, string> = { app: 'web' },
  namespace = 'shop',
): V1Pod {
  return {
    metadata: { uid, name, namespace, labels },
    spec: { containers: containers.map((c) => ({ name: c.name, image: `img/${c.name}:1` })) },
    status: {
      phase: 'Running',
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: `img/${c.name}:1`,
        imageID: '',
        ready: true,
        restartCount: 0,
        ...(c.id ? { containerID: `containerd://${c.id}` } : {}),
        state: c.terminated ? { terminated: { exitCode: 0 } } : { running: {} },
      })),
    },
  };
}

function table(): { t: AttributionTable; changes: BindingChange[] } {
  const changes: BindingChange[] = [];
  const t = new AttributionTable((c) => changes.push(c));
  t.upsertPolicy(policy('web', 'shop', { app: 'web' }));
  return { t, changes };
}

test('a bound cgroup resolves to pod, container name, image and policy', () => {
  const { t, changes } = table();
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
  assert.ok(t.bind(100n, A));
  const got = t.resolve(100);
  assert.equal(got?.podName, 'web-1');
  assert.equal(got?.containerName, 'nginx');
  assert.equal(got?.image, 'img/nginx:1');
  assert.deepEqual(got?.policy, { namespace: 'shop', name: 'web', uid: 'uid-web' });
  assert.deepEqual(changes, [{ kind: 'bound', cgroupId: '100', containerId: A }]);
});

test('cgroups of containers no pod on this node runs are not bound', () => {
  const { t } = table();
  assert.equal(t.bind(100, A), false);
  assert.equal(t.resolve(100), undefined);
});

test('a container restart replaces the old binding; the old ID no longer resolves', () => {
  const { t, changes } = table();
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
  t.bind(100, A);
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: B }])); // restarted: new container ID
  assert.equal(t.resolve(100), undefined);
  assert.equal(changes.at(-1)?.kind, 'unbound');
  assert.deepEqual(t.unboundContainers(), [B]);
  t.bind(101, B);
  assert.equal(t.resolve(101)?.containerId, B);
});

test('a terminated container and a deleted pod drop their bindings', () => {
  const { t } = table();
  t.upsertPod(
    pod('p1', 'web-1', [
      { name: 'nginx', id: A },
      { name: 'side', id: B },
    ]),
  );
  t.bind(100, A);
  t.bind(200, B);
  t.upsertPod(
    pod('p1', 'web-1', [
      { name: 'nginx', id: A, terminated: true },
      { name: 'side', id: B },
    ]),
  );
  assert.equal(t.resolve(100), undefined);
  assert.equal(t.resolve(200)?.containerName, 'side');
  t.deletePod('p1');
  assert.equal(t.resolve(200), undefined);
  assert.deepEqual(t.bindings(), []);
});

test('a reused cgroup id is rebound to the new container, never attributed to the old one', () => {
  const { t, changes } = table();
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
  t.upsertPod(pod('p2', 'other', [{ name: 'redis', id: B }], { app: 'db' }));
  t.bind(100, A);
  // The kernel reused id 100 for B's cgroup before p1's status said A had ended.
  t.bind(100, B);
  assert.equal(t.resolve(100)?.containerName, 'redis');
  assert.equal(t.resolve(100)?.policy, undefined); // p2 is not selected by any policy
  assert.deepEqual(
    changes.map((c) => c.kind),
    ['bound', 'unbound', 'bound'],
  );
});

test('a pod recreated with the same name but a new uid is not confused with the old one', () => {
  const { t } = table();
  t.upsertPod(pod('old', 'web-0', [{ name: 'nginx', id: A }]));
  t.bind(100, A);
  t.upsertPod(pod('new', 'web-0', [{ name: 'nginx', id: B }]));
  t.bind(200, B);
  t.deletePod('old'); // the delete of the old pod arrives after the new pod
  assert.equal(t.resolve(100), undefined);
  assert.equal(t.resolve(200)?.podUid, 'new');
});

test('relabelling a pod out of the selector, or deleting the policy, stops attribution to it', () => {
  const { t } = table();
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
  t.bind(100, A);
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }], { app: 'api' }));
  assert.equal(t.resolve(100)?.policy, undefined);
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
  assert.equal(t.resolve(100)?.policy?.name, 'web');
  t.deletePolicy('shop', 'web');
  assert.equal(t.resolve(100)?.policy, undefined);
});

test('pods in other namespaces and kube-system are never matched', () => {
  const { t } = table();
  t.upsertPolicy(policy('sys', 'kube-system', {}));
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }], { app: 'web' }, 'other'));
  t.upsertPod(pod('p2', 'dns', [{ name: 'dns', id: B }], { app: 'web' }, 'kube-system'));
  t.bind(1, A);
  t.bind(2, B);
  assert.equal(t.resolve(1)?.policy, undefined);
  assert.equal(t.resolve(2)?.policy, undefined);
});

test('the policy label set by the webhook picks between overlapping policies', () => {
  const { t } = table();
  t.upsertPolicy(policy('aaa', 'shop', {}));
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }], { app: 'web', 'pahlevan.io/policy': 'web' }));
  t.upsertPod(pod('p2', 'web-2', [{ name: 'nginx', id: B }], { app: 'web' }));
  t.bind(1, A);
  t.bind(2, B);
  assert.equal(t.resolve(1)?.policy?.name, 'web');
  assert.equal(t.resolve(2)?.policy?.name, 'aaa');
});

test('a relist drops pods that disappeared while the watch was down', () => {
  const { t } = table();
  t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
  t.upsertPod(pod('p2', 'web-2', [{ name: 'nginx', id: B }]));
  t.bind(1, A);
  t.bind(2, B);
  t.resetPods([pod('p2', 'web-2', [{ name: 'nginx', id: B }])]);
  assert.equal(t.resolve(1), undefined);
  assert.equal(t.resolve(2)?.podName, 'web-2');
});

test('the scanner finds container cgroups by directory inode and syncs bindings', () => {
  const root = mkdtempSync(join(tmpdir(), 'pvt-cgroot-'));
  try {
    const dirA = join(root, 'kubepods.slice', 'kubepods-pod1.slice', `cri-containerd-${A}.scope`);
    const dirB = join(root, 'kubepods', 'besteffort', 'pod2', B);
    mkdirSync(join(dirA, 'init.scope'), { recursive: true });
    mkdirSync(dirB, { recursive: true });
    mkdirSync(join(root, 'system.slice', 'ssh.service'), { recursive: true });
    const scanner = new CgroupScanner(root, join(root, 'proc'));
    const found = scanner.scan();
    assert.deepEqual([...found.keys()].sort(), [A, B]);
    assert.equal(found.get(A)?.cgroupId, statSync(dirA, { bigint: true }).ino.toString());

    const { t } = table();
    t.upsertPod(pod('p1', 'web-1', [{ name: 'nginx', id: A }]));
    syncBindings(t, found);
    assert.equal(t.resolve(found.get(A)!.cgroupId)?.containerName, 'nginx');
    assert.equal(t.resolve(found.get(B)!.cgroupId), undefined); // B runs in no pod of ours

    // The cgroup directory goes away: the binding goes with it.
    rmSync(join(root, 'kubepods.slice'), { recursive: true });
    syncBindings(t, scanner.scan());
    assert.deepEqual(t.bindings(), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a PID is attributed only when its cgroup still has the event cgroup id (PID reuse)', () => {
  const root = mkdtempSync(join(tmpdir(), 'pvt-cgroot-'));
  try {
    const rel = `/kubepods/pod1/${A}`;
    mkdirSync(join(root, rel), { recursive: true });
    mkdirSync(join(root, 'proc', '42'), { recursive: true });
    writeFileSync(join(root, 'proc', '42', 'cgroup'), `0::${rel}\n`);
    const scanner = new CgroupScanner(root, join(root, 'proc'));
    const ino = statSync(join(root, rel), { bigint: true }).ino;
    assert.equal(scanner.containerOfPid(42, ino)?.containerId, A);
    assert.equal(scanner.containerOfPid(42, ino + 1n), undefined); // PID now belongs to another cgroup
    assert.equal(scanner.containerOfPid(43, ino), undefined); // process gone
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
