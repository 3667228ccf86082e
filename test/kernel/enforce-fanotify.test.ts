// fanotify.c's fast path (an ignore mark on an inode every watched container may read) must never let a
// container read what its own policy does not allow. Two cgroups, processes in mount namespaces of their
// own (their opens go through mounts the host does not use, like a container's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroup2Root } from '../../agent/container.js';
import { Enforcer } from '../../agent/enforcer.js';
import { layerModes } from '../../cli/enforce-run.js';

function catIn(cgroupDir: string, file: string): boolean {
  const r = spawnSync(
    'sh',
    ['-c', `echo $$ > ${cgroupDir}/cgroup.procs && exec unshare -m /bin/busybox cat ${file}`],
    {
      encoding: 'utf8',
    },
  );
  return r.status === 0;
}

test('an inode allowed for one container stays denied for another, before and after the fast path kicks in', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvt-fan-'));
  const shared = join(dir, 'shared.txt');
  writeFileSync(shared, 'x\n');
  const base = join(cgroup2Root().root, 'pahlevan');
  const [cgA, cgB] = [join(base, `pvt-fan-a-${process.pid}`), join(base, `pvt-fan-b-${process.pid}`)];
  mkdirSync(cgA, { recursive: true });
  mkdirSync(cgB, { recursive: true });
  const enforcer = await Enforcer.start({
    cgroupAttachDir: base,
    only: ['files', 'execs'],
    forceFanotify: true,
  });
  try {
    assert.equal(
      enforcer.filesMechanism,
      'fanotify',
      enforcer.layers().find((l) => l.layer === 'files')?.reason,
    );
    const policy = (files: string[]) => ({
      modes: layerModes('Enforce', ['files', 'execs']),
      network: { egress: [], ingress: [], allowDNS: true, allowLoopback: true },
      files: files.map((path) => ({ path, subtree: false, reason: 'rule' as const })),
      execs: [{ path: '/bin/busybox', subtree: false, reason: 'rule' as const }],
    });
    const idA = statSync(cgA, { bigint: true }).ino;
    const idB = statSync(cgB, { bigint: true }).ino;
    await enforcer.enforce({ cgroupId: idA, name: 'a' }, policy([shared]));
    for (let i = 0; i < 3; i++) assert.ok(catIn(cgA, shared), 'A may read it (again and again)');
    // Judged: three execs of busybox and only the first open: then the inode's ignore mark answers.
    const [, , judged] = (await enforcer.client.fan('fan_stats', [String(idA)])).split(' ');
    assert.equal(judged, '4');
    // B arrives after A's reads may have put an ignore mark on the inode.
    await enforcer.enforce({ cgroupId: idB, name: 'b' }, policy([]));
    assert.ok(!catIn(cgB, shared), 'B must not');
    assert.ok(catIn(cgA, shared), 'A still may');
    assert.ok(!catIn(cgB, shared), 'B still must not');
    assert.equal((await enforcer.counters(idB)).files, 2n);
    assert.equal((await enforcer.counters(idA)).files, 0n);
    // Monitor for B: allowed and counted; back to Enforce: denied again.
    await enforcer.setModes(idB, { files: 'Monitor' });
    assert.ok(catIn(cgB, shared));
    await enforcer.setModes(idB, { files: 'Enforce' });
    assert.ok(!catIn(cgB, shared));
    assert.equal((await enforcer.counters(idB)).files, 4n);
  } finally {
    await enforcer.stop();
    for (const d of [cgA, cgB]) rmdirSync(d);
    rmSync(dir, { recursive: true, force: true });
  }
});
