import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultTraceName, parseSelector, tracePolicy } from '../../cli/trace.js';
import { render, statusDetail, statusTable } from '../../cli/status.js';
import {
  documentsFromText,
  mergeOciProfiles,
  profilesFromText,
  seccompFromObservations,
  toSpoSeccompProfile,
} from '../../cli/profile.js';
import { parsePolicy, type PahlevanPolicy } from '../../api/policy.js';

test('trace selectors parse to matchLabels and give a DNS-label policy name', () => {
  assert.deepEqual(parseSelector('app=web, tier=front'), { app: 'web', tier: 'front' });
  assert.throws(() => parseSelector('app'), /expected key=value/);
  assert.throws(() => parseSelector(' , '), /at least one/);
  assert.equal(defaultTraceName({ 'app.kubernetes.io/name': 'Web_Shop' }), 'trace-name-web-shop');
  assert.ok(defaultTraceName({ app: 'x'.repeat(100) }).length <= 63);
});

test('trace start builds a valid learning policy, and bad options name the field', () => {
  const p = tracePolicy('shop', { selector: 'app=web', duration: '2m', autoEnforce: true });
  assert.equal(p.metadata.name, 'trace-app-web');
  assert.equal(p.metadata.namespace, 'shop');
  assert.deepEqual(p.spec.selector, { matchLabels: { app: 'web' } });
  assert.equal(p.spec.learning.duration, '2m');
  assert.equal(p.spec.learning.autoEnforce, true);
  assert.throws(
    () => tracePolicy('shop', { selector: 'app=web', duration: 'ten minutes' }),
    /spec.learning.duration/,
  );
  assert.throws(
    () => tracePolicy('shop', { selector: 'app=web', duration: '1m', name: 'Bad_Name' }),
    /metadata.name/,
  );
});

function policy(status?: PahlevanPolicy['status']): PahlevanPolicy {
  const r = parsePolicy({
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name: 'web', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { selector: { matchLabels: { app: 'web' } }, learning: { duration: '10m', stableWindows: 3 } },
    ...(status ? { status } : {}),
  });
  assert.ok(r.ok, r.ok ? '' : r.errors.join());
  return r.policy;
}

test('status shows phase, progress, profiles and violations', () => {
  const now = new Date('2026-01-01T00:04:00Z');
  const learning = policy({
    phase: 'Learning',
    learning: {
      startedAt: '2026-01-01T00:00:00Z',
      podsObserved: 4,
      nodesReporting: 2,
      syscalls: 57,
      files: 3,
      execs: 1,
      ports: 1,
      stableWindows: 1,
    },
  });
  const table = statusTable([learning], now);
  assert.match(table, /^NAME\s+PHASE\s+MODE\s+PROGRESS/);
  assert.match(
    table,
    /\nweb\s+Learning\s+Monitor\s+1\/3 stable, 6m left\s+4\s+2\s+57\s+3\s+1\s+-\s+0\s+4m\n$/,
  );
  const enforcing = policy({
    phase: 'Enforcing',
    profiles: [
      {
        container: 'nginx',
        hash: 'ab'.repeat(32),
        localhostProfile: 'pahlevan/shop/web/nginx-abababababababab.json',
        profileName: 'web.nginx.abababababababab',
        syscalls: 57,
        nodesInstalled: 2,
        nodesReady: 2,
        usable: true,
      },
    ],
    violations: {
      total: 12,
      byLayer: { syscalls: 12 },
      recent: [{ layer: 'syscalls', container: 'nginx', what: 'ptrace', count: 12 }],
    },
    nodes: [
      { node: 'n1', active: ['syscalls', 'network'], missing: [{ layer: 'files', reason: 'no BPF-LSM' }] },
    ],
    conditions: [
      {
        type: 'Published',
        status: 'True',
        reason: 'AllNodesAcked',
        message: 'installed on 2/2 nodes',
        lastTransitionTime: '2026-01-01T00:03:00Z',
      },
    ],
  });
  assert.match(statusTable([enforcing], now), /1\/1 usable\s+12/);
  const detail = statusDetail(enforcing, now);
  assert.match(detail, /Phase:\s+Enforcing/);
  assert.match(
    detail,
    /nginx\s+abababababab\s+57\s+2\/2\s+yes\s+pahlevan\/shop\/web\/nginx-abababababababab.json/,
  );
  assert.match(detail, /n1: active syscalls, network; missing files \(no BPF-LSM\)/);
  assert.match(detail, /Violations:\s+12 \(syscalls 12\)/);
  assert.match(detail, /nginx: syscalls ptrace x12/);
  assert.match(detail, /Published\s+True\s+AllNodesAcked/);
  assert.deepEqual(JSON.parse(render([enforcing], 'json', true)), enforcing);
  assert.match(render([enforcing], 'yaml', false), /^apiVersion: v1\nkind: List\nitems:/);
});

test('offline merge is a union that keeps the more permissive action', () => {
  const a = {
    defaultAction: 'SCMP_ACT_ERRNO' as const,
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' as const }],
  };
  const b = {
    defaultAction: 'SCMP_ACT_ERRNO' as const,
    syscalls: [
      { names: ['close', 'ptrace'], action: 'SCMP_ACT_ALLOW' as const },
      { names: ['read'], action: 'SCMP_ACT_LOG' as const },
    ],
  };
  const merged = mergeOciProfiles([a, b]);
  assert.deepEqual(merged, {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: ['close', 'ptrace', 'read', 'write'], action: 'SCMP_ACT_ALLOW' }],
  });
  assert.throws(
    () => mergeOciProfiles([a, { ...b, defaultAction: 'SCMP_ACT_ALLOW' }]),
    /different default actions/,
  );
  assert.throws(() => mergeOciProfiles([]), /nothing to merge/);
});

test('profile files may be OCI JSON, PahlevanProfile or SPO YAML; junk is refused clearly', () => {
  const oci = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] };
  assert.equal(profilesFromText(JSON.stringify(oci), 'a.json').length, 1);
  const yamlDocs =
    `kind: PahlevanProfile\nspec:\n  seccomp:\n    defaultAction: SCMP_ACT_ERRNO\n    syscalls: [{names: [write], action: SCMP_ACT_ALLOW}]\n---\n` +
    `apiVersion: security-profiles-operator.x-k8s.io/v1beta1\nkind: SeccompProfile\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [close], action: SCMP_ACT_ALLOW}]\n`;
  const got = profilesFromText(yamlDocs, 'b.yaml');
  assert.deepEqual(mergeOciProfiles(got).syscalls[0]!.names, ['close', 'write']);
  assert.throws(
    () =>
      profilesFromText(
        '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]}',
        'docker.json',
      ),
    /docker.json: not a seccomp profile \(syscalls\[0\]\.names/,
  );
  assert.throws(() => profilesFromText('{{{', 'x'), /x: not JSON or YAML/);
  const spo = toSpoSeccompProfile('web-nginx', 'shop', mergeOciProfiles(got));
  assert.equal(spo.kind, 'SeccompProfile');
  assert.deepEqual((spo.spec as { syscalls: unknown[] }).syscalls, [
    { action: 'SCMP_ACT_ALLOW', names: ['close', 'write'] },
  ]);
});

test('offline merge of node observations uses the controller merge, one container at a time', () => {
  const obs = (node: string, syscalls: string[]) =>
    JSON.stringify({
      apiVersion: 'pahlevan.io/v1alpha1',
      kind: 'PahlevanNodeObservation',
      metadata: { name: `web.${node}`, namespace: 'shop' },
      spec: {
        policy: 'web',
        node,
        containers: [
          {
            name: 'app',
            images: ['a:1'],
            pods: ['p'],
            syscalls: Object.fromEntries(syscalls.map((s) => [s, { count: 1, pods: 1 }])),
            execs: {},
            files: {},
            ports: [],
          },
        ],
      },
    });
  const a = documentsFromText(obs('n1', ['read']), 'n1.json');
  const b = documentsFromText(obs('n2', ['write']), 'n2.json');
  const [profile] = seccompFromObservations([...a.observations, ...b.observations], 'app');
  const allowed = profile!.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names);
  assert.ok(allowed.includes('read') && allowed.includes('write'), 'union over nodes');
  assert.equal(profile!.defaultAction, 'SCMP_ACT_ERRNO');
  assert.throws(
    () => seccompFromObservations(a.observations, 'nope'),
    /no observations for container nope; they cover app/,
  );
  assert.throws(
    () => documentsFromText('{"kind":"PahlevanNodeObservation","spec":{}}', 'bad.json'),
    /bad.json: not a valid PahlevanNodeObservation/,
  );
});
