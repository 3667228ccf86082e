// A kubelet stand-in for end-to-end tests: watches the pods bound to its node on the stand-in API server,
// runs each container as a real runc container (64-hex container ID, like CRI), resolves Localhost seccomp
// profiles from its own kubelet root exactly as the kubelet does (missing file -> CreateContainerError),
// and reports containerStatuses. The pod's image is not pulled: containers run the host's binaries.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1ContainerStatus, type V1Pod } from '@kubernetes/client-node';
import { startContainer, type Container } from '../../agent/container.js';
import type { OciSeccompProfile } from '../../api/seccomp.js';
import { WatchedCache } from '../../agent/cluster/kube.js';

export interface RunningContainer {
  pod: string;
  namespace: string;
  name: string;
  containerId: string;
  container: Container;
  seccomp?: string;
  output: string;
}

export class SimKubelet {
  private readonly core: CoreV1Api;
  private readonly cache: WatchedCache<V1Pod>;
  private readonly started = new Set<string>();
  readonly running: RunningContainer[] = [];
  private readonly work: Promise<void>[] = [];
  private stopped = false;

  constructor(
    kc: KubeConfig,
    readonly node: string,
    readonly kubeletRoot: string,
    /** Called after a container's cgroup exists and before it starts (the agent's runtime hook). */
    private readonly beforeStart: () => Promise<void> = async () => {},
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    const fieldSelector = `spec.nodeName=${node}`;
    this.cache = new WatchedCache<V1Pod>(
      kc,
      '/api/v1/pods',
      () => this.core.listPodForAllNamespaces({ fieldSelector }),
      { onSync: (pods) => this.onPods(pods) },
      { fieldSelector, maxBackoffMs: 500 },
    );
  }

  start(): Promise<void> {
    return this.cache.start();
  }

  private onPods(pods: V1Pod[]): void {
    for (const pod of pods) {
      const uid = pod.metadata?.uid;
      if (!uid || this.started.has(uid) || this.stopped) continue;
      this.started.add(uid);
      this.work.push(
        this.runPod(pod).catch((err: Error) => console.error(`sim-kubelet ${this.node}: ${err.message}`)),
      );
    }
  }

  private seccompFor(
    pod: V1Pod,
    index: number,
  ): { profile?: OciSeccompProfile; path?: string; error?: string } {
    const c = pod.spec!.containers[index]!;
    const sp = c.securityContext?.seccompProfile ?? pod.spec?.securityContext?.seccompProfile;
    if (!sp || sp.type !== 'Localhost') return {};
    const path = join(this.kubeletRoot, 'seccomp', sp.localhostProfile ?? '');
    try {
      return {
        profile: JSON.parse(readFileSync(path, 'utf8')) as OciSeccompProfile,
        path: sp.localhostProfile!,
      };
    } catch (err) {
      return { error: `failed to load seccomp profile ${path}: ${(err as Error).message}` };
    }
  }

  private async setStatuses(pod: V1Pod, statuses: V1ContainerStatus[], phase: string): Promise<void> {
    const name = pod.metadata!.name!;
    const namespace = pod.metadata!.namespace!;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const current = await this.core.readNamespacedPod({ name, namespace });
        await this.core.replaceNamespacedPodStatus({
          name,
          namespace,
          body: { ...current, status: { ...(current.status ?? {}), phase, containerStatuses: statuses } },
        });
        return;
      } catch (err) {
        if ((err as { code?: number }).code === 404) return;
        if (attempt === 4) throw err;
      }
    }
  }

  private async runPod(pod: V1Pod): Promise<void> {
    const statuses: V1ContainerStatus[] = [];
    const containers = pod.spec!.containers;
    for (let i = 0; i < containers.length; i++) {
      const c = containers[i]!;
      const base = { name: c.name, image: c.image ?? '', imageID: '', ready: false, restartCount: 0 };
      const seccomp = this.seccompFor(pod, i);
      if (seccomp.error) {
        statuses.push({
          ...base,
          state: { waiting: { reason: 'CreateContainerError', message: seccomp.error } },
        });
        continue;
      }
      const containerId = randomBytes(32).toString('hex');
      // hostPath volumes become bind mounts (the only volume kind tests need).
      const mounts = (c.volumeMounts ?? []).flatMap((m) => {
        const hostPath = pod.spec?.volumes?.find((v) => v.name === m.name)?.hostPath?.path;
        return hostPath
          ? [
              {
                destination: m.mountPath,
                type: 'bind',
                source: hostPath,
                options: ['rbind', m.readOnly ? 'ro' : 'rw'],
              },
            ]
          : [];
      });
      const container = await startContainer({
        runtime: 'runc',
        id: containerId,
        command: [...(c.command ?? []), ...(c.args ?? [])],
        mounts,
        ...(seccomp.profile ? { seccomp: seccomp.profile } : {}),
        beforeStart: () => this.beforeStart(),
      });
      const rc: RunningContainer = {
        pod: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        name: c.name,
        containerId,
        container,
        ...(seccomp.path ? { seccomp: seccomp.path } : {}),
        output: '',
      };
      container.stdout?.setEncoding('utf8').on('data', (d: string) => (rc.output += d));
      container.stderr?.setEncoding('utf8').on('data', (d: string) => (rc.output += d));
      this.running.push(rc);
      statuses.push({
        ...base,
        ready: true,
        containerID: `containerd://${containerId}`,
        state: { running: { startedAt: new Date() } },
      });
      void container.exited.then(async (exit) => {
        if (this.stopped) return;
        const idx = statuses.findIndex((s) => s.name === c.name);
        statuses[idx] = {
          ...statuses[idx]!,
          ready: false,
          state: { terminated: { exitCode: exit.code ?? 128, containerID: `containerd://${containerId}` } },
        };
        const allDone = statuses.every((s) => s.state?.terminated || s.state?.waiting);
        await this.setStatuses(pod, [...statuses], allDone ? 'Succeeded' : 'Running').catch(() => {});
      });
    }
    const failed = statuses.some((s) => s.state?.waiting);
    await this.setStatuses(
      pod,
      statuses,
      failed && statuses.every((s) => s.state?.waiting) ? 'Pending' : 'Running',
    );
  }

  containersOf(pod: string): RunningContainer[] {
    return this.running.filter((r) => r.pod === pod);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.cache.stop();
    await Promise.allSettled(this.work);
    await Promise.allSettled(this.running.map((r) => r.container.cleanup()));
  }
}
