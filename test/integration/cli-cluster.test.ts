// The cluster subcommands as a user runs them (the built CLI in a child process, a kubeconfig file)
// against the stand-in API server: install, trace start/stop, status, profile get.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { CoreV1Api, CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import { waitFor } from '../helpers/kube.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { buildProfileSpec, profileObjectName } from '../../api/profile.js';

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
let api: FakeApiServer;
let tmp: string;
let kubeconfig: string;

function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

before(async () => {
  api = await FakeApiServer.start();
  for (const t of [
    { group: 'rbac.authorization.k8s.io', kind: 'ClusterRole', plural: 'clusterroles', namespaced: false },
    {
      group: 'rbac.authorization.k8s.io',
      kind: 'ClusterRoleBinding',
      plural: 'clusterrolebindings',
      namespaced: false,
    },
    { group: 'rbac.authorization.k8s.io', kind: 'Role', plural: 'roles', namespaced: true },
    { group: 'rbac.authorization.k8s.io', kind: 'RoleBinding', plural: 'rolebindings', namespaced: true },
    { group: 'policy', kind: 'PodDisruptionBudget', plural: 'poddisruptionbudgets', namespaced: true },
    {
      group: 'admissionregistration.k8s.io',
      kind: 'MutatingWebhookConfiguration',
      plural: 'mutatingwebhookconfigurations',
      namespaced: false,
    },
    {
      group: 'admissionregistration.k8s.io',
      kind: 'ValidatingWebhookConfiguration',
      plural: 'validatingwebhookconfigurations',
      namespaced: false,
    },
  ])
    api.addType({ ...t, version: 'v1', statusSubresource: false });
  tmp = mkdtempSync(join(tmpdir(), 'pvt-cli-'));
  kubeconfig = join(tmp, 'kubeconfig');
  writeFileSync(kubeconfig, api.kubeConfig('shop').exportConfig());
  await api
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: 'shop' } } });
});
after(async () => {
  await api.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test('trace start creates a learning policy; a second start and a stop of nothing say what to do', async () => {
  const empty = await run(['status', '--kubeconfig', kubeconfig]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /No PahlevanPolicies found/);

  const start = await run([
    'trace',
    'start',
    '--kubeconfig',
    kubeconfig,
    '--namespace',
    'shop',
    '--selector',
    'app=web',
    '--duration',
    '2m',
  ]);
  assert.equal(start.code, 0, start.stderr);
  assert.match(start.stdout, /Learning started: PahlevanPolicy shop\/trace-app-web/);
  const policy = api.getObject('pahlevan.io', 'pahlevanpolicies', 'shop', 'trace-app-web') as unknown as {
    spec: { selector: unknown; learning: { duration: string } };
  };
  assert.deepEqual(policy.spec.selector, { matchLabels: { app: 'web' } });
  assert.equal(policy.spec.learning.duration, '2m');

  const again = await run(['trace', 'start', '--kubeconfig', kubeconfig, '--selector', 'app=web']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists: watch it with `pahlevan status trace-app-web -n shop --watch`/);

  const missing = await run(['trace', 'stop', 'nope', '--kubeconfig', kubeconfig]);
  assert.equal(missing.code, 1);
  assert.match(
    missing.stderr,
    /no PahlevanPolicy nope in namespace shop: list them with `pahlevan status -n shop`/,
  );

  const stop = await run(['trace', 'stop', 'trace-app-web', '--kubeconfig', kubeconfig]);
  assert.equal(stop.code, 0, stop.stderr);
  const stopped = api.getObject('pahlevan.io', 'pahlevanpolicies', 'shop', 'trace-app-web')!;
  assert.ok((stopped.metadata.annotations as Record<string, string>)['pahlevan.io/end-learning']);
});

test('status and profile get show what the controller published', async () => {
  const kc = api.kubeConfig();
  const custom = kc.makeApiClient(CustomObjectsApi);
  const content = {
    seccomp: {
      defaultAction: 'SCMP_ACT_ERRNO' as const,
      architectures: ['SCMP_ARCH_X86_64'],
      syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' as const }],
    },
    execs: [],
    files: [],
    ports: [],
  };
  const spec = buildProfileSpec('shop', 'trace-app-web', 'nginx', content);
  const name = profileObjectName('trace-app-web', 'nginx', spec.hash);
  await custom.createNamespacedCustomObject({
    group: 'pahlevan.io',
    version: 'v1alpha1',
    namespace: 'shop',
    plural: 'pahlevanprofiles',
    body: {
      apiVersion: 'pahlevan.io/v1alpha1',
      kind: 'PahlevanProfile',
      metadata: { name, namespace: 'shop' },
      spec,
    },
  });
  await custom.patchNamespacedCustomObjectStatus(
    {
      group: 'pahlevan.io',
      version: 'v1alpha1',
      namespace: 'shop',
      plural: 'pahlevanpolicies',
      name: 'trace-app-web',
      body: {
        status: {
          phase: 'Enforcing',
          profiles: [
            {
              container: 'nginx',
              hash: spec.hash,
              localhostProfile: spec.localhostProfile,
              profileName: name,
              syscalls: 2,
              nodesInstalled: 2,
              nodesReady: 2,
              usable: true,
            },
          ],
          violations: { total: 3, byLayer: { syscalls: 3 } },
        },
      },
    },
    (await import('@kubernetes/client-node')).setHeaderOptions(
      'Content-Type',
      'application/merge-patch+json',
    ),
  );
  const table = await run(['status', '--kubeconfig', kubeconfig]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /trace-app-web\s+Enforcing\s+Monitor\s+-\s+0\s+0\s+0\s+0\s+0\s+1\/1 usable\s+3/);
  const detail = await run(['status', 'trace-app-web', '--kubeconfig', kubeconfig]);
  assert.match(detail.stdout, /nginx\s+\w{12}\s+2\s+2\/2\s+yes\s+pahlevan\/shop\/trace-app-web\/nginx-/);
  const json = await run(['status', 'trace-app-web', '-o', 'json', '--kubeconfig', kubeconfig]);
  assert.equal(JSON.parse(json.stdout).status.phase, 'Enforcing');

  const oci = await run(['profile', 'get', 'trace-app-web', '--kubeconfig', kubeconfig]);
  assert.equal(oci.code, 0, oci.stderr);
  assert.deepEqual(JSON.parse(oci.stdout), content.seccomp);
  const spo = await run(['profile', 'get', 'trace-app-web', '-o', 'spo', '--kubeconfig', kubeconfig]);
  const spoObj = parseYaml(spo.stdout) as { kind: string; spec: { syscalls: { names: string[] }[] } };
  assert.equal(spoObj.kind, 'SeccompProfile');
  assert.deepEqual(spoObj.spec.syscalls[0]!.names, ['read', 'write']);

  // Offline merge of the exported profile with another one.
  const other = join(tmp, 'other.json');
  writeFileSync(
    other,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [{ names: ['close'], action: 'SCMP_ACT_ALLOW' }],
    }),
  );
  const exported = join(tmp, 'exported.json');
  writeFileSync(exported, oci.stdout);
  const merged = await run(['profile', 'merge', exported, other]);
  assert.equal(merged.code, 0, merged.stderr);
  assert.deepEqual(JSON.parse(merged.stdout).syscalls[0].names, ['close', 'read', 'write']);
});

test('status --watch prints the policy again when its status changes', async () => {
  const child = spawn(
    process.execPath,
    [CLI, 'status', 'trace-app-web', '--watch', '--kubeconfig', kubeconfig],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  try {
    await waitFor(() => /Phase:\s+Enforcing/.test(out), 'the first print');
    await api
      .kubeConfig()
      .makeApiClient(CustomObjectsApi)
      .patchNamespacedCustomObjectStatus(
        {
          group: 'pahlevan.io',
          version: 'v1alpha1',
          namespace: 'shop',
          plural: 'pahlevanpolicies',
          name: 'trace-app-web',
          body: {
            status: { phase: 'RolledBack', selfHealing: { lastAction: 'Rollback', reason: '12 violations' } },
          },
        },
        setHeaderOptions('Content-Type', 'application/merge-patch+json'),
      );
    await waitFor(() => /Phase:\s+RolledBack/.test(out), 'the watch to print the new phase');
    assert.match(out, /Self-heal:\s+Rollback/);
  } finally {
    child.kill();
  }
});

test('an unreachable API server and a missing kubeconfig are explained', async () => {
  const dead = join(tmp, 'dead-kubeconfig');
  const kc = api.kubeConfig();
  writeFileSync(dead, kc.exportConfig().replace(`127.0.0.1:${api.port}`, '127.0.0.1:1'));
  const r = await run(['status', '--kubeconfig', dead]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach the Kubernetes API server at http:\/\/127.0.0.1:1/);
  const m = await run(['status', '--kubeconfig', join(tmp, 'nope')]);
  assert.equal(m.code, 1);
  assert.match(m.stderr, /cannot load kubeconfig .*nope.*Pass --kubeconfig FILE or set KUBECONFIG/);
});

test('install applies the manifests with fresh certificates; --dry-run only prints them', async () => {
  const dir = join(tmp, 'manifests');
  mkdirSync(dir);
  writeFileSync(join(dir, 'kustomization.yaml'), 'resources: [all.yaml]\n');
  writeFileSync(
    join(dir, 'all.yaml'),
    [
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: pahlevan-system}',
      'apiVersion: v1\nkind: Service\nmetadata: {name: pahlevan-webhook, namespace: pahlevan-system}\nspec: {ports: [{port: 443}]}',
      'apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: pahlevan}\n' +
        'webhooks:\n  - name: m.pahlevan.io\n    clientConfig: {service: {name: pahlevan-webhook, namespace: pahlevan-system, path: /mutate-pods}}',
    ].join('\n---\n'),
  );
  const dry = await run(['install', '--dry-run', '--manifests', dir, '--kubeconfig', kubeconfig]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /kind: Secret/);
  assert.equal(
    api.getObject('', 'namespaces', undefined, 'pahlevan-system'),
    undefined,
    'dry run applies nothing',
  );

  const real = await run(['install', '--manifests', dir, '--kubeconfig', kubeconfig]);
  assert.equal(real.code, 0, real.stderr);
  const secret = api.getObject('', 'secrets', 'pahlevan-system', 'pahlevan-webhook-tls') as unknown as {
    data: Record<string, string>;
  };
  const hook = api.getObject(
    'admissionregistration.k8s.io',
    'mutatingwebhookconfigurations',
    undefined,
    'pahlevan',
  ) as unknown as {
    webhooks: { clientConfig: { caBundle: string } }[];
  };
  assert.equal(hook.webhooks[0]!.clientConfig.caBundle, secret.data['ca.crt']);
  // Applying again is idempotent (and rotates the certificates).
  const again = await run(['install', '--manifests', dir, '--kubeconfig', kubeconfig]);
  assert.equal(again.code, 0, again.stderr);

  // The project's own manifests apply as they are.
  const project = await run(['install', '--kubeconfig', kubeconfig]);
  assert.equal(project.code, 0, project.stderr);
  assert.ok(api.getObject('apps', 'daemonsets', 'pahlevan-system', 'pahlevan-agent'), 'the agent DaemonSet');
  assert.ok(
    api.getObject('apps', 'deployments', 'pahlevan-system', 'pahlevan-webhook'),
    'the webhook Deployment',
  );
  const tls = api.getObject('', 'secrets', 'pahlevan-system', 'pahlevan-webhook-tls') as unknown as {
    data: Record<string, string>;
  };
  const validating = api.getObject(
    'admissionregistration.k8s.io',
    'validatingwebhookconfigurations',
    undefined,
    'pahlevan',
  ) as unknown as { webhooks: { clientConfig: { caBundle: string } }[] };
  assert.equal(validating.webhooks[0]!.clientConfig.caBundle, tls.data['ca.crt']);
});
