// The cluster-fed policy cache against a stand-in API server (list + watch over HTTP), and proof that the
// admission path makes no API calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterPolicySource } from '../../webhook/policy-cache.js';
import { startWebhookServer } from '../../webhook/server.js';
import { ensureCerts } from '../../certs/certs.js';
import { httpsRequest } from '../helpers/https-client.js';
import { policy, review, webPod } from '../helpers/admission-fixtures.js';
import type { AdmissionReviewReply } from '../../webhook/admission.js';

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

async function waitFor(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('policies come from list + watch of a (stand-in) API server; the admission path never calls it', async () => {
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-cluster-${process.pid}-`));
  const requests: string[] = [];
  const watchers: ServerResponse[] = [];
  const web = { ...policy(), metadata: { ...policy().metadata, resourceVersion: '10' } };
  const api = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/apis/pahlevan.io/v1alpha1/pahlevanpolicies') {
      res.writeHead(404).end();
      return;
    }
    if (url.searchParams.get('watch') === 'true') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      watchers.push(res);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        apiVersion: 'pahlevan.io/v1alpha1',
        kind: 'PahlevanPolicyList',
        metadata: { resourceVersion: '10' },
        items: [web],
      }),
    );
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  const port = (api.address() as { port: number }).port;
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'stand-in',
          cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true },
        },
      ],
      users: [{ name: 'u', user: { token: 'test' } }],
      contexts: [{ name: 'c', context: { cluster: 'stand-in', user: 'u' } }],
      'current-context': 'c',
    }),
  );
  const source = new ClusterPolicySource(quiet, { kubeconfigPath: kubeconfig, retryMs: 100 });
  ensureCerts(join(dir, 'certs'), ['127.0.0.1']);
  let server: Awaited<ReturnType<typeof startWebhookServer>> | undefined;
  try {
    await source.start();
    await waitFor(() => source.ready(), 'the first list');
    assert.deepEqual(
      source.policies().map((p) => p.metadata.name),
      ['web'],
    );
    await waitFor(() => watchers.length > 0, 'the watch');
    const send = (type: string, object: unknown) =>
      watchers.at(-1)!.write(`${JSON.stringify({ type, object })}\n`);
    const other = {
      ...policy({ name: 'other' }),
      metadata: { ...policy({ name: 'other' }).metadata, resourceVersion: '11' },
    };
    send('ADDED', other);
    await waitFor(() => source.policies().length === 2, 'the added policy');
    // an object that is not a valid policy never enters the cache and breaks nothing
    send('ADDED', {
      apiVersion: 'pahlevan.io/v1alpha1',
      kind: 'PahlevanPolicy',
      metadata: { name: 'bad', namespace: 'shop', resourceVersion: '12' },
      spec: { learning: { duration: 'ten' } },
    });
    send('DELETED', other);
    await waitFor(() => source.policies().length === 1, 'the deletion');
    assert.equal(source.policies()[0]!.metadata.name, 'web');

    server = await startWebhookServer({
      port: 0,
      host: '127.0.0.1',
      certDir: join(dir, 'certs'),
      policies: source,
      processMetrics: false,
    });
    const before = requests.length;
    const ca = (await import('node:fs')).readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
    for (let i = 0; i < 20; i++) {
      const r = await httpsRequest(undefined, `${server.url}/mutate-pods`, {
        body: JSON.stringify(review(webPod())),
        ca,
      });
      assert.ok((r.json as AdmissionReviewReply).response.patch, 'mutated from the watched cache');
    }
    assert.deepEqual(requests.slice(before), [], 'no API calls on the admission path');
  } finally {
    await server?.close();
    await source.stop();
    for (const w of watchers) w.end();
    api.closeAllConnections();
    await new Promise((r) => api.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
});
