import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import {
  contentsFromFiles,
  contentsToFiles,
  rotateCerts,
  ensureCerts,
  readCertDir,
  splitPemBundle,
  subjectAltNames,
  DEFAULT_ROTATION,
} from '../../certs/certs.js';
import { loadServingCert, isCertValidAt } from '../../certs/reload.js';

const DAY = 86_400_000;

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-certs-${process.pid}-`));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function state(dir: string) {
  const c = readCertDir(dir);
  const cas = c.caBundle.map((p) => new X509Certificate(p));
  const leaf = new X509Certificate(c.certPem!);
  return { cas, leaf, signerIndex: cas.findIndex((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)) };
}

test('creates a CA and a serving certificate with the SANs; running again changes nothing', () => {
  withDir((dir) => {
    const t0 = new Date('2026-01-01T00:00:00Z');
    const first = ensureCerts(dir, ['pahlevan-webhook.pahlevan-system.svc', 'localhost', '127.0.0.1'], t0);
    assert.equal(first.changed, true);
    const s = state(dir);
    assert.equal(s.cas.length, 1);
    assert.equal(s.signerIndex, 0);
    assert.ok(s.cas[0]!.ca);
    assert.deepEqual(subjectAltNames(s.leaf), [
      'pahlevan-webhook.pahlevan-system.svc',
      'localhost',
      '127.0.0.1',
    ]);
    assert.equal(loadServingCert(dir).serialNumber, s.leaf.serialNumber);
    const again = ensureCerts(
      dir,
      ['pahlevan-webhook.pahlevan-system.svc', 'localhost', '127.0.0.1'],
      new Date(t0.getTime() + DAY),
    );
    assert.equal(again.changed, false);
    assert.equal(state(dir).leaf.serialNumber, s.leaf.serialNumber);
  });
});

test('a new SAN or a near expiry re-issues the serving certificate from the same CA', () => {
  withDir((dir) => {
    const t0 = new Date('2026-01-01T00:00:00Z');
    ensureCerts(dir, ['a.svc'], t0);
    const first = state(dir);
    const sans = ensureCerts(dir, ['a.svc', 'b.svc'], new Date(t0.getTime() + DAY));
    assert.match(sans.plan.reasons.join(), /lacks SANs b\.svc/);
    const second = state(dir);
    assert.notEqual(second.leaf.serialNumber, first.leaf.serialNumber);
    assert.equal(second.cas[0]!.serialNumber, first.cas[0]!.serialNumber);
    const late = ensureCerts(dir, ['a.svc', 'b.svc'], new Date(t0.getTime() + 70 * DAY));
    assert.match(late.plan.reasons.join(), /serving certificate expires/);
    assert.ok(isCertValidAt(loadServingCert(dir), new Date(t0.getTime() + 150 * DAY)));
  });
});

test('CA rotation: the new CA joins the bundle first, the serving cert switches after the overlap, the old CA leaves at expiry', () => {
  withDir((dir) => {
    const t0 = new Date('2026-01-01T00:00:00Z');
    const settings = { ...DEFAULT_ROTATION, overlapMs: 2 * DAY };
    ensureCerts(dir, ['a.svc'], t0, settings);
    const oldCa = state(dir).cas[0]!;
    // 310 days later the CA expires within 60 days; the serving cert (90 days) was renewed meanwhile
    for (let day = 60; day <= 300; day += 60)
      ensureCerts(dir, ['a.svc'], new Date(t0.getTime() + day * DAY), settings);
    const tRotate = new Date(t0.getTime() + 310 * DAY);
    const rotate = ensureCerts(dir, ['a.svc'], tRotate, settings);
    assert.equal(rotate.plan.newCa, true);
    let s = state(dir);
    assert.equal(s.cas.length, 2, 'old and new CA in the bundle');
    assert.equal(s.cas[1]!.serialNumber, oldCa.serialNumber);
    assert.equal(s.signerIndex, 1, 'serving cert still from the old CA during the overlap');
    assert.equal(splitPemBundle(readFileSync(join(dir, 'ca.crt'), 'utf8')).length, 2);

    const inOverlap = ensureCerts(dir, ['a.svc'], new Date(tRotate.getTime() + DAY), settings);
    assert.equal(inOverlap.changed, false);
    const afterOverlap = ensureCerts(dir, ['a.svc'], new Date(tRotate.getTime() + 3 * DAY), settings);
    assert.match(afterOverlap.plan.reasons.join(), /switching the serving certificate to the newest CA/);
    s = state(dir);
    assert.equal(s.signerIndex, 0);
    assert.equal(s.cas.length, 2, 'old CA kept while still valid');

    const afterOldExpiry = ensureCerts(dir, ['a.svc'], new Date(t0.getTime() + 366 * DAY), settings);
    assert.match(afterOldExpiry.plan.reasons.join(), /dropping 1 expired CA/);
    s = state(dir);
    assert.equal(s.cas.length, 1);
    assert.equal(s.signerIndex, 0);
  });
});

test('an unreadable CA bundle is an error, never silently replaced', () => {
  withDir((dir) => {
    ensureCerts(dir, ['a.svc']);
    const bundle = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const broken = bundle.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!!!!!!!!!!!!!!!!!');
    writeFileSync(join(dir, 'ca.crt'), broken);
    assert.throws(() => ensureCerts(dir, ['a.svc']), /ca\.crt certificate #1 cannot be parsed/);
  });
});

test('rotation works on Secret data in memory (for a controller that owns the webhook Secret)', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const created = rotateCerts(contentsFromFiles({}), ['svc.ns.svc'], t0);
  assert.equal(created.changed, true);
  const data = contentsToFiles(created.contents);
  assert.deepEqual(Object.keys(data).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
  const same = rotateCerts(contentsFromFiles(data), ['svc.ns.svc'], new Date(t0.getTime() + DAY));
  assert.equal(same.changed, false);
  const renewed = rotateCerts(contentsFromFiles(data), ['svc.ns.svc'], new Date(t0.getTime() + 310 * DAY), {
    ...DEFAULT_ROTATION,
  });
  assert.equal(renewed.plan.newCa, true);
  const renewedData = contentsToFiles(renewed.contents);
  assert.equal(renewedData['ca.crt']!.match(/BEGIN CERTIFICATE/g)?.length, 2, 'caBundle keeps the old CA');
  assert.equal(renewedData['ca-previous.key'], data['ca.key'], 'the old CA key stays for the overlap');
});
