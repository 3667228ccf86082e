// `pahlevan agent` as the DaemonSet runs it (a process, real BPF, a kubeconfig file) against the stand-in API
// server: it installs a published profile, acks it, serves clean Prometheus metrics, and stops on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { waitFor } from '../helpers/kube.js';
import { promtoolProblems } from '../helpers/promtool.js';
import { buildProfileSpec, profileObjectName } from '../../api/profile.js';
import type { PahlevanNodeObservation } from '../../api/observation.js';
import { Learner } from '../../agent/learner.js';

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test(
  'pahlevan agent installs and acks profiles, serves metrics, stops cleanly',
  { timeout: 60_000 },
  async () => {
    const api = await FakeApiServer.start();
    const tmp = mkdtempSync(join(tmpdir(), 'pvt-cliagent-'));
    const pinDir = `/sys/fs/bpf/pahlevan-test-cliagent-${process.pid}`;
    const kubeconfig = join(tmp, 'kubeconfig');
    writeFileSync(kubeconfig, api.kubeConfig().exportConfig());
    const metricsPort = await freePort();
    let stderr = '';
    const child = spawn(
      process.execPath,
      [
        CLI,
        'agent',
        '--node=n1',
        `--kubeconfig=${kubeconfig}`,
        `--seccomp-root=${join(tmp, 'seccomp')}`,
        `--state-dir=${join(tmp, 'state')}`,
        `--pin-dir=${pinDir}`,
        `--metrics-port=${metricsPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor(() => stderr.includes('agent started'), 'the agent to start', 20_000).catch(
        (err: Error) => {
          throw new Error(`${err.message}: ${stderr.slice(-2000)}`);
        },
      );
      const kc = api.kubeConfig();
      await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'shop' } } });
      const custom = kc.makeApiClient(CustomObjectsApi);
      await custom.createNamespacedCustomObject({
        group: 'pahlevan.io',
        version: 'v1alpha1',
        namespace: 'shop',
        plural: 'pahlevanpolicies',
        body: {
          apiVersion: 'pahlevan.io/v1alpha1',
          kind: 'PahlevanPolicy',
          metadata: { name: 'web', namespace: 'shop' },
          spec: { selector: { matchLabels: { app: 'web' } } },
        },
      });
      const spec = buildProfileSpec('shop', 'web', 'app', {
        seccomp: {
          defaultAction: 'SCMP_ACT_ERRNO',
          syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
        },
        execs: [],
        files: [],
        ports: [],
        images: ['busybox:1'],
      } as never);
      await custom.createNamespacedCustomObject({
        group: 'pahlevan.io',
        version: 'v1alpha1',
        namespace: 'shop',
        plural: 'pahlevanprofiles',
        body: {
          apiVersion: 'pahlevan.io/v1alpha1',
          kind: 'PahlevanProfile',
          metadata: { name: profileObjectName('web', 'app', spec.hash), namespace: 'shop' },
          spec,
        },
      });
      await waitFor(
        () => existsSync(join(tmp, 'seccomp', spec.localhostProfile)),
        'the profile under --seccomp-root',
      );
      await waitFor(() => {
        const o = api.getObject('pahlevan.io', 'pahlevannodeobservations', 'shop', 'web.n1') as
          PahlevanNodeObservation | undefined;
        return !!o?.spec.installed.some((i) => i.hash === spec.hash);
      }, 'the ack');
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      const text = await res.text();
      assert.equal(res.status, 200);
      assert.match(text, /^pahlevan_agent_profiles_installed 1$/m);
      assert.match(text, /^pahlevan_agent_layer_active\{node="n1",layer="syscalls"\} 1$/m);
      assert.deepEqual(promtoolProblems(text), []);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr.slice(-2000));
    } finally {
      child.kill('SIGKILL');
      await api.stop();
      Learner.removePins(pinDir);
      rmSync(tmp, { recursive: true, force: true });
    }
  },
);
