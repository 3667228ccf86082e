// Thin shells over @kubernetes/client-node for the agent and the CLI: kubeconfig loading, custom object
// access for our kinds, and list+watch caches that restart themselves after errors.
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  ListWatch,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type KubernetesObject,
  type KubernetesListObject,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '../../api/policy.js';
import type { ObservationApi } from './observations.js';
import { OBSERVATION_PLURAL, type PahlevanNodeObservation } from '../../api/observation.js';

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(
      `cannot load kubeconfig ${path ?? '(default)'}: ${(err as Error).message}. Pass --kubeconfig FILE or set KUBECONFIG.`,
    );
  }
  if (!kc.getCurrentCluster())
    throw new Error(
      'no Kubernetes cluster configured: pass --kubeconfig FILE, set KUBECONFIG, or run inside a cluster',
    );
  return kc;
}

/** HTTP status of a client-node error (ApiException.code), or undefined for transport errors. */
export function statusCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown };
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** A message for humans: the API's Status message when there is one. */
export function errorMessage(err: unknown): string {
  const e = err as { body?: unknown; message?: string };
  if (typeof e?.body === 'string') {
    try {
      const status = JSON.parse(e.body) as { message?: string };
      if (status.message) return status.message;
    } catch {
      // not JSON
    }
  } else if (e?.body && typeof (e.body as { message?: unknown }).message === 'string')
    return (e.body as { message: string }).message;
  return e?.message ?? String(err);
}

export class PahlevanObjects {
  readonly custom: CustomObjectsApi;
  readonly core: CoreV1Api;

  constructor(readonly kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async get<T>(plural: string, namespace: string, name: string): Promise<T | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural,
        name,
      })) as T;
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  async list<T>(plural: string, namespace?: string, labelSelector?: string): Promise<T[]> {
    const res = (
      namespace
        ? await this.custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural,
            ...(labelSelector ? { labelSelector } : {}),
          })
        : await this.custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural,
            ...(labelSelector ? { labelSelector } : {}),
          })
    ) as { items?: T[] };
    return res.items ?? [];
  }

  async create<T extends KubernetesObject>(plural: string, object: T): Promise<T> {
    return (await this.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: object.metadata!.namespace!,
      plural,
      body: object,
    })) as T;
  }

  async replace<T extends KubernetesObject>(plural: string, object: T): Promise<T> {
    return (await this.custom.replaceNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: object.metadata!.namespace!,
      plural,
      name: object.metadata!.name!,
      body: object,
    })) as T;
  }

  async mergePatch<T>(plural: string, namespace: string, name: string, patch: unknown): Promise<T> {
    return (await this.custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural, name, body: patch },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as T;
  }

  async delete(plural: string, namespace: string, name: string): Promise<void> {
    await this.custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      name,
    });
  }

  observationApi(): ObservationApi {
    return {
      get: (namespace, name) => this.get<PahlevanNodeObservation>(OBSERVATION_PLURAL, namespace, name),
      create: (object) => this.create(OBSERVATION_PLURAL, object as unknown as KubernetesObject) as never,
      replace: (object) => this.replace(OBSERVATION_PLURAL, object as unknown as KubernetesObject) as never,
    };
  }
}

export interface CacheHandlers<T> {
  /** Called after every change (and after each relist) with the full current list. */
  onSync: (objects: T[]) => void;
  onError?: (err: unknown, retryInMs: number) => void;
}

/**
 * A list+watch cache (client-node's ListWatch, which relists on 410 Gone) that restarts itself with
 * exponential back-off when the API server is unreachable.
 */
export class WatchedCache<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private stopped = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  /** True once a list has completed. */
  synced = false;

  constructor(
    kc: KubeConfig,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    private readonly handlers: CacheHandlers<T>,
    options: { labelSelector?: string; fieldSelector?: string; maxBackoffMs?: number } = {},
  ) {
    // After each (re)list, report the full list once ListWatch has applied it, even when nothing changed:
    // the agent must know a cache has loaded before it deletes anything not in it.
    const listAndSync = async (): Promise<KubernetesListObject<T>> => {
      const result = await list();
      setImmediate(() => {
        this.synced = true;
        this.failures = 0;
        this.handlers.onSync([...this.lw.list()]);
      });
      return result;
    };
    this.lw = new ListWatch<T>(
      path,
      new Watch(kc),
      listAndSync,
      false,
      options.labelSelector,
      options.fieldSelector,
    );
    const sync = (): void => {
      this.failures = 0;
      this.handlers.onSync([...this.lw.list()]);
    };
    this.lw.on('add', sync);
    this.lw.on('update', sync);
    this.lw.on('delete', sync);
    this.lw.on('error', (err: unknown) => {
      if (this.stopped) return;
      this.failures++;
      const delayMs = Math.min(options.maxBackoffMs ?? 10_000, 200 * 2 ** (this.failures - 1));
      this.handlers.onError?.(err, delayMs);
      this.timer = setTimeout(() => void this.start(), delayMs);
    });
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.lw.start().catch((err: unknown) => this.handlers.onError?.(err, 0));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.lw.stop();
  }

  list(): T[] {
    return [...this.lw.list()];
  }
}

export function customObjectPath(plural: string): string {
  return `/apis/${GROUP}/${VERSION}/${plural}`;
}
