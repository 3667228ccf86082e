import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import {
  ensureCerts,
  DEFAULT_ROTATION,
  issueServingCert,
  createCa,
  writeFileAtomic,
} from '../../certs/certs.js';
import { startWebhookServer } from '../../webhook/server.js';
import type { WebhookServer } from '../../webhook/server.js';
import { StateFilePolicySource } from '../../webhook/policy-cache.js';
import type { AdmissionReviewReply } from '../../webhook/admission.js';
import { LABEL_POLICY } from '../../api/names.js';
import { httpsRequest, keepAliveAgent } from '../helpers/https-client.js';
import type { HttpsReply } from '../helpers/https-client.js';
import { policy, review, webPod } from '../helpers/admission-fixtures.js';

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
let dir: string;
let server: WebhookServer;
let statePath: string;
let ca: string;

function writeState(policies: unknown[]): void {
  writeFileAtomic(statePath, stringify(policies));
}

async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), `pahlevan-webhook-${process.pid}-`));
  ensureCerts(join(dir, 'certs'), ['localhost', '127.0.0.1']);
  ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
  statePath = join(dir, 'state.yaml');
  writeState([policy()]);
  const policies = new StateFilePolicySource(statePath, quiet, 50);
  await policies.start();
  server = await startWebhookServer({
    port: 0,
    host: '127.0.0.1',
    certDir: join(dir, 'certs'),
    policies,
    namespace: 'pahlevan-system',
    certPollMs: 50,
  });
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function reply(r: HttpsReply): AdmissionReviewReply {
  return r.json as AdmissionReviewReply;
}

test('POST /mutate-pods over TLS returns the patch in the request apiVersion', async () => {
  const agent = keepAliveAgent(ca);
  for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']) {
    const r = await httpsRequest(agent, `${server.url}/mutate-pods?timeout=10s`, {
      body: JSON.stringify(review(webPod(), {}, apiVersion)),
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(reply(r).apiVersion, apiVersion);
    assert.equal(reply(r).response.allowed, true);
    const patch = JSON.parse(Buffer.from(reply(r).response.patch!, 'base64').toString());
    assert.ok(patch.some((op: { path: string }) => op.path === '/metadata/labels/pahlevan.io~1policy'));
  }
  agent.destroy();
});

test('POST /validate-policies denies a bad policy with 422 and the field', async () => {
  const bad = { ...policy(), status: undefined, spec: { selector: {}, learning: { duration: 'ten' } } };
  const body = review(bad, {
    kind: { group: 'pahlevan.io', version: 'v1alpha1', kind: 'PahlevanPolicy' },
    resource: { group: 'pahlevan.io', version: 'v1alpha1', resource: 'pahlevanpolicies' },
  });
  const r = await httpsRequest(undefined, `${server.url}/validate-policies`, {
    body: JSON.stringify(body),
    ca,
  });
  assert.equal(r.status, 200);
  assert.equal(reply(r).response.allowed, false);
  assert.equal(reply(r).response.status?.code, 422);
  assert.match(
    reply(r).response.status?.message ?? '',
    /spec\.learning\.duration: expected a duration like 10m, got "ten"/,
  );
});

test('the envelope: 413 above 7 MiB, 400 for non-JSON, non-AdmissionReview and missing uid, 404 elsewhere', async () => {
  const url = `${server.url}/mutate-pods`;
  const big = JSON.stringify(review(webPod(), { padding: 'x'.repeat(7 * 1024 * 1024) }));
  const tooLarge = await httpsRequest(undefined, url, { body: big, ca });
  assert.equal(tooLarge.status, 413);
  assert.match((tooLarge.json as { message: string }).message, /larger than/);
  // just under the limit is accepted (an UPDATE carries two objects)
  const nearLimit = JSON.stringify(review(webPod(), { padding: 'x'.repeat(7 * 1024 * 1024 - 4096) }));
  assert.equal((await httpsRequest(undefined, url, { body: nearLimit, ca })).status, 200);
  for (const [body, pattern, headers] of [
    ['not json', /not JSON/, {}],
    ['', /empty/, {}],
    ['{"kind":"Pod"}', /expected kind AdmissionReview/, {}],
    ['{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}', /uid/, {}],
    [JSON.stringify(review(webPod())), /./, { 'content-type': 'text/plain' }],
  ] as [string, RegExp, Record<string, string>][]) {
    const r = await httpsRequest(undefined, url, { body, ca, headers });
    if (headers['content-type'] === 'text/plain') {
      assert.equal(r.status, 200, 'content type does not matter');
      continue;
    }
    assert.equal(r.status, 400, `${body}: ${r.body}`);
    assert.match((r.json as { message: string }).message, pattern);
  }
  const missing = await httpsRequest(undefined, `${server.url}/nope`, { ca });
  assert.equal(missing.status, 404);
  const wrongMethod = await httpsRequest(undefined, `${server.url}/mutate-pods`, { ca });
  assert.equal(wrongMethod.status, 404);
});

test('/healthz, /readyz and /metrics; promtool check metrics finds nothing', async () => {
  assert.equal((await httpsRequest(undefined, `${server.url}/healthz`, { ca })).status, 200);
  const ready = await httpsRequest(undefined, `${server.url}/readyz`, { ca });
  assert.equal(ready.status, 200);
  assert.equal((ready.json as { ready: boolean }).ready, true);
  const metrics = await httpsRequest(undefined, `${server.url}/metrics`, { ca });
  assert.equal(metrics.status, 200);
  for (const name of [
    'pahlevan_webhook_requests_total{webhook="mutate-pods",operation="CREATE",outcome="patched"}',
    'pahlevan_webhook_request_duration_seconds_bucket',
    'pahlevan_webhook_patch_operations_total',
    'pahlevan_webhook_certificate_expiry_timestamp_seconds',
    'process_cpu_seconds_total',
  ])
    assert.ok(metrics.body.includes(name), `metrics lack ${name}`);
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics.body, encoding: 'utf8' });
  assert.ok(!promtool.error, `promtool is needed (Debian package prometheus): ${promtool.error?.message}`);
  assert.equal(promtool.status, 0, `promtool check metrics: ${promtool.stdout}${promtool.stderr}`);
});

test('the state file is reloaded on change; a broken edit keeps the last good policies', async () => {
  const agent = keepAliveAgent(ca);
  const mutateLabel = async () => {
    const r = await httpsRequest(agent, `${server.url}/mutate-pods`, {
      body: JSON.stringify(review(webPod())),
    });
    const patch = reply(r).response.patch;
    if (!patch) return undefined;
    const ops = JSON.parse(Buffer.from(patch, 'base64').toString()) as { path: string; value: unknown }[];
    const labels = ops.find((o) => o.path === '/metadata/labels/pahlevan.io~1policy');
    return labels?.value as string | undefined;
  };
  assert.equal(await mutateLabel(), 'web');
  writeState([policy({ name: 'renamed' })]);
  await waitFor(async () => (await mutateLabel()) === 'renamed', 'the renamed policy');
  writeFileSync(statePath, '- {this is: [not valid');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await mutateLabel(), 'renamed');
  writeState([]);
  await waitFor(async () => (await mutateLabel()) === undefined, 'the empty state');
  writeState([policy()]);
  await waitFor(async () => (await mutateLabel()) === 'web', 'the restored policy');
  agent.destroy();
  assert.ok(LABEL_POLICY);
});

test('certificate rotation in the middle of a stream of requests: zero failures, new handshakes get the new cert', async () => {
  const certDir = join(dir, 'certs');
  const before = server.servedCert().serialNumber;
  // 1. a new CA joins the bundle (the API server's caBundle now trusts both); serving cert unchanged
  const added = ensureCerts(certDir, ['localhost', '127.0.0.1'], new Date(), {
    ...DEFAULT_ROTATION,
    caRenewBeforeDays: 366,
  });
  assert.equal(added.plan.newCa, true);
  assert.equal(added.plan.reissueCert, false);
  const bundle = readFileSync(join(certDir, 'ca.crt'), 'utf8');
  const agent = keepAliveAgent(bundle, 8);
  const body = JSON.stringify(review(webPod()));
  const results: { status: number; allowed: boolean; serial: string; reused: boolean; at: number }[] = [];
  const failures: string[] = [];
  let stop = false;
  let switchedAt = Infinity;
  const worker = async (fresh: boolean) => {
    while (!stop) {
      try {
        const r = await httpsRequest(fresh ? false : agent, `${server.url}/mutate-pods`, {
          body,
          ca: fresh ? bundle : undefined,
        });
        results.push({
          status: r.status,
          allowed: reply(r)?.response?.allowed === true,
          serial: r.peerSerial,
          reused: r.reusedSocket,
          at: Date.now(),
        });
        if (r.status !== 200 || reply(r)?.response?.allowed !== true)
          failures.push(`${r.status} ${r.body.slice(0, 200)}`);
      } catch (err) {
        failures.push(String(err));
      }
    }
  };
  const workers = [...Array(6)].map(() => worker(false)).concat([worker(true), worker(true)]);
  await new Promise((r) => setTimeout(r, 700));
  // 2. the overlap is over: the serving certificate switches to the new CA, the files change under the server
  const switched = ensureCerts(certDir, ['localhost', '127.0.0.1'], new Date(), {
    ...DEFAULT_ROTATION,
    overlapMs: 0,
  });
  assert.equal(switched.plan.reissueCert, true, switched.plan.reasons.join('; '));
  switchedAt = Date.now();
  await waitFor(() => server.servedCert().serialNumber !== before, 'the reload');
  await new Promise((r) => setTimeout(r, 700));
  stop = true;
  await Promise.all(workers);
  agent.destroy();

  assert.deepEqual(failures, [], `failed requests: ${failures.length}`);
  const after = server.servedCert().serialNumber;
  assert.notEqual(after, before);
  const newCa = new X509Certificate(
    readFileSync(join(certDir, 'ca.crt'), 'utf8').split(/(?<=-----END CERTIFICATE-----\n)/)[0]!,
  );
  assert.ok(
    new X509Certificate(readFileSync(join(certDir, 'tls.crt'))).checkIssued(newCa),
    'serving cert signed by the new CA',
  );
  const late = results.filter((r) => r.at > switchedAt + 300);
  assert.ok(results.length > 50, `only ${results.length} requests`);
  assert.ok(
    late.some((r) => r.serial.toUpperCase() === after.toUpperCase() && !r.reused),
    'fresh connections see the new certificate',
  );
  assert.ok(
    late.some((r) => r.serial.toUpperCase() === before.toUpperCase() && r.reused),
    'established keep-alive connections kept going across the reload',
  );
  const ready = await httpsRequest(undefined, `${server.url}/readyz`, { ca: bundle });
  assert.equal(ready.status, 200);
});

test('a mismatched cert/key pair is not served; readiness is false while the served certificate is expired', async () => {
  const certDir = join(dir, 'certs');
  const served = server.servedCert().serialNumber;
  // a certificate whose key is missing (only tls.crt replaced): the old pair stays in service
  const caPair = createCa('other', new Date(), 30);
  const stray = issueServingCert(caPair, ['localhost'], new Date(), 10);
  writeFileAtomic(join(certDir, 'tls.crt'), stray.certPem);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(server.servedCert().serialNumber, served);

  const expiredDir = join(dir, 'expired');
  const now = new Date();
  const oldCa = createCa('old', new Date(now.getTime() - 10 * 86_400_000), 30);
  const expired = issueServingCert(oldCa, ['127.0.0.1'], new Date(now.getTime() - 10 * 86_400_000), 2);
  ensureCerts(expiredDir, ['127.0.0.1']);
  writeFileAtomic(join(expiredDir, 'tls.key'), expired.keyPem);
  writeFileAtomic(join(expiredDir, 'tls.crt'), expired.certPem);
  const policies = new StateFilePolicySource(statePath, quiet, 50);
  await policies.start();
  const stale = await startWebhookServer({
    port: 0,
    host: '127.0.0.1',
    certDir: expiredDir,
    policies,
    processMetrics: false,
  });
  try {
    const r = await httpsRequest(undefined, `${stale.url}/readyz`, { ca: oldCa.certPem, headers: {} }).catch(
      (err: Error) => ({ status: -1, body: err.message }) as HttpsReply,
    );
    // clients reject the expired certificate outright; ask without verification to see the readiness answer
    const insecure = await new Promise<number>((resolve, reject) => {
      import('node:https').then(({ get }) =>
        get(`${stale.url}/readyz`, { rejectUnauthorized: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject),
      );
    });
    assert.notEqual(r.status, 200);
    assert.equal(insecure, 503);
  } finally {
    await stale.close();
    await policies.stop();
  }
});

test('self-managed certificates: the server creates them in an empty directory and serves them', async () => {
  const certDir = join(dir, 'self-managed');
  const policies = new StateFilePolicySource(statePath, quiet, 50);
  await policies.start();
  const own = await startWebhookServer({
    port: 0,
    host: '127.0.0.1',
    certDir,
    policies,
    processMetrics: false,
    selfManagedCerts: { dnsNames: ['127.0.0.1'], checkMs: 100 },
  });
  try {
    const r = await httpsRequest(undefined, `${own.url}/readyz`, {
      ca: readFileSync(join(certDir, 'ca.crt'), 'utf8'),
    });
    assert.equal(r.status, 200);
    const serial = own.servedCert().serialNumber;
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(own.servedCert().serialNumber, serial, 'periodic checks leave valid certificates alone');
  } finally {
    await own.close();
    await policies.stop();
  }
});
