import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ensureCerts, DEFAULT_ROTATION } from '../../certs/certs.js';
import { writeInstallOverlay } from '../../certs/kustomize.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/', import.meta.url));
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

test('the install overlay adds the TLS Secret and the caBundle (all CAs of a rotation overlap)', () => {
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-overlay-${process.pid}-`));
  try {
    const dns = ['pahlevan-webhook.pahlevan-system.svc'];
    ensureCerts(dir, dns);
    ensureCerts(dir, dns, new Date(), { ...DEFAULT_ROTATION, caRenewBeforeDays: 366 }); // second CA joins
    writeInstallOverlay(dir, MANIFESTS);
    const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
    assert.ok(!r.error, `kubectl is needed: ${r.error?.message}`);
    assert.equal(r.status, 0, r.stderr);
    const objects = parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj);
    const bundle = readFileSync(join(dir, 'ca.crt'));
    assert.equal(bundle.toString().match(/BEGIN CERTIFICATE/g)?.length, 2);
    for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
      const config = objects.find((o) => o.kind === kind)!;
      assert.equal(config.webhooks[0].clientConfig.caBundle, bundle.toString('base64'), kind);
    }
    const secret = objects.find((o) => o.kind === 'Secret')!;
    assert.equal(secret.metadata.name, 'pahlevan-webhook-tls');
    assert.equal(secret.metadata.namespace, 'pahlevan-system');
    assert.equal(secret.type, 'kubernetes.io/tls');
    assert.equal(
      Buffer.from(secret.data['tls.crt'], 'base64').toString(),
      readFileSync(join(dir, 'tls.crt'), 'utf8'),
    );
    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    assert.equal(
      deployment.spec.template.spec.volumes.find((v: Obj) => v.secret)?.secret.secretName,
      secret.metadata.name,
    );
    assert.ok(objects.some((o) => o.kind === 'CustomResourceDefinition'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
