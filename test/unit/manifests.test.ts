import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { matchesSelector } from '../../api/selector.js';
import type { LabelSelector } from '../../api/policy.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/', import.meta.url));
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function render(): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', MANIFESTS], { encoding: 'utf8' });
  assert.ok(!r.error, `kubectl is needed to render manifests/: ${r.error?.message}`);
  assert.equal(r.status, 0, `kubectl kustomize manifests/ failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj);
}

const objects = render();
const find = (kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};

test('kubectl kustomize renders every part, all labelled part-of pahlevan', () => {
  const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
  for (const expected of [
    'Namespace/pahlevan-system',
    'CustomResourceDefinition/pahlevanpolicies.pahlevan.io',
    'ServiceAccount/pahlevan-webhook',
    'ServiceAccount/pahlevan-agent',
    'Deployment/pahlevan-webhook',
    'PodDisruptionBudget/pahlevan-webhook',
    'Service/pahlevan-webhook',
    'MutatingWebhookConfiguration/pahlevan',
    'ValidatingWebhookConfiguration/pahlevan',
    'DaemonSet/pahlevan-agent',
  ])
    assert.ok(kinds.includes(expected), `${expected} missing from ${kinds.join(', ')}`);
  for (const o of objects)
    assert.equal(o.metadata.labels?.['app.kubernetes.io/part-of'], 'pahlevan', o.metadata.name);
});

test('the webhook Deployment: 2 replicas, PDB, HTTPS probes, restricted securityContext, requests and limits', () => {
  const d = find('Deployment', 'pahlevan-webhook');
  assert.equal(d.spec.replicas, 2);
  const pod = d.spec.template.spec;
  assert.equal(pod.serviceAccountName, 'pahlevan-webhook');
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  const c = pod.containers.find((x: Obj) => x.name === 'webhook');
  assert.deepEqual(
    pod.containers.map((x: Obj) => x.args[0]),
    ['webhook', 'controller'],
  );
  for (const container of pod.containers) {
    assert.equal(container.securityContext.allowPrivilegeEscalation, false, container.name);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true, container.name);
    assert.deepEqual(container.securityContext.capabilities.drop, ['ALL'], container.name);
    assert.equal(container.securityContext.privileged, undefined, container.name);
    for (const k of ['requests', 'limits'])
      for (const r of ['cpu', 'memory']) assert.ok(container.resources[k][r], `${container.name} ${k}.${r}`);
  }
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.readinessProbe.httpGet.scheme, 'HTTPS');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  for (const k of ['requests', 'limits'])
    for (const r of ['cpu', 'memory']) assert.ok(c.resources[k][r], `${k}.${r}`);
  assert.ok(c.args.includes('webhook'));
  const pdb = find('PodDisruptionBudget', 'pahlevan-webhook');
  assert.equal(pdb.spec.minAvailable, 1);
  assert.deepEqual(pdb.spec.selector.matchLabels, d.spec.selector.matchLabels);
  const svc = find('Service', 'pahlevan-webhook');
  assert.ok(matchesSelector({ matchLabels: svc.spec.selector }, d.spec.template.metadata.labels));
  assert.equal(svc.spec.ports[0].targetPort, c.ports[0].name);
});

const nsLabels = (name: string, enabled: boolean) => ({
  'kubernetes.io/metadata.name': name,
  ...(enabled ? { 'pahlevan.io/enabled': 'true' } : {}),
});

test('the mutating webhook: pods CREATE + ephemeralcontainers, fail open, opt-in namespaces, never its own or kube-system', () => {
  const m = find('MutatingWebhookConfiguration', 'pahlevan');
  const w = m.webhooks[0];
  assert.equal(w.failurePolicy, 'Ignore');
  assert.equal(w.sideEffects, 'None');
  assert.ok(w.timeoutSeconds >= 1 && w.timeoutSeconds <= 10);
  assert.deepEqual(w.admissionReviewVersions, ['v1', 'v1beta1']);
  assert.deepEqual(
    w.rules.map((r: Obj) => `${r.operations.join('+')} ${r.resources.join('+')}`),
    ['CREATE pods', 'UPDATE pods/ephemeralcontainers'],
  );
  assert.equal(w.clientConfig.service.path, '/mutate-pods');
  const svc = find('Service', 'pahlevan-webhook');
  assert.equal(w.clientConfig.service.name, svc.metadata.name);
  assert.equal(w.clientConfig.service.namespace, svc.metadata.namespace);
  assert.equal(w.clientConfig.service.port, svc.spec.ports[0].port);
  const sel = w.namespaceSelector as LabelSelector;
  assert.equal(matchesSelector(sel, nsLabels('shop', true)), true);
  assert.equal(matchesSelector(sel, nsLabels('shop', false)), false);
  assert.equal(matchesSelector(sel, nsLabels('pahlevan-system', true)), false);
  assert.equal(matchesSelector(sel, nsLabels('kube-system', true)), false);
});

test('the validating webhook: PahlevanPolicy CREATE/UPDATE, fail closed', () => {
  const v = find('ValidatingWebhookConfiguration', 'pahlevan');
  const w = v.webhooks[0];
  assert.equal(w.failurePolicy, 'Fail');
  assert.equal(w.sideEffects, 'None');
  assert.equal(w.clientConfig.service.path, '/validate-policies');
  assert.deepEqual(w.rules[0].apiGroups, ['pahlevan.io']);
  assert.deepEqual(w.rules[0].resources, ['pahlevanpolicies']);
  assert.deepEqual(w.rules[0].operations, ['CREATE', 'UPDATE']);
});

test('RBAC is least privilege: no wildcards, no cluster-wide secrets, webhook configurations by name only', () => {
  const roles = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
  assert.ok(roles.length >= 3);
  for (const role of roles)
    for (const rule of role.rules) {
      for (const field of ['verbs', 'resources', 'apiGroups'])
        assert.ok(!rule[field].includes('*'), `${role.kind}/${role.metadata.name} uses * in ${field}`);
      if (rule.resources.includes('secrets')) {
        assert.equal(role.kind, 'Role', 'secrets only in a namespaced Role');
        assert.deepEqual(rule.resourceNames, ['pahlevan-webhook-tls']);
      }
      if (rule.resources.some((r: string) => r.endsWith('webhookconfigurations')))
        assert.deepEqual(rule.resourceNames, ['pahlevan']);
    }
  const agent = find('ClusterRole', 'pahlevan-agent');
  const agentWrites = agent.rules.filter((r: Obj) =>
    r.verbs.some((v: string) => ['create', 'update', 'patch', 'delete'].includes(v)),
  );
  assert.deepEqual(agentWrites.flatMap((r: Obj) => r.resources).sort(), [
    'events',
    'pahlevannodeobservations',
  ]);
  for (const b of objects.filter((o) => o.kind.endsWith('RoleBinding'))) {
    assert.equal(b.subjects.length, 1);
    assert.equal(b.subjects[0].kind, 'ServiceAccount');
    assert.equal(b.subjects[0].name, b.metadata.name, 'each part binds only its own ServiceAccount');
  }
});

test('the agent DaemonSet has the host access it needs: hostPID, bpffs, kubelet seccomp root, cgroup fs', () => {
  const ds = find('DaemonSet', 'pahlevan-agent');
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.serviceAccountName, 'pahlevan-agent');
  const hostPaths = Object.fromEntries(
    pod.volumes.filter((v: Obj) => v.hostPath).map((v: Obj) => [v.name, v.hostPath.path]),
  );
  const mounts = Object.fromEntries(pod.containers[0].volumeMounts.map((m: Obj) => [m.mountPath, m]));
  for (const path of ['/sys/fs/bpf', '/var/lib/kubelet/seccomp', '/sys/fs/cgroup']) {
    assert.ok(Object.values(hostPaths).includes(path), `hostPath ${path}`);
    assert.ok(mounts[path], `mount ${path}`);
  }
  assert.equal(mounts['/sys/fs/bpf'].mountPropagation, 'Bidirectional');
  assert.notEqual(mounts['/var/lib/kubelet/seccomp'].readOnly, true, 'profiles are written there');
  assert.ok(
    pod.tolerations.some((t: Obj) => t.operator === 'Exists'),
    'runs on every node',
  );
  const env = pod.containers[0].env.map((e: Obj) => e.name);
  assert.ok(env.includes('NODE_NAME'));
  // the flags are the agent command's own (cli/agent.ts)
  const args: string[] = pod.containers[0].args;
  assert.equal(args[0], 'agent');
  for (const flag of ['--node=', '--pin-dir=', '--kubelet-root=', '--cgroup-root=', '--state-dir='])
    assert.ok(
      args.some((a) => a.startsWith(flag)),
      `agent ${flag}`,
    );
});

test('every container command line in the manifests uses flags its pahlevan subcommand defines', async () => {
  const { Command } = await import('commander');
  const program = new Command('pahlevan');
  for (const module of ['agent', 'controller', 'webhook'])
    ((await import(`../../cli/${module}.js`)) as { register(p: unknown): void }).register(program);
  const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'DaemonSet');
  let checked = 0;
  for (const w of workloads)
    for (const c of w.spec.template.spec.containers as Obj[]) {
      const [sub, ...flags] = c.args as string[];
      const command = program.commands.find((x) => x.name() === sub);
      assert.ok(command, `${c.name}: no subcommand ${sub}`);
      const known = new Set(command.options.map((o) => o.long));
      for (const flag of flags) {
        assert.ok(
          known.has(flag.split('=')[0]),
          `${w.kind}/${w.metadata.name} ${c.name}: ${sub} has no ${flag}`,
        );
        checked++;
      }
    }
  assert.ok(checked >= 6);
});
