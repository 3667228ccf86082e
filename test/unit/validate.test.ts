import { test } from 'node:test';
import assert from 'node:assert/strict';
import { handleReview } from '../../webhook/handler.js';
import type { AdmissionReviewReply } from '../../webhook/admission.js';
import { parseAdmissionReview } from '../../webhook/admission.js';

const goodPolicy = {
  apiVersion: 'pahlevan.io/v1alpha1',
  kind: 'PahlevanPolicy',
  metadata: { name: 'web', namespace: 'shop', labels: null },
  spec: { selector: { matchLabels: { app: 'web' } }, enforcement: { mode: 'Enforce' } },
};

function policyReview(
  object: unknown,
  request: Record<string, unknown> = {},
  apiVersion = 'admission.k8s.io/v1',
) {
  return {
    apiVersion,
    kind: 'AdmissionReview',
    request: {
      uid: 'c6e2a1f0-9e4d-4b43-8a8b-7d1e5b0c1a22',
      kind: { group: 'pahlevan.io', version: 'v1alpha1', kind: 'PahlevanPolicy' },
      resource: { group: 'pahlevan.io', version: 'v1alpha1', resource: 'pahlevanpolicies' },
      name: 'web',
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'alice', groups: ['system:authenticated'] },
      object,
      oldObject: null,
      dryRun: false,
      ...request,
    },
  };
}

function validate(object: unknown, request: Record<string, unknown> = {}, apiVersion?: string) {
  const handled = handleReview('validate-policies', policyReview(object, request, apiVersion), []);
  assert.equal(handled.statusCode, 200);
  return (handled.body as AdmissionReviewReply).response;
}

test('a valid policy is allowed', () => {
  const r = validate(goodPolicy);
  assert.equal(r.allowed, true);
  assert.equal(r.uid, 'c6e2a1f0-9e4d-4b43-8a8b-7d1e5b0c1a22');
  assert.equal(r.warnings, undefined);
});

test('a bad duration is denied with 422 naming the field and the value', () => {
  const r = validate({ ...goodPolicy, spec: { ...goodPolicy.spec, learning: { duration: 'ten' } } });
  assert.equal(r.allowed, false);
  assert.equal(r.status?.code, 422);
  assert.match(r.status?.message ?? '', /spec\.learning\.duration: expected a duration like 10m, got "ten"/);
  assert.deepEqual(r.status?.details?.causes, [
    {
      field: 'spec.learning.duration',
      message: 'expected a duration like 10m, got "ten"',
      reason: 'FieldValueInvalid',
    },
  ]);
});

test('every wrong field is reported at once', () => {
  const r = validate({
    ...goodPolicy,
    spec: {
      selector: { matchExpressions: [{ key: 'app', operator: 'In' }] },
      enforcement: { mode: 'Block' },
      syscalls: { allow: ['open at'] },
      network: { egress: [{ port: 70000 }] },
      selfHealing: { window: '1 minute' },
    },
  });
  assert.equal(r.allowed, false);
  const fields = (r.status?.details?.causes ?? []).map((c) => c.field).sort();
  assert.deepEqual(fields, [
    'spec.enforcement.mode',
    'spec.network.egress[0].port',
    'spec.selector.matchExpressions[0].values',
    'spec.selfHealing.window',
    'spec.syscalls.allow[0]',
  ]);
});

test('a name that could become a path trick is denied', () => {
  const r = validate({ ...goodPolicy, metadata: { name: '../etc', namespace: 'shop' } });
  assert.equal(r.allowed, false);
  assert.match(r.status?.message ?? '', /metadata\.name: expected a DNS-1123 label/);
  const g = validate({ ...goodPolicy, metadata: { generateName: 'Web_', namespace: 'shop' } });
  assert.equal(g.allowed, false);
  assert.match(g.status?.message ?? '', /metadata\.generateName/);
});

test('a missing spec is denied', () => {
  const r = validate({ apiVersion: 'pahlevan.io/v1alpha1', kind: 'PahlevanPolicy', metadata: { name: 'x' } });
  assert.equal(r.allowed, false);
  assert.match(r.status?.message ?? '', /spec: /);
});

test('legal but surprising policies are allowed with warnings', () => {
  const r = validate({
    ...goodPolicy,
    spec: {
      selector: {},
      syscalls: { allow: ['ptrace'], deny: ['ptrace'] },
      learning: { duration: '1m', window: '5m' },
    },
  });
  assert.equal(r.allowed, true);
  const w = (r.warnings ?? []).join('\n');
  assert.match(w, /selects every pod/);
  assert.match(w, /ptrace both allowed and denied/);
  assert.match(w, /window is longer/);
  const sys = validate(
    { ...goodPolicy, metadata: { name: 'x', namespace: 'kube-system' } },
    { namespace: 'kube-system' },
  );
  assert.match((sys.warnings ?? []).join('\n'), /never matched/);
});

test('UPDATE changing the selector is allowed with a warning; DELETE is allowed', () => {
  const changed = { ...goodPolicy, spec: { ...goodPolicy.spec, selector: { matchLabels: { app: 'web2' } } } };
  const r = validate(changed, { operation: 'UPDATE', oldObject: goodPolicy });
  assert.equal(r.allowed, true);
  assert.match((r.warnings ?? []).join('\n'), /selector changed/);
  const d = validate(null, { operation: 'DELETE', oldObject: goodPolicy });
  assert.equal(d.allowed, true);
});

test('the reply uses the request apiVersion (v1beta1)', () => {
  const handled = handleReview(
    'validate-policies',
    policyReview(goodPolicy, {}, 'admission.k8s.io/v1beta1'),
    [],
  );
  assert.equal((handled.body as AdmissionReviewReply).apiVersion, 'admission.k8s.io/v1beta1');
});

test('envelope errors are 400 with a message', () => {
  const cases: [unknown, RegExp][] = [
    [null, /AdmissionReview JSON object/],
    [[], /AdmissionReview JSON object/],
    [{ kind: 'Pod' }, /expected kind AdmissionReview, got "Pod"/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v2' }, /expected apiVersion/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1' }, /no request/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: {} }, /request\.uid is missing/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 7 } }, /request\.uid/],
    [
      { kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 'u', operation: 5 } },
      /request\.operation/,
    ],
  ];
  for (const [body, message] of cases) {
    const parsed = parseAdmissionReview(body);
    assert.ok(!parsed.ok);
    assert.match(parsed.message, message);
    const handled = handleReview('validate-policies', body, []);
    assert.equal(handled.statusCode, 400);
    assert.match((handled.body as { message: string }).message, message);
  }
});
