// BPF-LSM file and exec enforcement, proven in a kernel that has BPF-LSM (Debian's cloud kernel under
// qemu): the object the agent ships, its maps filled by the agent's own plan (agent/enforce-maps.ts).
// Fails (never skips) when qemu, the kernel image or the static helper is missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, buildInitramfs, guestPlan, missingPrerequisites, runGuest } from '../lsm-qemu/harness.js';

test('lsm.bpf.o denies unlearned files and execs per cgroup in a BPF-LSM kernel, switches mode live, counts once', async () => {
  spawnSync('make', ['-s', '-C', `${REPO_ROOT}bpf`, 'static'], { stdio: 'inherit' });
  const missing = missingPrerequisites();
  assert.deepEqual(missing, [], `the LSM proof cannot run: ${missing.join('; ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'pvt-lsm-qemu-'));
  try {
    const plan = guestPlan();
    writeFileSync(join(dir, 'initramfs.gz'), buildInitramfs(plan));
    const { result, console: log } = await runGuest(join(dir, 'initramfs.gz'));
    assert.equal(result.error, undefined, `${result.error}\n${log.slice(-2000)}`);
    assert.match(result.lsms ?? '', /(^|,)bpf(,|$|\s|\[)/, 'bpf must be an active LSM in the guest');
    // Enforce: learned file, file under a generalised subtree and learned exec work; the rest is denied,
    // and only inside the enforced cgroup.
    assert.deepEqual(result.enforce, {
      allowedFile: 1,
      secretFile: 0,
      subtreeFile: 1,
      allowedExec: 1,
      deniedExec: 0,
      secretOutside: 1,
      deniedExecOutside: 1,
    });
    // Monitor (one map write, no reload): everything runs.
    assert.deepEqual(result.monitor, {
      allowedFile: 1,
      secretFile: 1,
      subtreeFile: 1,
      allowedExec: 1,
      deniedExec: 1,
      secretOutside: 1,
      deniedExecOutside: 1,
    });
    assert.deepEqual(result.enforceAgain, result.enforce, 'back to Enforce denies again');
    // One file and one exec violation per phase, each counted once and reported once.
    const [, entry] = (result.counters ?? '').split(' ');
    const value = Buffer.from(entry?.split(':')[1] ?? '', 'hex');
    assert.equal(value.length, 24, `lsm_counters dump: ${result.counters}`);
    assert.equal(value.readBigUInt64LE(0), 3n, 'file violations');
    assert.equal(value.readBigUInt64LE(8), 3n, 'exec violations');
    assert.equal(result.events, 6, 'ring-buffer events');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
