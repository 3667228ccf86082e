// `pahlevan controller` as a process: kubeconfig file, Lease, a reconciled policy, and a clean SIGTERM that
// releases the Lease.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoordinationV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { waitFor } from '../helpers/kube.js';
import { API_VERSION, GROUP, POLICY_PLURAL, VERSION, type PahlevanPolicy } from '../../api/policy.js';

// dist/test/integration/ -> repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('pahlevan controller: leads through the Lease, reconciles, releases the Lease on SIGTERM', async () => {
  const api = await FakeApiServer.start({ namespaces: ['default', 'pahlevan-system', 'apps'] });
  const dir = mkdtempSync(join(tmpdir(), `pahlevan-controller-cli-${process.pid}-`));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: fake, cluster: {server: "' + api.url + '", insecure-skip-tls-verify: true}}]',
      'users: [{name: fake, user: {}}]',
      'contexts: [{name: fake, context: {cluster: fake, user: fake}}]',
      'current-context: fake',
    ].join('\n'),
  );
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/pahlevan.js'),
      'controller',
      '--kubeconfig',
      kubeconfig,
      '--identity',
      'cli-1',
      '--resync',
      '200',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const kc = api.kubeConfig();
    const leases = kc.makeApiClient(CoordinationV1Api);
    const holder = async () =>
      (
        await leases
          .readNamespacedLease({ name: 'pahlevan-controller', namespace: 'pahlevan-system' })
          .catch(() => undefined)
      )?.spec?.holderIdentity;
    await waitFor(async () => (await holder()) === 'cli-1', `the Lease held by cli-1 (output: ${output})`);
    const custom = kc.makeApiClient(CustomObjectsApi);
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'apps',
      plural: POLICY_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: 'PahlevanPolicy',
        metadata: { name: 'p' },
        spec: { selector: {} },
      },
    });
    await waitFor(async () => {
      const p = (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: 'apps',
        plural: POLICY_PLURAL,
        name: 'p',
      })) as PahlevanPolicy;
      return (
        p.status?.phase === 'Learning' && p.status.conditions?.some((c) => c.type === 'Learning') === true
      );
    }, 'the policy reconciled');
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    assert.equal(await holder(), undefined, 'the Lease was released');
  } finally {
    child.kill('SIGKILL');
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
