import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LEARNING_PROFILE_PATH, learningProfile, sha256Hex } from '../../api/names.js';
import {
  learningProfileContent,
  loadSurfaceReference,
  runtimeDefaultReference,
} from '../../api/attack-surface-data.js';
import { allowedSyscalls } from '../../api/attack-surface.js';
import { ProfileInstaller } from '../../agent/cluster/profiles.js';
import { runsUnderSeccompFilter } from '../../agent/cluster/agent.js';
import type { V1Pod } from '@kubernetes/client-node';

test('the learning profile allows exactly what the runtime default allows without capabilities', () => {
  const ref = loadSurfaceReference();
  const profile = learningProfile(runtimeDefaultReference(), ref.archSyscalls, ref.arch);
  assert.deepEqual(
    [...allowedSyscalls(profile, ref.archSyscalls, { arch: ref.arch })].sort(),
    [...ref.runtimeDefault].sort(),
  );
  assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO');
  assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64']);
  // OCI subset only: no Docker-only fields that containerd ignores
  const json = JSON.stringify(profile);
  for (const field of ['archMap', 'includes', 'excludes', '"name"', 'defaultErrno"'])
    assert.ok(!json.includes(field), `no ${field}`);
  for (const rule of profile.syscalls) {
    assert.ok(rule.names.length > 0);
    for (const n of rule.names) assert.ok(ref.archSyscalls.has(n), `${n} exists on x86_64`);
  }
  // Argument conditions are kept: personality only with the listed personas, not any.
  const personality = profile.syscalls.filter((r) => r.names.includes('personality'));
  assert.ok(
    personality.length >= 1 && personality.every((r) => r.args?.length),
    'personality keeps its args',
  );
  // Capability-gated rules are out (no capabilities), the denials excluded by a capability are in.
  const allows = (name: string) =>
    profile.syscalls.some((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args && r.names.includes(name));
  assert.ok(!allows('bpf') && !allows('init_module') && !allows('kexec_load'));
  assert.ok(profile.syscalls.some((r) => r.action === 'SCMP_ACT_ERRNO' && r.names.includes('bpf')));
  assert.ok(allows('read') && allows('execve') && allows('arch_prctl'));
});

test('learningProfile is pure and rejects unknown architectures', () => {
  const ref = loadSurfaceReference();
  const input = structuredClone(runtimeDefaultReference());
  const before = JSON.stringify(input);
  assert.deepEqual(learningProfile(input, ref.archSyscalls), learningProfile(input, ref.archSyscalls));
  assert.equal(JSON.stringify(input), before, 'input untouched');
  assert.throws(() => learningProfile(input, ref.archSyscalls, 'SCMP_ARCH_MIPS'), /no runtime default/);
});

test('the learning profile file: fixed path, installed atomically, kept through reconcile', () => {
  assert.equal(LEARNING_PROFILE_PATH, 'pahlevan/learning.json');
  const root = mkdtempSync(join(tmpdir(), 'pvt-kubelet-'));
  try {
    const inst = new ProfileInstaller(root);
    const content = learningProfileContent();
    const path = inst.installFixed(LEARNING_PROFILE_PATH, content);
    assert.equal(path, join(root, 'seccomp', LEARNING_PROFILE_PATH));
    assert.equal(readFileSync(path, 'utf8'), content);
    const mtime = statSync(path).mtimeMs;
    inst.installFixed(LEARNING_PROFILE_PATH, content);
    assert.equal(statSync(path).mtimeMs, mtime, 'identical content is not rewritten');
    // nothing references it, yet reconcile keeps it; it is not counted as a published profile
    const other = JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] });
    const result = inst.reconcile([
      { namespace: 'shop', policy: 'web', container: 'app', hash: sha256Hex(other), content: other },
    ]);
    assert.deepEqual(result.removed, []);
    assert.equal(readFileSync(path, 'utf8'), content);
    assert.deepEqual(inst.listInstalled(), [sha256Hex(other).slice(0, 16)]);
    inst.reconcile([]);
    assert.equal(readFileSync(path, 'utf8'), content, 'still there with no profiles at all');
    assert.deepEqual(
      readdirSync(join(root, 'seccomp', 'pahlevan')).filter((f) => f.startsWith('.tmp')),
      [],
      'no temp files left',
    );
    assert.throws(() => inst.installFixed('../evil.json', content), /outside/);
    assert.throws(() => inst.installFixed('other/x.json', content), /outside/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('runsUnderSeccompFilter: Localhost and RuntimeDefault are filters; unset, Unconfined and privileged are not', () => {
  const pod = (container: Record<string, unknown>, podLevel?: string): V1Pod =>
    ({
      spec: {
        ...(podLevel ? { securityContext: { seccompProfile: { type: podLevel } } } : {}),
        containers: [{ name: 'app', ...container }],
      },
    }) as V1Pod;
  const sp = (type: string) => ({
    securityContext: { seccompProfile: { type, localhostProfile: 'x.json' } },
  });
  assert.equal(runsUnderSeccompFilter(pod(sp('Localhost')), 'app'), true);
  assert.equal(runsUnderSeccompFilter(pod(sp('RuntimeDefault')), 'app'), true);
  assert.equal(runsUnderSeccompFilter(pod({}, 'RuntimeDefault'), 'app'), true, 'pod level');
  assert.equal(runsUnderSeccompFilter(pod({}), 'app'), false, 'unset: Unconfined');
  assert.equal(runsUnderSeccompFilter(pod(sp('Unconfined'), 'RuntimeDefault'), 'app'), false);
  assert.equal(
    runsUnderSeccompFilter(
      pod({ securityContext: { privileged: true, seccompProfile: { type: 'RuntimeDefault' } } }),
      'app',
    ),
    false,
    'privileged containers run without a filter',
  );
  // not known yet: assumed filtered (the gate keeps the runtime setup out)
  assert.equal(runsUnderSeccompFilter(undefined, 'app'), true);
  assert.equal(runsUnderSeccompFilter(pod({}), 'other'), true);
});
