// The two CLI entry points as a user runs them: `pahlevan certs` and `pahlevan webhook` (spawned processes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import { httpsRequest } from '../helpers/https-client.js';
import { policy, review, webPod } from '../helpers/admission-fixtures.js';
import type { AdmissionReviewReply } from '../../webhook/admission.js';

const BIN = fileURLToPath(new URL('../../../bin/pahlevan.js', import.meta.url));

test('pahlevan certs writes a CA and a serving certificate with the SANs, is idempotent, and writes an install overlay', () => {
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-cli-certs-${process.pid}-`));
  try {
    const first = spawnSync(
      process.execPath,
      [BIN, 'certs', '--out', dir, '--dns', 'pahlevan-webhook.pahlevan-system.svc,localhost'],
      { encoding: 'utf8' },
    );
    assert.equal(first.status, 0, first.stderr);
    for (const f of ['ca.crt', 'tls.crt', 'tls.key']) assert.ok(existsSync(join(dir, f)), f);
    const cert = new X509Certificate(readFileSync(join(dir, 'tls.crt')));
    assert.equal(cert.subjectAltName, 'DNS:pahlevan-webhook.pahlevan-system.svc, DNS:localhost');
    assert.ok(cert.checkIssued(new X509Certificate(readFileSync(join(dir, 'ca.crt')))));
    const again = spawnSync(
      process.execPath,
      [BIN, 'certs', '--out', dir, '--dns', 'pahlevan-webhook.pahlevan-system.svc,localhost', '--kustomize'],
      { encoding: 'utf8' },
    );
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /up to date/);
    assert.ok(existsSync(join(dir, 'kustomization.yaml')));
    assert.equal(new X509Certificate(readFileSync(join(dir, 'tls.crt'))).serialNumber, cert.serialNumber);
    const bad = spawnSync(process.execPath, [BIN, 'certs', '--out', dir, '--dns', ','], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--dns needs at least one name/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pahlevan webhook --state --dns serves mutations over HTTPS and stops cleanly on SIGTERM', async () => {
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-cli-webhook-${process.pid}-`));
  const state = join(dir, 'state.yaml');
  writeFileSync(state, stringify([policy()]));
  const port = 20000 + (process.pid % 20000);
  const child = spawn(
    process.execPath,
    [
      BIN,
      'webhook',
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      '--cert-dir',
      join(dir, 'certs'),
      '--dns',
      '127.0.0.1',
      '--state',
      state,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const url = `https://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    let ready = false;
    while (!ready) {
      if (Date.now() > deadline) throw new Error(`webhook did not become ready: ${output}`);
      await new Promise((r) => setTimeout(r, 200));
      if (!existsSync(join(dir, 'certs', 'ca.crt'))) continue;
      const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
      ready =
        (await httpsRequest(undefined, `${url}/readyz`, { ca }).catch(() => ({ status: 0 }))).status === 200;
    }
    const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
    const r = await httpsRequest(undefined, `${url}/mutate-pods`, {
      body: JSON.stringify(review(webPod())),
      ca,
    });
    assert.equal(r.status, 200);
    assert.ok((r.json as AdmissionReviewReply).response.patch);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
