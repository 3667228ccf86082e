import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyOrder, injectCertificates, readKustomization, renderManifests } from '../../cli/install.js';

function fixture(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pvt-manifests-'));
  mkdirSync(join(dir, 'crds'));
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    'resources: [ns.yaml, crds, webhook.yaml, hooks.yaml]\nlabels:\n  - pairs: {app.kubernetes.io/part-of: pahlevan}\n',
  );
  writeFileSync(join(dir, 'crds', 'kustomization.yaml'), 'resources: [crd.yaml]\n');
  writeFileSync(
    join(dir, 'crds', 'crd.yaml'),
    'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: pahlevanpolicies.pahlevan.io}\n',
  );
  writeFileSync(join(dir, 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: pahlevan-system}\n');
  writeFileSync(
    join(dir, 'webhook.yaml'),
    'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pahlevan-webhook, namespace: pahlevan-system}\n' +
      'spec:\n  template:\n    spec:\n      volumes: [{name: tls, secret: {secretName: my-tls}}]\n',
  );
  writeFileSync(
    join(dir, 'hooks.yaml'),
    'apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: pahlevan}\n' +
      'webhooks:\n  - name: m.pahlevan.io\n    clientConfig: {service: {name: pahlevan-webhook, namespace: pahlevan-system, path: /mutate-pods}}\n' +
      '---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: pahlevan}\n' +
      'webhooks:\n  - name: v.pahlevan.io\n    clientConfig: {service: {name: pahlevan-webhook, namespace: pahlevan-system, path: /validate-policies}}\n',
  );
  return dir;
}

test('manifests render the same with kubectl kustomize and with the built-in reader', () => {
  const dir = fixture();
  try {
    const ours = readKustomization(dir);
    assert.deepEqual(
      ours.map((o) => o.kind),
      [
        'Namespace',
        'CustomResourceDefinition',
        'Deployment',
        'MutatingWebhookConfiguration',
        'ValidatingWebhookConfiguration',
      ],
    );
    assert.equal(ours[2]!.metadata!.labels!['app.kubernetes.io/part-of'], 'pahlevan');
    const viaKubectl = renderManifests(dir, true);
    const key = (o: { kind?: string; metadata?: { name?: string } }) => `${o.kind}/${o.metadata?.name}`;
    assert.deepEqual(viaKubectl.map(key).sort(), ours.map(key).sort());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('install puts a fresh CA in every caBundle and a serving certificate for the service in the Secret', () => {
  const dir = fixture();
  try {
    const { objects, secret, dnsNames } = injectCertificates(readKustomization(dir));
    assert.deepEqual(secret, { namespace: 'pahlevan-system', name: 'my-tls' });
    assert.ok(dnsNames.includes('pahlevan-webhook.pahlevan-system.svc'));
    const s = objects.find((o) => o.kind === 'Secret')!;
    const data = s.data as Record<string, string>;
    const ca = new X509Certificate(Buffer.from(data['ca.crt']!, 'base64'));
    const leaf = new X509Certificate(Buffer.from(data['tls.crt']!, 'base64'));
    assert.ok(leaf.verify(ca.publicKey), 'serving certificate is signed by the CA');
    assert.ok(leaf.checkHost('pahlevan-webhook.pahlevan-system.svc'));
    assert.match(Buffer.from(data['tls.key']!, 'base64').toString(), /PRIVATE KEY/);
    for (const o of objects.filter((x) => x.kind?.endsWith('WebhookConfiguration')))
      for (const w of o.webhooks as { clientConfig: { caBundle: string } }[])
        assert.equal(w.clientConfig.caBundle, data['ca.crt']);
    // Namespaces and CRDs first; the Secret before the Deployment that mounts it.
    const order = applyOrder(objects).map((o) => o.kind);
    assert.deepEqual(order.slice(0, 2), ['Namespace', 'CustomResourceDefinition']);
    assert.ok(order.indexOf('Secret') < order.indexOf('Deployment'));
    // A second run issues a different CA (fresh certificates every install).
    const again = injectCertificates(readKustomization(dir));
    assert.notEqual(again.caPem, injectCertificates(readKustomization(dir)).caPem);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('manifests without webhook services, or a missing directory, give a clear error', () => {
  assert.throws(() => renderManifests('/nonexistent-pahlevan'), /manifests directory .* not found/);
  assert.throws(() => injectCertificates([]), /no webhook configuration/);
});
