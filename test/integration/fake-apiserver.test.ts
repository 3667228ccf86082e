// The stand-in API server, exercised only through the real @kubernetes/client-node: if these semantics drift
// from kube-apiserver's, every test built on it lies, so each case here is a documented API behaviour.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  Watch,
  makeInformer,
  setHeaderOptions,
  type KubeConfig,
  type V1ConfigMap,
} from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { apiErrorOf, waitFor } from '../helpers/kube.js';

const G = 'pahlevan.io';
const V = 'v1alpha1';
const P = 'pahlevanpolicies';

let api: FakeApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;

before(async () => {
  api = await FakeApiServer.start({ bookmarkIntervalMs: 100, historyLimit: 50 });
  kc = api.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});
after(async () => {
  await api.stop();
});

function policy(name: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: `${G}/${V}`,
    kind: 'PahlevanPolicy',
    metadata: { name },
    spec: { selector: { matchLabels: { app: name } } },
    ...extra,
  };
}

type Obj = { metadata: { name: string; resourceVersion: string; generation?: number }; [k: string]: unknown };

test('create, get, list; uid, creationTimestamp, resourceVersion and generateName are set by the server', async () => {
  await core.createNamespace({ body: { metadata: { name: 'ns-a' } } });
  const cm = await core.createNamespacedConfigMap({
    namespace: 'ns-a',
    body: { metadata: { generateName: 'cfg-' }, data: { a: '1' } },
  });
  assert.match(cm.metadata!.name!, /^cfg-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  assert.match(cm.metadata!.uid!, /^[0-9a-f-]{36}$/);
  assert.ok(cm.metadata!.creationTimestamp instanceof Date);
  assert.match(cm.metadata!.resourceVersion!, /^\d+$/);
  const got = await core.readNamespacedConfigMap({ name: cm.metadata!.name!, namespace: 'ns-a' });
  assert.deepEqual(got.data, { a: '1' });
  const list = await core.listNamespacedConfigMap({ namespace: 'ns-a' });
  assert.equal(list.items.length, 1);
  assert.ok(Number(list.metadata!.resourceVersion) >= Number(cm.metadata!.resourceVersion));
});

test('errors are Status objects: 404 NotFound, 409 AlreadyExists, 404 for a missing namespace, 422 Invalid', async () => {
  let err = await apiErrorOf(core.readNamespacedConfigMap({ name: 'nope', namespace: 'default' }));
  assert.equal(err.code, 404);
  assert.equal(err.status.reason, 'NotFound');
  assert.equal(err.status.kind, 'Status');
  assert.equal(err.status.details?.name, 'nope');

  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dup' } } });
  err = await apiErrorOf(
    core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dup' } } }),
  );
  assert.equal(err.code, 409);
  assert.equal(err.status.reason, 'AlreadyExists');

  err = await apiErrorOf(
    core.createNamespacedConfigMap({ namespace: 'missing', body: { metadata: { name: 'x' } } }),
  );
  assert.equal(err.code, 404);
  assert.match(err.status.message, /namespaces "missing" not found/);

  err = await apiErrorOf(
    core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'Bad_Name' } } }),
  );
  assert.equal(err.code, 422);
  assert.equal(err.status.reason, 'Invalid');
});

test('custom resources: status subresource, generation only on spec changes, optimistic concurrency', async () => {
  const created = (await custom.createNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    body: policy('web', { status: { phase: 'Enforcing' } }),
  })) as Obj;
  assert.equal(created.metadata.generation, 1);
  assert.equal(
    created.status,
    undefined,
    'status is ignored on create when the status subresource is enabled',
  );

  // Status write: only status changes, generation stays, spec changes in the body are ignored.
  const withStatus = (await custom.replaceNamespacedCustomObjectStatus({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    name: 'web',
    body: {
      ...created,
      spec: { selector: { matchLabels: { app: 'other' } } },
      status: { phase: 'Learning' },
    },
  })) as Obj & { spec: { selector: { matchLabels: Record<string, string> } }; status: { phase: string } };
  assert.equal(withStatus.status.phase, 'Learning');
  assert.deepEqual(withStatus.spec.selector.matchLabels, { app: 'web' });
  assert.equal(withStatus.metadata.generation, 1);
  assert.notEqual(withStatus.metadata.resourceVersion, created.metadata.resourceVersion);

  // Main resource write: status in the body is ignored, spec change bumps generation.
  const updated = (await custom.replaceNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    name: 'web',
    body: {
      ...withStatus,
      spec: { selector: { matchLabels: { app: 'web2' } } },
      status: { phase: 'Failed' },
    },
  })) as Obj & { status: { phase: string } };
  assert.equal(updated.metadata.generation, 2);
  assert.equal(updated.status.phase, 'Learning');

  // Label-only change: metadata, no generation bump.
  const relabelled = (await custom.replaceNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    name: 'web',
    body: { ...updated, metadata: { ...updated.metadata, labels: { team: 'a' } } },
  })) as Obj;
  assert.equal(relabelled.metadata.generation, 2);

  // A stale resourceVersion is a 409 Conflict; a missing one is 422 for custom resources.
  let err = await apiErrorOf(
    custom.replaceNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'default',
      plural: P,
      name: 'web',
      body: updated,
    }),
  );
  assert.equal(err.code, 409);
  assert.equal(err.status.reason, 'Conflict');
  const { resourceVersion: _rv, ...metaNoRv } = relabelled.metadata;
  err = await apiErrorOf(
    custom.replaceNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'default',
      plural: P,
      name: 'web',
      body: { ...relabelled, metadata: metaNoRv },
    }),
  );
  assert.equal(err.code, 422);

  // A no-op write does not produce a new resourceVersion.
  const same = (await custom.replaceNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    name: 'web',
    body: relabelled,
  })) as Obj;
  assert.equal(same.metadata.resourceVersion, relabelled.metadata.resourceVersion);
});

test('patch types: json-patch (default), merge-patch, strategic on core only, resourceVersion precondition', async () => {
  await custom.createNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    body: policy('pt'),
  });
  const jp = (await custom.patchNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'default',
    plural: P,
    name: 'pt',
    body: [{ op: 'add', path: '/spec/learning', value: { duration: '1m' } }],
  })) as Obj & { spec: { learning: { duration: string } } };
  assert.equal(jp.spec.learning.duration, '1m');
  assert.equal(jp.metadata.generation, 2);

  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const mp = (await custom.patchNamespacedCustomObjectStatus(
    {
      group: G,
      version: V,
      namespace: 'default',
      plural: P,
      name: 'pt',
      body: { status: { phase: 'Learning' }, spec: null },
    },
    merge,
  )) as Obj & { status: { phase: string }; spec: unknown };
  assert.equal(mp.status.phase, 'Learning');
  assert.ok(mp.spec, 'a status patch cannot touch spec');
  assert.equal(mp.metadata.generation, 2);

  let err = await apiErrorOf(
    custom.patchNamespacedCustomObject(
      {
        group: G,
        version: V,
        namespace: 'default',
        plural: P,
        name: 'pt',
        body: { metadata: { resourceVersion: '1' }, spec: { learning: { duration: '2m' } } },
      },
      merge,
    ),
  );
  assert.equal(err.code, 409);

  err = await apiErrorOf(
    custom.patchNamespacedCustomObject(
      { group: G, version: V, namespace: 'default', plural: P, name: 'pt', body: { spec: {} } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    ),
  );
  assert.equal(err.code, 415);

  err = await apiErrorOf(
    custom.patchNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'default',
      plural: P,
      name: 'pt',
      body: [{ op: 'test', path: '/spec/learning/duration', value: '9h' }],
    }),
  );
  assert.equal(err.code, 422);

  await core.createNamespacedConfigMap({
    namespace: 'default',
    body: { metadata: { name: 'smp' }, data: { a: '1' } },
  });
  const cm = await core.patchNamespacedConfigMap(
    { name: 'smp', namespace: 'default', body: { data: { b: '2' } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  );
  assert.deepEqual(cm.data, { a: '1', b: '2' });

  err = await apiErrorOf(
    custom.patchNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'default',
      plural: P,
      name: 'absent',
      body: [],
    }),
  );
  assert.equal(err.code, 404);
});

test('server-side apply: creates, needs a fieldManager, records managers, conflicts unless forced', async () => {
  const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
  const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied' }, data: { k: 'one' } };
  let err = await apiErrorOf(
    core.patchNamespacedConfigMap({ name: 'applied', namespace: 'default', body }, ssa),
  );
  assert.equal(err.code, 400, 'apply without fieldManager');
  const created = await core.patchNamespacedConfigMap(
    { name: 'applied', namespace: 'default', body, fieldManager: 'alice' },
    ssa,
  );
  assert.deepEqual(created.data, { k: 'one' });
  assert.equal(created.metadata!.managedFields![0]!.manager, 'alice');
  err = await apiErrorOf(
    core.patchNamespacedConfigMap(
      { name: 'applied', namespace: 'default', body: { ...body, data: { k: 'two' } }, fieldManager: 'bob' },
      ssa,
    ),
  );
  assert.equal(err.code, 409);
  assert.equal(err.status.reason, 'Conflict');
  const forced = await core.patchNamespacedConfigMap(
    {
      name: 'applied',
      namespace: 'default',
      body: { ...body, data: { k: 'two' } },
      fieldManager: 'bob',
      force: true,
    },
    ssa,
  );
  assert.deepEqual(forced.data, { k: 'two' });
  assert.deepEqual(forced.metadata!.managedFields!.map((m) => m.manager).sort(), ['alice', 'bob']);
});

test('field and label selectors', async () => {
  await core.createNamespace({ body: { metadata: { name: 'sel' } } });
  const pods: [string, string, Record<string, string>][] = [
    ['p1', 'node-a', { app: 'web', tier: 'front' }],
    ['p2', 'node-b', { app: 'web', tier: 'back' }],
    ['p3', 'node-a', { app: 'db' }],
  ];
  for (const [name, nodeName, labels] of pods)
    await core.createNamespacedPod({
      namespace: 'sel',
      body: { metadata: { name, labels }, spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] } },
    });
  const names = async (labelSelector?: string, fieldSelector?: string) =>
    (await core.listNamespacedPod({ namespace: 'sel', labelSelector, fieldSelector })).items
      .map((p) => p.metadata!.name)
      .sort();
  assert.deepEqual(await names(undefined, 'spec.nodeName=node-a'), ['p1', 'p3']);
  assert.deepEqual(await names(undefined, 'spec.nodeName!=node-a'), ['p2']);
  assert.deepEqual(await names(undefined, 'metadata.name=p2,spec.nodeName=node-b'), ['p2']);
  assert.deepEqual(await names('app=web'), ['p1', 'p2']);
  assert.deepEqual(await names('app==web,tier!=front'), ['p2']);
  assert.deepEqual(await names('tier in (front, back)'), ['p1', 'p2']);
  assert.deepEqual(await names('app notin (web)'), ['p3']);
  assert.deepEqual(await names('tier'), ['p1', 'p2']);
  assert.deepEqual(await names('!tier'), ['p3']);
  // Pagination: limit + continue walk the whole list.
  const page1 = await core.listNamespacedPod({ namespace: 'sel', limit: 2 });
  assert.equal(page1.items.length, 2);
  assert.ok(page1.metadata!._continue);
  const page2 = await core.listNamespacedPod({
    namespace: 'sel',
    limit: 2,
    _continue: page1.metadata!._continue,
  });
  assert.deepEqual(
    [...page1.items, ...page2.items].map((p) => p.metadata!.name),
    ['p1', 'p2', 'p3'],
  );
  assert.equal(page2.metadata!._continue, undefined);
  const all = (await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-b' })).items;
  assert.deepEqual(
    all.map((p) => p.metadata!.name),
    ['p2'],
  );
  let err = await apiErrorOf(core.listNamespacedPod({ namespace: 'sel', fieldSelector: 'spec.hostname=x' }));
  assert.equal(err.code, 400);
  err = await apiErrorOf(core.listNamespacedPod({ namespace: 'sel', labelSelector: 'a in b' }));
  assert.equal(err.code, 400);
});

test('watch from a resourceVersion: ordered ADDED/MODIFIED/DELETED, selector exits as DELETED, bookmarks', async () => {
  await core.createNamespace({ body: { metadata: { name: 'w' } } });
  const list = await core.listNamespacedConfigMap({ namespace: 'w' });
  const seen: string[] = [];
  let bookmarkRv = '';
  const req = await new Watch(kc).watch(
    '/api/v1/namespaces/w/configmaps',
    { resourceVersion: list.metadata!.resourceVersion, labelSelector: 'keep=yes', allowWatchBookmarks: true },
    (type: string, obj: V1ConfigMap) => {
      if (type === 'BOOKMARK') bookmarkRv = obj.metadata!.resourceVersion!;
      else seen.push(`${type} ${obj.metadata!.name} ${JSON.stringify(obj.data ?? {})}`);
    },
    () => {},
  );
  try {
    await core.createNamespacedConfigMap({
      namespace: 'w',
      body: { metadata: { name: 'a', labels: { keep: 'yes' } } },
    });
    await core.createNamespacedConfigMap({ namespace: 'w', body: { metadata: { name: 'hidden' } } });
    await core.patchNamespacedConfigMap(
      { name: 'a', namespace: 'w', body: { data: { x: '1' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await core.patchNamespacedConfigMap(
      { name: 'a', namespace: 'w', body: { metadata: { labels: { keep: 'no' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const lastRv = Number(api.resourceVersion);
    // A bookmark tells the client it is caught up to a resourceVersion even though it saw no event for it.
    await waitFor(() => seen.length === 3 && Number(bookmarkRv) >= lastRv, 'watch events and a bookmark');
    assert.deepEqual(seen, ['ADDED a {}', 'MODIFIED a {"x":"1"}', 'DELETED a {"x":"1"}']);
  } finally {
    req.abort();
  }
});

test('watch from a compacted resourceVersion gets a 410 Gone ERROR event and the stream ends', async () => {
  const list = await core.listNamespacedConfigMap({ namespace: 'default' });
  for (let i = 0; i < 60; i++)
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: `fill-${i}` } } });
  const events: { type: string; code?: number; reason?: string }[] = [];
  let ended = false;
  await new Watch(kc).watch(
    '/api/v1/namespaces/default/configmaps',
    { resourceVersion: list.metadata!.resourceVersion },
    (type: string, obj: { code?: number; reason?: string }) =>
      events.push({ type, code: obj.code, reason: obj.reason }),
    () => {
      ended = true;
    },
  );
  await waitFor(() => ended, 'the watch to end');
  assert.deepEqual(events, [{ type: 'ERROR', code: 410, reason: 'Expired' }]);
});

test('an informer lists, watches, re-watches after the server closes it and relists after 410', async () => {
  await core.createNamespace({ body: { metadata: { name: 'inf' } } });
  await custom.createNamespacedCustomObject({
    group: G,
    version: V,
    namespace: 'inf',
    plural: P,
    body: policy('one'),
  });
  const informer = makeInformer<Obj>(
    kc,
    `/apis/${G}/${V}/namespaces/inf/${P}`,
    () => custom.listNamespacedCustomObject({ group: G, version: V, namespace: 'inf', plural: P }) as never,
  );
  const names = () =>
    informer
      .list('inf')
      .map((o) => o.metadata.name)
      .sort();
  const errors: unknown[] = [];
  informer.on('error', (e) => errors.push(e));
  await informer.start();
  try {
    assert.deepEqual(names(), ['one']);
    await custom.createNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'inf',
      plural: P,
      body: policy('two'),
    });
    await waitFor(() => names().length === 2, 'the informer to see two');
    api.closeWatches(); // server-side close: the informer re-watches from its last resourceVersion
    await custom.createNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'inf',
      plural: P,
      body: policy('three'),
    });
    await waitFor(() => names().length === 3, 'the informer to see three after a re-watch');
    // Other writes move the resourceVersion past the informer's, then history is compacted.
    await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'unrelated' } } });
    api.compact();
    api.closeWatches(); // resume is now too old: 410, the informer relists
    await custom.deleteNamespacedCustomObject({
      group: G,
      version: V,
      namespace: 'inf',
      plural: P,
      name: 'one',
    });
    await waitFor(() => names().join() === 'three,two', 'the informer to relist after 410');
    const lists = api.requests.filter(
      (r) => r.startsWith(`GET /apis/${G}/${V}/namespaces/inf/${P}`) && !r.includes('watch=true'),
    );
    assert.equal(lists.length, 2, 'one list at start, one after the 410');
    assert.deepEqual(errors, []);
  } finally {
    await informer.stop();
  }
});

test('leases: create, renew with the current resourceVersion, a stale one conflicts', async () => {
  const coord = kc.makeApiClient(CoordinationV1Api);
  const lease = await coord.createNamespacedLease({
    namespace: 'default',
    body: {
      metadata: { name: 'leader' },
      spec: { holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: new Date() },
    },
  });
  const renewed = await coord.replaceNamespacedLease({
    name: 'leader',
    namespace: 'default',
    body: { ...lease, spec: { ...lease.spec, renewTime: new Date() } },
  });
  assert.notEqual(renewed.metadata!.resourceVersion, lease.metadata!.resourceVersion);
  const err = await apiErrorOf(
    coord.replaceNamespacedLease({
      name: 'leader',
      namespace: 'default',
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b' } },
    }),
  );
  assert.equal(err.code, 409);
  const got = await coord.readNamespacedLease({ name: 'leader', namespace: 'default' });
  assert.equal(got.spec!.holderIdentity, 'a');
});

test('deleting a namespace deletes the objects in it', async () => {
  await core.createNamespace({ body: { metadata: { name: 'gone' } } });
  await core.createNamespacedConfigMap({ namespace: 'gone', body: { metadata: { name: 'c' } } });
  await core.deleteNamespace({ name: 'gone' });
  assert.equal(api.getObject('', 'configmaps', 'gone', 'c'), undefined);
  const err = await apiErrorOf(core.readNamespacedConfigMap({ name: 'c', namespace: 'gone' }));
  assert.equal(err.code, 404);
});

test('while unavailable every request is 503; it recovers', async () => {
  api.setAvailable(false);
  try {
    const err = await apiErrorOf(core.listNamespace());
    assert.equal(err.code, 503);
  } finally {
    api.setAvailable(true);
  }
  assert.ok((await core.listNamespace()).items.length > 0);
});

test('a created CustomResourceDefinition is served, cluster-scoped custom resources included', async () => {
  const { ApiextensionsV1Api } = await import('@kubernetes/client-node');
  await kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({
    body: {
      metadata: { name: 'widgets.example.com' },
      spec: {
        group: 'example.com',
        scope: 'Cluster',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } },
          },
        ],
      },
    },
  });
  const created = (await custom.createClusterCustomObject({
    group: 'example.com',
    version: 'v1',
    plural: 'widgets',
    body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 1 } },
  })) as Obj & { metadata: { namespace?: string } };
  assert.equal(created.metadata.namespace, undefined);
  const updated = (await custom.patchClusterCustomObject(
    { group: 'example.com', version: 'v1', plural: 'widgets', name: 'w1', body: { spec: { size: 2 } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )) as Obj;
  assert.equal(
    updated.metadata.generation,
    2,
    'without a status subresource every non-metadata change counts',
  );
  const err = await apiErrorOf(
    custom.getClusterCustomObjectStatus({
      group: 'example.com',
      version: 'v1',
      plural: 'widgets',
      name: 'w1',
    }),
  );
  assert.equal(err.code, 404, 'no status subresource declared');
  const list = (await custom.listClusterCustomObject({
    group: 'example.com',
    version: 'v1',
    plural: 'widgets',
  })) as {
    items: Obj[];
  };
  assert.deepEqual(
    list.items.map((i) => i.metadata.name),
    ['w1'],
  );
});

test('garbage collection: dependents named in ownerReferences go with their owner', async () => {
  const owner = await core.createNamespacedConfigMap({
    namespace: 'default',
    body: { metadata: { name: 'owner' } },
  });
  await core.createNamespacedConfigMap({
    namespace: 'default',
    body: {
      metadata: {
        name: 'dependent',
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! }],
      },
    },
  });
  await core.deleteNamespacedConfigMap({ name: 'owner', namespace: 'default' });
  const err = await apiErrorOf(core.readNamespacedConfigMap({ name: 'dependent', namespace: 'default' }));
  assert.equal(err.code, 404);
});
