import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ObservationStore,
  ObservationWriter,
  type ObservationApi,
  type Source,
} from '../../agent/cluster/observations.js';
import { ObservationSpec, type PahlevanNodeObservation } from '../../api/observation.js';

const policy = { namespace: 'shop', name: 'web', uid: 'uid-web' };
const src = (podName: string, containerId: string, containerName = 'nginx'): Source => ({
  policy,
  containerName,
  containerId,
  podName,
  image: 'nginx:1',
});

/** An in-memory API with resourceVersions, 409 on stale writes, and a switch to fail every call. */
class MemoryApi implements ObservationApi {
  objects = new Map<string, PahlevanNodeObservation>();
  rv = 1;
  down = false;
  calls: string[] = [];
  private check(what: string): void {
    this.calls.push(what);
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  }
  async get(namespace: string, name: string) {
    this.check('get');
    const o = this.objects.get(`${namespace}/${name}`);
    return o && structuredClone(o);
  }
  async create(object: PahlevanNodeObservation) {
    this.check('create');
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    if (this.objects.has(key)) throw Object.assign(new Error('AlreadyExists'), { code: 409 });
    const stored = structuredClone(object);
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, stored);
    return structuredClone(stored);
  }
  async replace(object: PahlevanNodeObservation) {
    this.check('replace');
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    const current = this.objects.get(key);
    if (!current) throw Object.assign(new Error('NotFound'), { code: 404 });
    if (current.metadata.resourceVersion !== object.metadata.resourceVersion)
      throw Object.assign(new Error('Conflict'), { code: 409 });
    const stored = structuredClone(object);
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, stored);
    return structuredClone(stored);
  }
  only(): PahlevanNodeObservation {
    assert.equal(this.objects.size, 1);
    return [...this.objects.values()][0]!;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('behaviour accumulates per container name with counts of instances and pods', () => {
  const store = new ObservationStore('node-a');
  assert.ok(store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]));
  assert.ok(store.record(src('web-2', 'c2'), [{ kind: 'syscall', name: 'read' }]));
  // The same instance reporting the same first-seen behaviour again (learner restart) changes nothing.
  assert.ok(!store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]));
  store.record(src('web-1', 'c1'), [
    { kind: 'file', path: '/etc/nginx.conf', write: false },
    { kind: 'file', path: '/var/log/x', write: true },
    { kind: 'exec', path: '/usr/sbin/nginx' },
    { kind: 'port', direction: 'listen', protocol: 'TCP', port: 80 },
  ]);
  store.record(src('web-1', 'c9', 'sidecar'), [{ kind: 'syscall', name: 'write' }]);
  const spec = store.spec('shop/web')!;
  assert.equal(spec.node, 'node-a');
  assert.deepEqual(
    spec.containers.map((c) => c.name),
    ['nginx', 'sidecar'],
  );
  const nginx = spec.containers[0]!;
  assert.deepEqual(nginx.syscalls, { read: { count: 2, pods: 2 } });
  assert.deepEqual(nginx.pods, ['web-1', 'web-2']);
  assert.deepEqual(nginx.images, ['nginx:1']);
  assert.deepEqual(nginx.files['/var/log/x'], { count: 1, pods: 1, write: true });
  assert.deepEqual(nginx.ports, [{ direction: 'listen', protocol: 'TCP', port: 80, count: 1, pods: 1 }]);
  // It is a valid object spec.
  const parsed = ObservationSpec.safeParse(spec);
  assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
});

test('a gone container instance is forgotten by the dedup set; its counts stay', () => {
  const store = new ObservationStore('node-a');
  store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]);
  store.forgetInstance(policy, 'c1');
  assert.deepEqual(store.spec('shop/web')!.containers[0]!.syscalls.read, { count: 1, pods: 1 });
  // A new instance with the same ID would count again (IDs are never reused by runtimes; this shows the set is gone).
  assert.ok(store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]));
  assert.deepEqual(store.spec('shop/web')!.containers[0]!.syscalls.read, { count: 2, pods: 1 });
});

test('the writer creates once, then writes only when something changed', async () => {
  const api = new MemoryApi();
  const store = new ObservationStore('node-a');
  const writer = new ObservationWriter(store, api, { debounceMs: 10 });
  writer.start();
  store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]);
  store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'write' }]); // coalesced with the first
  await until(() => api.objects.size === 1 && store.dirty().length === 0, 'first write');
  const obj = api.only();
  assert.equal(obj.metadata.name, 'web.node-a');
  assert.deepEqual(obj.metadata.labels, { 'pahlevan.io/policy': 'web', 'pahlevan.io/node': 'node-a' });
  assert.deepEqual(Object.keys(obj.spec.containers[0]!.syscalls), ['read', 'write']);
  assert.deepEqual(
    api.calls.filter((c) => c !== 'get'),
    ['create'],
  );
  store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]); // nothing new
  await sleep(40);
  assert.deepEqual(
    api.calls.filter((c) => c !== 'get'),
    ['create'],
  );
  store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'close' }]);
  await until(() => api.calls.includes('replace') && store.dirty().length === 0, 'second write');
  assert.ok('close' in api.only().spec.containers[0]!.syscalls);
  writer.stop();
});

test('API errors back off exponentially and nothing learned during the outage is lost', async () => {
  const api = new MemoryApi();
  const store = new ObservationStore('node-a');
  const retries: number[] = [];
  const writer = new ObservationWriter(store, api, {
    debounceMs: 5,
    initialBackoffMs: 10,
    maxBackoffMs: 80,
    onError: (_e, _n, ms) => retries.push(ms),
  });
  writer.start();
  api.down = true;
  for (let i = 0; i < 20; i++) {
    store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: `sys${i}` }]);
    await sleep(5);
  }
  await until(() => retries.length >= 5, 'five retries');
  const callsWhileDown = api.calls.length;
  // Back-off grows (with ±20% jitter) and is capped; new events during the outage do not cause extra calls.
  assert.ok(retries[1]! > retries[0]! * 1.2, `retries ${retries}`);
  assert.ok(Math.max(...retries) <= 80 * 1.2, `retries ${retries}`);
  assert.ok(callsWhileDown <= retries.length + 1, `calls ${callsWhileDown} for ${retries.length} retries`);
  api.down = false;
  await until(() => store.dirty().length === 0, 'catch-up write');
  assert.equal(Object.keys(api.only().spec.containers[0]!.syscalls).length, 20);
  assert.equal(writer.consecutiveFailures, 0);
  writer.stop();
});

test('an agent restart with the API down keeps the pending state and writes it later', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvt-agentstate-'));
  try {
    const api = new MemoryApi();
    api.down = true;
    const first = new ObservationStore('node-a', dir);
    const w1 = new ObservationWriter(first, api, { debounceMs: 1, initialBackoffMs: 1000 });
    w1.start();
    first.record(src('web-1', 'c1'), [{ kind: 'exec', path: '/bin/sh' }]);
    await until(() => w1.consecutiveFailures > 0, 'a failed write');
    w1.stop(); // the agent dies

    const second = new ObservationStore('node-a', dir);
    assert.deepEqual(second.dirty().length, 1, 'pending work survives the restart');
    // Re-reporting after the restart does not double counts.
    assert.ok(!second.record(src('web-1', 'c1'), [{ kind: 'exec', path: '/bin/sh' }]));
    api.down = false;
    const w2 = new ObservationWriter(second, api, { debounceMs: 1 });
    w2.start();
    await until(() => second.dirty().length === 0, 'write after restart');
    assert.deepEqual(api.only().spec.containers[0]!.execs, { '/bin/sh': { count: 1, pods: 1 } });
    w2.stop();

    // A third run with nothing new: the object on the server already matches, so no write at all.
    const third = new ObservationStore('node-a', dir);
    const before = api.calls.filter((c) => c !== 'get').length;
    const w3 = new ObservationWriter(third, api, { debounceMs: 1 });
    third.setLayers({ active: [], missing: [] });
    w3.start();
    await sleep(30);
    assert.equal(api.calls.filter((c) => c !== 'get').length, before);
    w3.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a corrupt state file is set aside, not trusted and not lost', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvt-agentstate-'));
  try {
    writeFileSync(join(dir, 'observations.json'), '{"formatVersion":1,"node":"node-a","pol');
    const store = new ObservationStore('node-a', dir);
    assert.deepEqual(store.policyKeys(), []);
    assert.ok(readdirSync(dir).some((f) => f.startsWith('observations.json.corrupt-')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a conflicting write re-reads and retries; acks, layers and violations are written', async () => {
  const api = new MemoryApi();
  const store = new ObservationStore('node-a');
  const writer = new ObservationWriter(store, api, { debounceMs: 1 });
  writer.start();
  store.record(src('web-1', 'c1'), [{ kind: 'syscall', name: 'read' }]);
  await until(() => store.dirty().length === 0, 'first write');
  // Someone else touched the object (e.g. a label added by an admin): our cached resourceVersion is stale.
  const obj = api.only();
  obj.metadata.resourceVersion = String(++api.rv);
  store.setInstalled(policy, [{ hash: 'ab'.repeat(32), profileName: 'web.nginx.abababababababab' }]);
  store.setLayers({ active: ['syscalls', 'network'], missing: [{ layer: 'files', reason: 'no BPF-LSM' }] });
  store.recordViolation(src('web-1', 'c1'), 'syscalls', 'ptrace', 3);
  await until(() => store.dirty().length === 0, 'write after conflict');
  const spec = api.only().spec;
  assert.equal(spec.installed[0]!.hash, 'ab'.repeat(32));
  assert.deepEqual(spec.layers.active, ['syscalls', 'network']);
  assert.equal(spec.violations.total, 3);
  assert.deepEqual(spec.violations.denied[0], {
    container: 'nginx',
    layer: 'syscalls',
    what: 'ptrace',
    count: 3,
    lastAt: spec.violations.denied[0]!.lastAt,
  });
  writer.stop();
});
