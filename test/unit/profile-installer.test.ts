import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProfileInstaller, profileFileFromObject, type ProfileFile } from '../../agent/cluster/profiles.js';
import { buildProfileSpec } from '../../api/profile.js';
import { sha256Hex } from '../../api/names.js';

function profile(container: string, syscalls: string[], policy = 'web', namespace = 'shop'): ProfileFile {
  const content = JSON.stringify({
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [{ names: syscalls, action: 'SCMP_ACT_ALLOW' }],
  });
  return { namespace, policy, container, hash: sha256Hex(content), content };
}

function withRoot(fn: (root: string) => void): void {
  const root = mkdtempSync(join(tmpdir(), 'pvt-kubelet-'));
  try {
    fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('a profile lands at the localhost path with its exact content, content-hashed name', () =>
  withRoot((root) => {
    const inst = new ProfileInstaller(root);
    const p = profile('nginx', ['read', 'write']);
    const path = inst.install(p);
    assert.equal(path, join(root, 'seccomp', 'pahlevan', 'shop', 'web', `nginx-${p.hash.slice(0, 16)}.json`));
    assert.equal(readFileSync(path, 'utf8'), p.content);
    assert.deepEqual(inst.listInstalled(), [p.hash.slice(0, 16)]);
    // no temp files left behind
    assert.deepEqual(readdirSync(join(root, 'seccomp', 'pahlevan', 'shop', 'web')), [
      `nginx-${p.hash.slice(0, 16)}.json`,
    ]);
  }));

function profileObject(container: string, names: string[]): Record<string, unknown> {
  const content = {
    seccomp: {
      defaultAction: 'SCMP_ACT_ERRNO' as const,
      syscalls: [{ names, action: 'SCMP_ACT_ALLOW' as const }],
    },
    execs: ['/bin/sh'],
    files: [],
    ports: [],
  };
  return {
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanProfile',
    metadata: { name: 'x', namespace: 'shop' },
    spec: buildProfileSpec('shop', 'web', container, content),
  };
}

test('a PahlevanProfile object becomes its seccomp file after its hash and path are checked', () =>
  withRoot((root) => {
    const obj = profileObject('nginx', ['read']);
    const file = profileFileFromObject(obj);
    const spec = obj.spec as { hash: string; seccomp: unknown; localhostProfile: string };
    assert.equal(file.hash, spec.hash);
    assert.deepEqual(JSON.parse(file.content), spec.seccomp);
    const path = new ProfileInstaller(root).install(file);
    assert.equal(path, join(root, 'seccomp', spec.localhostProfile));

    const tampered = structuredClone(obj) as { spec: { seccomp: { syscalls: { names: string[] }[] } } };
    tampered.spec.seccomp.syscalls[0]!.names.push('ptrace');
    assert.throws(() => profileFileFromObject(tampered), /does not match spec.hash/);
    const moved = structuredClone(obj) as { spec: { localhostProfile: string } };
    moved.spec.localhostProfile = '../../../etc/x.json';
    assert.throws(() => profileFileFromObject(moved), /is not pahlevan\/shop\/web/);
    assert.throws(() => profileFileFromObject({ kind: 'Pod' }), /invalid PahlevanProfile/);
  }));

test('hostile names never produce a path outside seccomp/pahlevan', () =>
  withRoot((root) => {
    const inst = new ProfileInstaller(root);
    const good = profile('nginx', ['read']);
    const hostile: Partial<ProfileFile>[] = [
      { namespace: '..' },
      { namespace: '../../etc' },
      { policy: 'a/../../b' },
      { container: '../../../../etc/passwd' },
      { container: '/etc/passwd' },
      { container: 'x\0y' },
      { container: '..' },
      { container: 'a..b' },
      { policy: '' },
      { container: 'UPPER' },
      { hash: '../../../../etc' },
      { hash: 'zz'.repeat(32) },
      { namespace: 'a'.repeat(300) },
    ];
    for (const h of hostile) {
      const p = { ...good, ...h };
      assert.throws(() => inst.pathFor(p), Error, JSON.stringify(h));
      const r = inst.reconcile([p]);
      assert.equal(r.installed.length, 0, JSON.stringify(h));
      assert.equal(r.failed.length, 1, JSON.stringify(h));
    }
    assert.ok(readdirSync(root).every((n) => n === 'seccomp'));
    assert.deepEqual(inst.listInstalled(), []);
  }));

test('a symlinked directory inside the profile root cannot carry a write elsewhere', () =>
  withRoot((root) => {
    const inst = new ProfileInstaller(root);
    const outside = join(root, 'outside');
    mkdirSync(outside);
    mkdirSync(join(root, 'seccomp', 'pahlevan'), { recursive: true });
    symlinkSync(outside, join(root, 'seccomp', 'pahlevan', 'shop'));
    assert.throws(() => inst.install(profile('nginx', ['read'])), /symlink/);
    assert.deepEqual(readdirSync(outside), []);
  }));

test('reconcile installs the wanted set and removes what no policy references any more', () =>
  withRoot((root) => {
    const inst = new ProfileInstaller(root);
    const v1 = profile('nginx', ['read']);
    const v2 = profile('nginx', ['read', 'write']);
    const other = profile('redis', ['read', 'close'], 'cache', 'db');
    let r = inst.reconcile([v1, other]);
    assert.deepEqual(r.installed, [v1.hash, other.hash].sort());
    // leftover temp file from a crash mid-write
    writeFileSync(join(root, 'seccomp', 'pahlevan', 'shop', 'web', '.tmp-1-x'), 'half');
    r = inst.reconcile([v2]);
    assert.deepEqual(r.installed, [v2.hash]);
    assert.deepEqual(r.removed, [
      `pahlevan/db/cache/redis-${other.hash.slice(0, 16)}.json`,
      `pahlevan/shop/web/.tmp-1-x`,
      `pahlevan/shop/web/nginx-${v1.hash.slice(0, 16)}.json`,
    ]);
    assert.ok(!existsSync(join(root, 'seccomp', 'pahlevan', 'db')), 'empty directories are removed');
    assert.deepEqual(inst.listInstalled(), [v2.hash.slice(0, 16)]);
    // files outside pahlevan/ are never touched
    writeFileSync(join(root, 'seccomp', 'mine.json'), '{}');
    inst.reconcile([]);
    assert.ok(existsSync(join(root, 'seccomp', 'mine.json')));
    assert.ok(existsSync(join(root, 'seccomp', 'pahlevan')));
  }));

test('reinstalling identical content is a no-op; a corrupted file is rewritten', () =>
  withRoot((root) => {
    const inst = new ProfileInstaller(root);
    const p = profile('nginx', ['read']);
    const path = inst.install(p);
    writeFileSync(path, '{"truncated');
    inst.install(p);
    assert.equal(readFileSync(path, 'utf8'), p.content);
  }));
