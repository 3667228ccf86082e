// The learner on the real kernel with real runc and crun: record workloads, then prove the generated
// profiles by starting each workload 20 times under them with each runtime, comparing with unconfined
// runs; never-made syscalls get EPERM; concurrent recordings stay apart; a restarted agent loses nothing.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { OciSeccompProfile } from '../../api/seccomp.js';
import { cgroup2Root, runContainer, startContainer, type Runtime } from '../../agent/container.js';
import { Learner, cgroupIdOf, type FileEvent } from '../../agent/learner.js';
import { buildSeccompProfile } from '../../agent/profile.js';
import { startRecording, type Behaviour, type RecordResult } from '../../agent/recorder.js';
import { syscallNumber } from '../../agent/syscall-table.js';
import {
  BPF_OUT,
  REPO_ROOT,
  freePort,
  httpGet,
  requireKernelTestPrerequisites,
  waitForPort,
} from '../helpers/kernel.js';

const RUNS = 20;
const RUNTIMES: Runtime[] = ['runc', 'crun'];
const LOOP = `${BPF_OUT}syscall-loop`;
const pinDir = `/sys/fs/bpf/pahlevan-test-learner-${process.pid}`;
let learner: Learner;

interface Workload {
  name: string;
  command: (port: number) => string[];
  /** Servers: drives traffic and returns the responses; batch workloads: undefined (stdout is compared). */
  drive?: (port: number) => Promise<string>;
}

/** Runs a workload once in a container (optionally under a profile) and returns what it produced. */
async function runOnce(
  runtime: Runtime,
  w: Workload,
  seccomp?: OciSeccompProfile,
): Promise<{ output: string; code: number | null }> {
  const port = await freePort();
  if (!w.drive) {
    const r = await runContainer({ runtime, command: w.command(port), ...(seccomp ? { seccomp } : {}) });
    return { output: r.stdout, code: r.code };
  }
  const c = await startContainer({ runtime, command: w.command(port), ...(seccomp ? { seccomp } : {}) });
  let stderr = '';
  c.stdout?.resume();
  c.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    await Promise.race([
      waitForPort(port),
      c.exited.then((e) => {
        throw new Error(`${w.name} exited (${e.code ?? e.signal}) before serving: ${stderr.slice(-500)}`);
      }),
    ]);
    const output = await w.drive(port);
    return { output, code: 0 };
  } finally {
    await c.stop('SIGKILL', 2000); // servers run as PID 1, which ignores SIGTERM without a handler
    await c.cleanup();
  }
}

async function record(runtime: Runtime, w: Workload, portableTo: Runtime[] = []): Promise<RecordResult> {
  const port = await freePort();
  const rec = await startRecording({ learner, runtime, command: w.command(port), portableTo });
  rec.container.stdout?.resume();
  rec.container.stderr?.resume();
  if (w.drive) {
    await waitForPort(port);
    await w.drive(port);
    const result = await rec.stop('SIGKILL');
    // The server's ports are learned: it bound and listened on its port and accepted connections there.
    // Accepted connections carry the peer's address (our requests come from 127.0.0.1).
    for (const op of ['bind', 'listen', 'accept'])
      assert.ok(
        result.behaviour.network.some(
          (n) =>
            n.op === op &&
            n.port === port &&
            n.protocol === 'tcp' &&
            (op !== 'accept' || n.address === '127.0.0.1'),
        ),
        `${w.name}: no ${op} on tcp/${port} in ${JSON.stringify(result.behaviour.network)}`,
      );
    return result;
  }
  return rec.done;
}

/**
 * Records the workload once (with recordWith) for both runtimes, then starts it RUNS times under the
 * profile with runc and with crun; every start must succeed with the unconfined output.
 */
async function proveProfile(w: Workload, recordWith: Runtime): Promise<void> {
  const recorded = await record(recordWith, w, RUNTIMES);
  assert.ok(recorded.syscalls.length > 10, `${w.name}: only ${recorded.syscalls.length} syscalls learned`);
  for (const runtime of RUNTIMES) {
    const unconfined = await runOnce(runtime, w);
    assert.equal(unconfined.code, 0, `${w.name} fails unconfined under ${runtime}`);
    const failures: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      try {
        const confined = await runOnce(runtime, w, recorded.profile);
        if (confined.code !== 0 || confined.output !== unconfined.output)
          failures.push(
            `run ${i}: exit ${confined.code}, output ${JSON.stringify(confined.output.slice(0, 200))}`,
          );
      } catch (err) {
        failures.push(`run ${i}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(
      failures,
      [],
      `${w.name} recorded with ${recordWith}, run under ${runtime} (${RUNS} starts)`,
    );
  }
}

const shellScript: Workload = {
  name: 'busybox shell script',
  command: () => [
    'busybox',
    'sh',
    '-c',
    'for i in 1 2 3; do echo "line $i"; done; head -1 /etc/os-release; ls /usr | sort | head -3; ' +
      'echo data > /tmp/f; cat /tmp/f; wc -c < /etc/hostname > /dev/null; echo done',
  ],
};

function pythonExecutable(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
}

async function fewRequests(port: number, paths: string[]): Promise<string> {
  const out: string[] = [];
  for (const p of paths) out.push(await httpGet(port, p));
  return out.join('\n---\n');
}

before(async () => {
  requireKernelTestPrerequisites({ binaries: ['python3', 'node'] });
  learner = await Learner.start({ pinDir });
});

after(async () => {
  await learner?.stop();
  Learner.removePins(pinDir);
});

describe('a recorded profile starts reliably under runc and crun and matches unconfined output', () => {
  it('busybox shell script', async () => {
    await proveProfile(shellScript, 'runc');
  });

  it('python3 -m http.server serving a few requests', async () => {
    const python = pythonExecutable();
    await proveProfile(
      {
        name: 'python http.server',
        command: (port) => [
          python,
          '-m',
          'http.server',
          String(port),
          '--bind',
          '127.0.0.1',
          '--directory',
          '/etc',
        ],
        drive: (port) => fewRequests(port, ['/', '/hostname', '/missing-file']),
      },
      'crun',
    );
  });

  it('Node HTTP server', async () => {
    await proveProfile(
      {
        name: 'node http server',
        command: (port) => [
          process.execPath,
          '-e',
          `require('http').createServer((q, s) => s.end('node ' + q.method + ' ' + q.url)).listen(${port}, '127.0.0.1')`,
        ],
        drive: (port) => fewRequests(port, ['/', '/a', '/b?c=d']),
      },
      'runc',
    );
  });
});

describe("the runtime's setup before it installs the filter", () => {
  // Syscalls the runtimes make while they set the container up, which busybox never makes.
  const SETUP = ['mount', 'pivot_root', 'umount2', 'sethostname', 'seccomp'];
  for (const runtime of RUNTIMES) {
    it(`is learned from the container's cgroup without the seccomp gate, and kept out with it (${runtime})`, async () => {
      const command = ['busybox', 'true'];
      const ungated = await (
        await startRecording({ learner, runtime, command, learnRuntimeSetup: true, portableTo: [] })
      ).done;
      const gated = await (await startRecording({ learner, runtime, command, portableTo: [] })).done;
      const setupSeen = SETUP.filter((s) => ungated.syscalls.includes(s));
      assert.ok(
        setupSeen.length >= 3,
        `the ${runtime} setup was not visible in its cgroup: ${ungated.syscalls.join(' ')}`,
      );
      assert.deepEqual(
        SETUP.filter((s) => gated.syscalls.includes(s)),
        [],
        `runtime setup leaked into the profile`,
      );
      // What the runtime does after the filter is in: execve of the command, at least.
      assert.ok(gated.syscalls.includes('execve'));
    });
  }
});

describe('a syscall the workload never made', () => {
  for (const runtime of RUNTIMES) {
    it(`fails with EPERM under the ${runtime} profile (unshare, ptrace, keyctl)`, async () => {
      const recorded = await record(runtime, { name: 'getppid', command: () => [LOOP, 'getppid', '1'] });
      for (const name of ['unshare', 'ptrace', 'keyctl']) {
        assert.ok(
          !recorded.syscalls.includes(name),
          `${name} was learned although the workload never made it`,
        );
        const nr = syscallNumber(name);
        const probe: Workload = { name, command: () => [LOOP, `nr=${nr}`, '1'] };
        const unconfined = await runOnce(runtime, probe);
        assert.doesNotMatch(unconfined.output, /errno=1\b/, `${name} is already EPERM unconfined`);
        const confined = await runOnce(runtime, probe, recorded.profile);
        assert.match(confined.output, /ret=-1 errno=1\n/, `${name} under the profile: ${confined.output}`);
      }
    });
  }
});

describe('concurrent recordings', () => {
  it('two containers recorded at the same time get separate profiles; host processes appear in neither', async () => {
    const sysinfo = syscallNumber('sysinfo')!;
    const getrusage = syscallNumber('getrusage')!;
    const getcpu = syscallNumber('getcpu')!;
    const dir = mkdtempSync('/tmp/pvt-concurrent-');
    try {
      writeFileSync(`${dir}/a`, 'a');
      writeFileSync(`${dir}/b`, 'b');
      // Both containers sleep, so the recordings overlap; each makes one syscall and opens one file.
      const script = (nr: number, file: string): string[] => [
        'busybox',
        'sh',
        '-c',
        `${LOOP} nr=${nr} 1; cat ${file}; sleep 1`,
      ];
      const mounts = [{ destination: dir, type: 'bind', source: dir, options: ['rbind', 'ro'] }];
      const [recA, recB] = await Promise.all([
        startRecording({
          learner,
          runtime: 'runc',
          command: script(sysinfo, `${dir}/a`),
          mounts,
          portableTo: [],
        }),
        startRecording({
          learner,
          runtime: 'crun',
          command: script(getrusage, `${dir}/b`),
          mounts,
          portableTo: [],
        }),
      ]);
      for (const r of [recA, recB]) {
        r.container.stdout?.resume();
        r.container.stderr?.resume();
      }
      // Meanwhile on the host, under a seccomp filter too (so only the cgroup tells them apart):
      const host = spawnSync(LOOP, [`nr=${getcpu}`, '100', '--seccomp'], { encoding: 'utf8' });
      assert.equal(host.status, 0, host.stderr);
      spawnSync(LOOP, ['openat', '10', '--seccomp']);
      const [a, b] = await Promise.all([recA.done, recB.done]);
      assert.notEqual(a.cgroupId, b.cgroupId);
      assert.ok(
        a.syscalls.includes('sysinfo') && !a.syscalls.includes('getrusage'),
        'A has its own syscall only',
      );
      assert.ok(
        b.syscalls.includes('getrusage') && !b.syscalls.includes('sysinfo'),
        'B has its own syscall only',
      );
      const files = (r: RecordResult): string[] => r.behaviour.files.map((f) => f.path);
      assert.ok(files(a).includes(`${dir}/a`) && !files(a).includes(`${dir}/b`), 'A opened only a');
      assert.ok(files(b).includes(`${dir}/b`) && !files(b).includes(`${dir}/a`), 'B opened only b');
      for (const r of [a, b]) {
        assert.ok(!r.syscalls.includes('getcpu'), 'a host syscall leaked into a container profile');
        assert.ok(!files(r).includes('/nonexistent-pahlevan-bench'), 'a host file leaked into a container');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('watch slots', () => {
  it('a cgroup whose direct-mapped slot is taken is learned through the overflow hash', async () => {
    const { root } = cgroup2Root();
    const dir = `${root}/pvt-learner-slot-${process.pid}`;
    mkdirSync(dir);
    const id = cgroupIdOf(dir);
    const squatter = id + 8192n; // same slot (cgid % 8192), watched first
    try {
      await learner.watch(squatter);
      await learner.watch(id, { requireSeccomp: true });
      const sysinfo = syscallNumber('sysinfo')!;
      const r = spawnSync('sh', [
        '-c',
        `echo $$ > ${dir}/cgroup.procs && exec ${LOOP} nr=${sysinfo} 1 --seccomp`,
      ]);
      assert.equal(r.status, 0);
      assert.ok((await learner.syscallNames(id)).includes('sysinfo'), 'learned through the hash');
      assert.deepEqual(await learner.syscallNames(squatter), [], 'the squatter learned nothing');
      const learned = await learner.unwatch(id);
      assert.ok(learned.includes(sysinfo));
      assert.deepEqual(await learner.syscallNames(id), []);
    } finally {
      await learner.forget(squatter);
      await learner.forget(id);
      rmdirSync(dir);
    }
  });
});

describe('agent restart', () => {
  it('an agent killed and restarted mid-recording loses nothing learned', async () => {
    const restartPin = `/sys/fs/bpf/pahlevan-test-restart-${process.pid}`;
    const sysinfo = syscallNumber('sysinfo')!;
    let first: Learner | undefined = await Learner.start({ pinDir: restartPin, pinLinks: true });
    let second: Learner | undefined;
    try {
      const seen = new Promise<void>((resolve) =>
        first!.on('event', (e) => ((e as FileEvent).path === '/etc/hostname' ? resolve() : undefined)),
      );
      const learnerBefore = first;
      const c = await startContainer({
        runtime: 'runc',
        seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] },
        command: [
          'busybox',
          'sh',
          '-c',
          `cat /etc/hostname; sleep 1; cat /etc/passwd; ${LOOP} nr=${sysinfo} 1`,
        ],
        beforeStart: ({ id }) => learnerBefore.watch(id, { requireSeccomp: true }),
      });
      c.stdout?.resume();
      try {
        await seen;
        // The agent dies (SIGKILL: no cleanup) while the container keeps running.
        await first.client.kill('SIGKILL');
        first = undefined;
        const exit = await c.exited;
        assert.equal(exit.code, 0);
        // Phase 2 ran while no agent was up: the pinned links kept learning into the pinned maps.
        second = await Learner.start({ pinDir: restartPin, pinLinks: true });
        assert.deepEqual(second.watched(), [c.cgroupId], 'the watched set survives');
        const syscalls = await second.syscallNames(c.cgroupId);
        for (const s of ['execve', 'openat', 'sysinfo', 'exit_group'])
          assert.ok(syscalls.includes(s), `${s} missing after restart: ${syscalls.join(' ')}`);
        const files = (await second.observations(c.cgroupId)).flatMap((o) =>
          o.kind === 'file' ? [o.path] : [],
        );
        assert.ok(files.includes('/etc/hostname'), 'learned before the kill');
        assert.ok(files.includes('/etc/passwd'), 'learned while the agent was down');
        const profile = buildSeccompProfile(syscalls, { arch: second.arch, runtime: 'runc' });
        assert.ok(profile.syscalls[0]!.names.includes('sysinfo'));
      } finally {
        await c.cleanup();
      }
    } finally {
      await first?.stop();
      await second?.stop();
      Learner.removePins(restartPin);
    }
  });
});

describe('pahlevan record / run (CLI)', () => {
  const cli = (args: string[], opts: { uid?: number; env?: NodeJS.ProcessEnv } = {}) =>
    spawnSync(process.execPath, [`${REPO_ROOT}bin/pahlevan.js`, ...args], {
      encoding: 'utf8',
      cwd: '/tmp',
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
      ...(opts.env ? { env: opts.env } : {}),
    });

  it('records into DIR/seccomp.json + DIR/behaviour.json and runs under the profile', () => {
    const dir = mkdtempSync('/tmp/pvt-cli-record-');
    try {
      const script = 'echo hello from $(cat /etc/hostname | wc -l) > /tmp/out; cat /tmp/out';
      const rec = cli(['record', '--runtime', 'crun', '-o', dir, '--', 'busybox', 'sh', '-c', script]);
      assert.equal(rec.status, 0, rec.stderr);
      assert.equal(rec.stdout, 'hello from 1\n');
      assert.match(rec.stderr, /syscalls: \d+ allowed/);
      const profile = OciSeccompProfile.parse(JSON.parse(readFileSync(`${dir}/seccomp.json`, 'utf8')));
      assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO');
      const behaviour = JSON.parse(readFileSync(`${dir}/behaviour.json`, 'utf8')) as Behaviour;
      assert.ok(behaviour.execs.some((e) => e.path.endsWith('busybox')));
      const out = behaviour.files.find((f) => f.path === '/tmp/out');
      assert.ok(out?.write && out.count >= 1, 'the written file is learned with its intent');
      // The seccomp layer is what this file proves (the enforcer's layers have their own tests).
      const run = cli([
        'run',
        '--runtime',
        'crun',
        '--layers',
        'syscalls',
        '--profile',
        dir,
        '--',
        'busybox',
        'sh',
        '-c',
        script,
      ]);
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout, 'hello from 1\n');
      // A dynamically linked program needs mmap, which the static busybox never made: it cannot start.
      const denied = cli([
        'run',
        '--runtime',
        'crun',
        '--layers',
        'syscalls',
        '--profile',
        dir,
        '--',
        LOOP,
        'getppid',
        '1',
      ]);
      assert.notEqual(denied.status, 0, 'a different program ran under the busybox profile');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails clearly: not root, runtime missing, command not found', () => {
    const notRoot = cli(['record', '-o', '/tmp/pvt-never', '--', 'true'], { uid: 65534 });
    assert.equal(notRoot.status, 1);
    assert.match(notRoot.stderr, /must run as root/);
    const noRuntime = cli(['record', '--runtime', 'runc', '-o', '/tmp/pvt-never', '--', 'true'], {
      env: { ...process.env, PATH: '/nonexistent' },
    });
    assert.equal(noRuntime.status, 1);
    assert.match(noRuntime.stderr, /container runtime runc not found: install the Debian package runc/);
    const noCommand = cli(['record', '-o', '/tmp/pvt-never', '--', 'no-such-command-pvt']);
    assert.equal(noCommand.status, 1);
    assert.match(noCommand.stderr, /command not found .*no-such-command-pvt/);
  });
});
