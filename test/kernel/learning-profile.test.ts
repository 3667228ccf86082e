// The learning profile (api/names.ts) on real runtimes: runc and crun accept it (argument conditions, errno
// values, names their libseccomp may not know) and start containers under it, and it is a real filter: what
// the runtime default denies without capabilities (chroot, which the container's CAP_SYS_CHROOT allows) fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runContainer, type Runtime } from '../../agent/container.js';
import { learningProfileContent } from '../../api/attack-surface-data.js';
import type { OciSeccompProfile } from '../../api/seccomp.js';
import { requireKernelTestPrerequisites } from '../helpers/kernel.js';

const SCRIPT =
  '/bin/busybox true && echo started; /bin/busybox chroot / /bin/busybox true 2>/dev/null; echo chroot=$?';

for (const runtime of ['runc', 'crun'] as Runtime[]) {
  test(`${runtime} starts containers under the learning profile, which denies chroot`, async () => {
    requireKernelTestPrerequisites();
    // The file's content exactly as the agent installs it (argument conditions included).
    const learning = JSON.parse(learningProfileContent()) as OciSeccompProfile;
    const command = ['/bin/busybox', 'sh', '-c', SCRIPT];
    const unconfined = await runContainer({ runtime, command });
    assert.equal(unconfined.code, 0, unconfined.stderr);
    assert.match(unconfined.stdout, /chroot=0/, 'without a filter the container may chroot (CAP_SYS_CHROOT)');
    for (let run = 0; run < 3; run++) {
      const r = await runContainer({ runtime, command, seccomp: learning });
      assert.equal(r.code, 0, `run ${run}: ${r.stderr}`);
      assert.match(r.stdout, /started/, `run ${run} starts`);
      assert.match(r.stdout, /chroot=1/, `run ${run}: chroot is denied under the learning profile`);
    }
  });
}
