import { test } from 'node:test';
import assert from 'node:assert/strict';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { handleReview } from '../../webhook/handler.js';
import type { AdmissionReviewReply } from '../../webhook/admission.js';
import {
  mutatePodRequest,
  decideLearningSeccomp,
  decideSeccomp,
  profileSetHash,
} from '../../webhook/mutate.js';
import type { PahlevanPolicy } from '../../api/policy.js';
import {
  ANNOTATION_IMAGES,
  LABEL_POLICY,
  LABEL_PROFILE_HASH,
  LEARNING_PROFILE_PATH,
} from '../../api/names.js';
import {
  PATH_DEBUG,
  PATH_INIT,
  PATH_WEB,
  PROFILE_HASH_INIT,
  PROFILE_HASH_WEB,
  deepFreeze,
  policy,
  profileEntry,
  review,
  webPod,
} from '../helpers/admission-fixtures.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function mutate(object: unknown, policies: PahlevanPolicy[], request: Json = {}, apiVersion?: string) {
  const handled = handleReview('mutate-pods', review(object, request, apiVersion), policies, {
    excludedNamespaces: ['pahlevan-system'],
  });
  assert.equal(handled.statusCode, 200);
  const reply = handled.body as AdmissionReviewReply;
  const patch: Operation[] = reply.response.patch
    ? JSON.parse(Buffer.from(reply.response.patch, 'base64').toString('utf8'))
    : [];
  const after = fastJsonPatch.applyPatch(structuredClone(object), patch, true, false).newDocument as Json;
  return { reply, patch, after, handled };
}

function seccompOf(pod: Json, list: string, name: string) {
  return pod.spec[list].find((c: Json) => c.name === name)?.securityContext?.seccompProfile;
}

test('CREATE of a pod with null labels gets the policy labels, image annotation and profiles on init + regular containers', () => {
  const pod = webPod({ labels: null, annotations: null });
  // null labels never match a selector with matchLabels: use an expression-free empty selector
  const everyPod = policy({ spec: { selector: {} } });
  const { reply, patch, after } = mutate(pod, [everyPod]);
  assert.equal(reply.apiVersion, 'admission.k8s.io/v1');
  assert.equal(reply.kind, 'AdmissionReview');
  assert.equal(reply.response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
  assert.equal(reply.response.allowed, true);
  assert.equal(reply.response.patchType, 'JSONPatch');
  assert.ok(patch.length > 0);
  assert.equal(after.metadata.labels[LABEL_POLICY], 'web');
  assert.equal(
    after.metadata.labels[LABEL_PROFILE_HASH],
    profileSetHash([
      { container: 'migrate', hash: PROFILE_HASH_INIT },
      { container: 'web', hash: PROFILE_HASH_WEB },
    ]),
  );
  assert.deepEqual(JSON.parse(after.metadata.annotations[ANNOTATION_IMAGES]), {
    migrate: 'registry.example.com/shop/migrate:1.4.2',
    web: 'registry.example.com/shop/web:1.4.2',
    'metrics-sidecar': 'registry.example.com/tools/exporter:0.9',
  });
  assert.deepEqual(seccompOf(after, 'initContainers', 'migrate'), {
    type: 'Localhost',
    localhostProfile: PATH_INIT,
  });
  assert.deepEqual(seccompOf(after, 'containers', 'web'), { type: 'Localhost', localhostProfile: PATH_WEB });
  // no published profile for the sidecar: it learns, under the learning profile
  assert.deepEqual(seccompOf(after, 'containers', 'metrics-sidecar'), {
    type: 'Localhost',
    localhostProfile: LEARNING_PROFILE_PATH,
  });
  // nothing else changed
  const { metadata: _m1, spec: s1, ...rest1 } = after;
  const { metadata: _m2, spec: s2, ...rest2 } = pod as Json;
  assert.deepEqual(rest1, rest2);
  assert.deepEqual(s1.volumes, s2.volumes);
  assert.deepEqual(s1.tolerations, s2.tolerations);
});

test('a second review of the mutated pod yields no patch (idempotent)', () => {
  const first = mutate(webPod(), [policy()]);
  const second = mutate(first.after, [policy()]);
  assert.deepEqual(second.patch, []);
  assert.equal(second.reply.response.patch, undefined);
  assert.equal(second.handled.outcome, 'unchanged');
});

test('label and annotation keys containing / and ~ are escaped in the patch and preserved', () => {
  const pod = webPod({
    labels: { app: 'web', 'example.com/tier~x': 'front' },
    annotations: { 'example.com/owner~team': 'payments', 'a/b': 'c' },
  });
  const { patch, after } = mutate(pod, [policy()]);
  const paths = patch.map((op) => op.path);
  assert.ok(paths.includes('/metadata/labels/pahlevan.io~1policy'), paths.join(' '));
  assert.ok(paths.includes('/metadata/annotations/pahlevan.io~1images'), paths.join(' '));
  assert.equal(after.metadata.labels['example.com/tier~x'], 'front');
  assert.equal(after.metadata.annotations['example.com/owner~team'], 'payments');
  assert.equal(after.metadata.annotations['a/b'], 'c');
});

test('an ephemeral container added through pods/ephemeralcontainers gets its profile; nothing else is touched', () => {
  const base = mutate(webPod(), [policy()]).after;
  const old = structuredClone(base);
  old.spec.ephemeralContainers = [{ name: 'debugger-old', image: 'busybox', targetContainerName: 'web' }];
  const next = structuredClone(old);
  next.spec.ephemeralContainers.push({ name: 'debugger', image: 'busybox:1.36', targetContainerName: 'web' });
  const { patch, after } = mutate(next, [policy()], {
    operation: 'UPDATE',
    subResource: 'ephemeralcontainers',
    oldObject: old,
  });
  assert.deepEqual(patch, [
    {
      op: 'add',
      path: '/spec/ephemeralContainers/1/securityContext',
      value: { seccompProfile: { type: 'Localhost', localhostProfile: PATH_DEBUG } },
    },
  ]);
  assert.equal(seccompOf(after, 'ephemeralContainers', 'debugger-old'), undefined);
});

test('an ephemeralcontainers UPDATE without a new container gives no patch', () => {
  const pod = webPod({ spec: { ephemeralContainers: [{ name: 'debugger', image: 'busybox' }] } });
  const { patch } = mutate(pod, [policy()], {
    operation: 'UPDATE',
    subResource: 'ephemeralcontainers',
    oldObject: pod,
  });
  assert.deepEqual(patch, []);
});

test('DELETE, plain UPDATE, CONNECT and status updates are allowed without a patch', () => {
  for (const request of [
    { operation: 'DELETE', object: null, oldObject: webPod() },
    { operation: 'UPDATE', oldObject: webPod() },
    { operation: 'UPDATE', subResource: 'status', oldObject: webPod() },
    { operation: 'CONNECT', subResource: 'exec', kind: { group: '', version: 'v1', kind: 'PodExecOptions' } },
  ]) {
    const { reply, patch } = mutate(webPod(), [policy()], request);
    assert.equal(reply.response.allowed, true, JSON.stringify(request));
    assert.deepEqual(patch, [], JSON.stringify(request));
  }
});

test('mirror pods and Windows pods are skipped', () => {
  const mirror = webPod({ annotations: { 'kubernetes.io/config.mirror': 'abc123' } });
  assert.deepEqual(mutate(mirror, [policy()]).patch, []);
  const windows = webPod({ spec: { os: { name: 'windows' } } });
  assert.deepEqual(mutate(windows, [policy()]).patch, []);
  const windowsBySelector = webPod({ spec: { nodeSelector: { 'kubernetes.io/os': 'windows' } } });
  assert.deepEqual(mutate(windowsBySelector, [policy()]).patch, []);
  const hostProcess = webPod({ spec: { securityContext: { windowsOptions: { hostProcess: true } } } });
  assert.deepEqual(mutate(hostProcess, [policy()]).patch, []);
});

test('the webhook namespace and kube-system are never matched', () => {
  for (const ns of ['kube-system', 'pahlevan-system']) {
    const p = policy();
    const inNs = { ...p, metadata: { ...p.metadata, namespace: ns } };
    const pod = webPod();
    (pod.metadata as Json).namespace = ns;
    const result = mutate(pod, [inNs], { namespace: ns });
    assert.deepEqual(result.patch, [], ns);
    assert.equal(result.handled.outcome, 'skipped');
  }
});

test('pods no policy selects, and policies of other namespaces, give no patch', () => {
  assert.deepEqual(mutate(webPod({ labels: { app: 'api' } }), [policy()]).patch, []);
  const other = policy();
  other.metadata.namespace = 'billing';
  assert.deepEqual(mutate(webPod(), [other]).patch, []);
});

test('container-level Unconfined is replaced; a user Localhost profile is kept', () => {
  const pod = webPod();
  const spec = pod.spec as Json;
  spec.containers[0].securityContext = { runAsNonRoot: true, seccompProfile: { type: 'Unconfined' } };
  spec.initContainers[0].securityContext = {
    seccompProfile: { type: 'Localhost', localhostProfile: 'mine/strict.json' },
  };
  const { after } = mutate(pod, [policy()]);
  assert.deepEqual(after.spec.containers[0].securityContext, {
    runAsNonRoot: true,
    seccompProfile: { type: 'Localhost', localhostProfile: PATH_WEB },
  });
  assert.deepEqual(seccompOf(after, 'initContainers', 'migrate'), {
    type: 'Localhost',
    localhostProfile: 'mine/strict.json',
  });
  // only the attached profile counts in the hash label
  assert.equal(
    after.metadata.labels[LABEL_PROFILE_HASH],
    profileSetHash([{ container: 'web', hash: PROFILE_HASH_WEB }]),
  );
});

test('an older Pahlevan profile on a container is replaced by the current one', () => {
  const pod = webPod();
  (pod.spec as Json).containers[0].securityContext = {
    seccompProfile: { type: 'Localhost', localhostProfile: 'pahlevan/shop/web/web-0000000000000000.json' },
  };
  assert.deepEqual(seccompOf(mutate(pod, [policy()]).after, 'containers', 'web'), {
    type: 'Localhost',
    localhostProfile: PATH_WEB,
  });
});

test('RuntimeDefault is kept unless the learned profile is known to be within it', () => {
  const pod = webPod({ spec: { securityContext: { seccompProfile: { type: 'RuntimeDefault' } } } });
  const kept = mutate(pod, [policy()]).after;
  assert.equal(seccompOf(kept, 'containers', 'web'), undefined);
  assert.equal(kept.metadata.labels[LABEL_PROFILE_HASH], undefined);
  assert.equal(kept.metadata.labels[LABEL_POLICY], 'web');

  const within = policy({
    status: { profiles: [profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, { withinRuntimeDefault: true })] },
  });
  const replaced = mutate(pod, [within]).after;
  assert.deepEqual(seccompOf(replaced, 'containers', 'web'), {
    type: 'Localhost',
    localhostProfile: PATH_WEB,
  });
  // the pod-level RuntimeDefault stays for the containers that got nothing
  assert.deepEqual(replaced.spec.securityContext, { seccompProfile: { type: 'RuntimeDefault' } });
});

test('a pod-level Localhost profile is respected; a pod-level Unconfined is overridden per container', () => {
  const userPod = webPod({
    spec: { securityContext: { seccompProfile: { type: 'Localhost', localhostProfile: 'team/pod.json' } } },
  });
  const kept = mutate(userPod, [policy()]).after;
  assert.equal(seccompOf(kept, 'containers', 'web'), undefined);
  assert.equal(seccompOf(kept, 'initContainers', 'migrate'), undefined);

  const unconfined = webPod({ spec: { securityContext: { seccompProfile: { type: 'Unconfined' } } } });
  const set = mutate(unconfined, [policy()]).after;
  assert.deepEqual(seccompOf(set, 'containers', 'web'), { type: 'Localhost', localhostProfile: PATH_WEB });
  assert.deepEqual(set.spec.securityContext, { seccompProfile: { type: 'Unconfined' } });
});

test('decideSeccomp: never weaken', () => {
  const profile = { localhostProfile: PATH_WEB, withinRuntimeDefault: false };
  assert.equal(decideSeccomp(undefined, undefined, profile).set, true);
  assert.equal(
    decideSeccomp({ type: 'Unconfined' }, { type: 'Localhost', localhostProfile: 'x.json' }, profile).set,
    true,
  );
  assert.equal(
    decideSeccomp(undefined, { type: 'Localhost', localhostProfile: 'x.json' }, profile).set,
    false,
  );
  assert.equal(decideSeccomp({ type: 'RuntimeDefault' }, undefined, profile).set, false);
  assert.equal(
    decideSeccomp({ type: 'Localhost', localhostProfile: PATH_WEB }, undefined, profile).set,
    false,
  );
  assert.equal(decideSeccomp({ type: 'SomethingNew' }, undefined, profile).set, false);
});

test('profiles not usable on every ready node, stale, of another image or with unsafe paths are not attached (the container learns)', () => {
  const variants = [
    profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, { usable: false, nodesInstalled: 2 }),
    profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, { stale: true }),
    profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, { image: 'registry.example.com/shop/web:1.3.0' }),
    profileEntry('web', PROFILE_HASH_WEB, 'pahlevan/../../etc/passwd.json'),
    profileEntry('web', PROFILE_HASH_WEB, '/etc/seccomp.json'),
  ];
  for (const entry of variants) {
    const { after } = mutate(webPod(), [policy({ status: { profiles: [entry] } })]);
    assert.deepEqual(
      seccompOf(after, 'containers', 'web'),
      { type: 'Localhost', localhostProfile: LEARNING_PROFILE_PATH },
      JSON.stringify(entry),
    );
    assert.equal(after.metadata.labels[LABEL_POLICY], 'web');
    assert.equal(after.metadata.labels[LABEL_PROFILE_HASH], undefined);
  }
});

test('a profile learned from several images (comma-separated) attaches to each of them', () => {
  const entry = profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, {
    image: 'registry.example.com/shop/web:1.4.1,registry.example.com/shop/web:1.4.2',
  });
  const { after } = mutate(webPod(), [policy({ status: { profiles: [entry] } })]);
  assert.deepEqual(seccompOf(after, 'containers', 'web'), { type: 'Localhost', localhostProfile: PATH_WEB });
});

test('a stale profile-hash label copied into a pod without profiles is removed', () => {
  const pod = webPod({ labels: { app: 'web', [LABEL_PROFILE_HASH]: 'deadbeefdeadbeef' } });
  const { after } = mutate(pod, [policy({ status: {} })]);
  assert.equal(after.metadata.labels[LABEL_PROFILE_HASH], undefined);
});

test('several matching policies: the one the pod is labelled with, else the oldest; with a warning', () => {
  const older = policy({ name: 'older' });
  const newer = policy({ name: 'newer' });
  newer.metadata.creationTimestamp = '2026-11-05T00:00:00Z';
  const byAge = mutate(webPod(), [newer, older]);
  assert.equal(byAge.after.metadata.labels[LABEL_POLICY], 'older');
  assert.match(byAge.reply.response.warnings?.[0] ?? '', /matches 2 PahlevanPolicies/);
  const labelled = mutate(webPod({ labels: { app: 'web', [LABEL_POLICY]: 'newer' } }), [older, newer]);
  assert.equal(labelled.after.metadata.labels[LABEL_POLICY], 'newer');
});

test('dryRun requests get the same answer and change none of the inputs', () => {
  const pod = deepFreeze(webPod());
  const policies = deepFreeze([policy()]);
  const wet = mutate(pod, policies);
  const dry = mutate(pod, policies, { dryRun: true });
  assert.deepEqual(dry.patch, wet.patch);
});

test('the reply uses the request apiVersion (v1beta1)', () => {
  const { reply } = mutate(webPod(), [policy()], {}, 'admission.k8s.io/v1beta1');
  assert.equal(reply.apiVersion, 'admission.k8s.io/v1beta1');
  assert.equal(reply.response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
});

test('objects that are not pods are admitted unchanged', () => {
  for (const object of [
    null,
    42,
    'pod',
    [],
    {},
    { spec: null },
    { spec: { containers: 'x' } },
    { metadata: [], spec: {} },
  ]) {
    const r = mutatePodRequest({ uid: 'u', operation: 'CREATE', namespace: 'shop', object }, [
      policy({ spec: { selector: {} } }),
    ]);
    assert.ok(r.outcome === 'skipped' || r.outcome === 'patched', JSON.stringify(object));
  }
});

test('learning: unset, Unconfined and RuntimeDefault get the learning profile; user Localhost is kept', () => {
  const learning = { type: 'Localhost', localhostProfile: LEARNING_PROFILE_PATH };
  const noProfiles = policy({ status: { phase: 'Learning' } });
  const sc = (seccompProfile: Json | undefined) => (seccompProfile ? { seccompProfile } : undefined);
  const cases: { pod?: Json; container?: Json; expected: Json | undefined }[] = [
    { expected: learning },
    { container: { type: 'Unconfined' }, expected: learning },
    { container: { type: 'RuntimeDefault' }, expected: learning },
    { pod: { type: 'Unconfined' }, expected: learning },
    { pod: { type: 'RuntimeDefault' }, expected: learning },
    // a user's own profile stays, at either level (nothing set on the container)
    {
      container: { type: 'Localhost', localhostProfile: 'mine/web.json' },
      expected: { type: 'Localhost', localhostProfile: 'mine/web.json' },
    },
    { pod: { type: 'Localhost', localhostProfile: 'mine/pod.json' }, expected: undefined },
    // an older Pahlevan profile on the container: re-learning needs the runtime default
    { container: { type: 'Localhost', localhostProfile: PATH_WEB }, expected: learning },
  ];
  for (const c of cases) {
    const pod = webPod();
    const web = (pod.spec as Json).containers.find((x: Json) => x.name === 'web');
    if (c.container) web.securityContext = sc(c.container);
    if (c.pod) (pod.spec as Json).securityContext = { seccompProfile: c.pod };
    const { after, reply } = mutate(pod, [noProfiles]);
    assert.deepEqual(seccompOf(after, 'containers', 'web'), c.expected, JSON.stringify(c));
    assert.equal(after.metadata.labels[LABEL_PROFILE_HASH], undefined, 'no learned profile attached');
    // idempotent: the mutated pod, reviewed again, gives no patch
    const again = mutate(after, [noProfiles]);
    assert.equal(again.reply.response.patch, undefined, `second review of ${JSON.stringify(c)}`);
    assert.equal(reply.response.allowed, true);
  }
});

test('learning and learned containers in one pod: each gets its own profile', () => {
  const { after } = mutate(webPod(), [
    policy({ status: { profiles: [profileEntry('web', PROFILE_HASH_WEB, PATH_WEB)] } }),
  ]);
  assert.deepEqual(seccompOf(after, 'containers', 'web'), { type: 'Localhost', localhostProfile: PATH_WEB });
  assert.deepEqual(seccompOf(after, 'containers', 'metrics-sidecar'), {
    type: 'Localhost',
    localhostProfile: LEARNING_PROFILE_PATH,
  });
  assert.equal(
    after.metadata.labels[LABEL_PROFILE_HASH],
    profileSetHash([{ container: 'web', hash: PROFILE_HASH_WEB }]),
    'the hash label names learned profiles only',
  );
  // once learned, the learning profile is replaced by the learned one
  const learned = mutate(after, [
    policy({
      status: {
        profiles: [
          profileEntry('web', PROFILE_HASH_WEB, PATH_WEB),
          profileEntry('metrics-sidecar', PROFILE_HASH_INIT, PATH_INIT, { image: undefined }),
        ],
      },
    }),
  ]).after;
  assert.deepEqual(seccompOf(learned, 'containers', 'metrics-sidecar'), {
    type: 'Localhost',
    localhostProfile: PATH_INIT,
  });
});

test('decideLearningSeccomp: other seccomp types are kept', () => {
  assert.equal(decideLearningSeccomp({ type: 'Bogus' }, undefined).set, false);
  assert.equal(
    decideLearningSeccomp(undefined, { type: 'Localhost', localhostProfile: LEARNING_PROFILE_PATH }).set,
    false,
  );
  assert.equal(
    decideLearningSeccomp({ type: 'Localhost', localhostProfile: 'pahlevan/x/y/z.json' }, undefined).set,
    true,
  );
  assert.equal(
    decideLearningSeccomp(undefined, { type: 'Localhost', localhostProfile: 'pahlevan/x/y/z.json' }).set,
    false,
    "a pod-level profile is the user's",
  );
});

test('learning: privileged containers and containers adding capabilities are left as they are', () => {
  const noProfiles = policy({ status: { phase: 'Learning' } });
  for (const securityContext of [
    { privileged: true },
    { capabilities: { add: ['SYS_ADMIN'] } },
    { capabilities: { add: ['SYS_PTRACE'] }, seccompProfile: { type: 'RuntimeDefault' } },
  ]) {
    const pod = webPod();
    (pod.spec as Json).containers.find((x: Json) => x.name === 'web').securityContext = securityContext;
    const { after } = mutate(pod, [noProfiles]);
    assert.deepEqual(
      after.spec.containers.find((x: Json) => x.name === 'web').securityContext,
      securityContext,
      JSON.stringify(securityContext),
    );
    assert.equal(after.metadata.labels[LABEL_POLICY], 'web', 'still labelled');
  }
  // dropping capabilities only narrows: the learning profile is set
  const pod = webPod();
  (pod.spec as Json).containers.find((x: Json) => x.name === 'web').securityContext = {
    capabilities: { drop: ['ALL'], add: [] },
  };
  assert.deepEqual(seccompOf(mutate(pod, [noProfiles]).after, 'containers', 'web'), {
    type: 'Localhost',
    localhostProfile: LEARNING_PROFILE_PATH,
  });
});
