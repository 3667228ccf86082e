// The in-memory PahlevanPolicy cache the admission path reads. Fed either by a state file (no cluster:
// YAML or JSON list of policies with status, reloaded on change) or by a watch of the cluster. The admission
// path itself never calls the API server.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { PahlevanPolicy, GROUP, VERSION, POLICY_PLURAL, formatIssue } from '../api/policy.js';
import type { PahlevanPolicy as Policy } from '../api/policy.js';
import type { KubernetesObject } from '@kubernetes/client-node';

export interface PolicySource {
  /** All cached policies (a snapshot array; do not mutate). */
  policies(): readonly Policy[];
  /** True once the first full load/list has completed. */
  ready(): boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface LoadResult {
  policies: Policy[];
  errors: string[];
}

/** Pure: a YAML/JSON document (list, `kind: List` with items, or one object) to validated policies. */
export function parsePolicyDocument(text: string): LoadResult {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new Error(`not YAML or JSON: ${(err as Error).message}`);
  }
  const items: unknown[] = Array.isArray(doc)
    ? doc
    : doc && typeof doc === 'object' && Array.isArray((doc as { items?: unknown }).items)
      ? (doc as { items: unknown[] }).items
      : doc == null
        ? []
        : [doc];
  const policies: Policy[] = [];
  const errors: string[] = [];
  items.forEach((item, i) => {
    const result = PahlevanPolicy.safeParse(item);
    if (result.success) {
      if (!result.data.metadata.namespace)
        errors.push(`item ${i}: metadata.namespace is required in a state file`);
      else policies.push(result.data);
    } else errors.push(`item ${i}: ${result.error.issues.map(formatIssue).join('; ')}`);
  });
  return { policies, errors };
}

export interface SourceLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** Policies from a file; a broken edit keeps the last good content (never loses the cache). */
export class StateFilePolicySource implements PolicySource {
  private cached: readonly Policy[] = [];
  private loaded = false;
  private readonly listener = () => this.reload();

  constructor(
    private readonly path: string,
    private readonly log: SourceLogger,
    private readonly pollMs = 500,
  ) {}

  policies(): readonly Policy[] {
    return this.cached;
  }
  ready(): boolean {
    return this.loaded;
  }

  async start(): Promise<void> {
    // The first load must succeed: a typo in the path should stop the command with a clear message.
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the state file ${this.path}: ${(err as Error).message}`);
    }
    let result: LoadResult;
    try {
      result = parsePolicyDocument(text);
    } catch (err) {
      throw new Error(`state file ${this.path}: ${(err as Error).message}`);
    }
    this.apply(result);
    watchFile(this.path, { interval: this.pollMs, persistent: false }, this.listener);
  }

  async stop(): Promise<void> {
    unwatchFile(this.path, this.listener);
  }

  reload(): boolean {
    try {
      this.apply(parsePolicyDocument(readFileSync(this.path, 'utf8')));
      return true;
    } catch (err) {
      this.log.error(
        `state file ${this.path}: ${(err as Error).message}; keeping the previous ${this.cached.length} policies`,
      );
      return false;
    }
  }

  private apply(result: LoadResult): void {
    for (const e of result.errors) this.log.warn(`state file ${this.path}: skipped ${e}`);
    this.cached = Object.freeze(result.policies);
    this.loaded = true;
    this.log.info(`state file ${this.path}: ${result.policies.length} policies`);
  }
}

/** Policies from the cluster through an informer (list + watch, re-listing after errors). */
export class ClusterPolicySource implements PolicySource {
  private readonly byKey = new Map<string, Policy>();
  private snapshot: readonly Policy[] = [];
  private synced = false;
  private informer: { start(): Promise<void>; stop(): Promise<void> } | undefined;
  private stopped = false;

  constructor(
    private readonly log: SourceLogger,
    private readonly options: { kubeconfigPath?: string; retryMs?: number } = {},
  ) {}

  policies(): readonly Policy[] {
    return this.snapshot;
  }
  ready(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    const k8s = await import('@kubernetes/client-node');
    const kc = new k8s.KubeConfig();
    if (this.options.kubeconfigPath) kc.loadFromFile(this.options.kubeconfigPath);
    else kc.loadFromDefault(); // in-cluster ServiceAccount, or KUBECONFIG / ~/.kube/config
    const api = kc.makeApiClient(k8s.CustomObjectsApi);
    const path = `/apis/${GROUP}/${VERSION}/${POLICY_PLURAL}`;
    // informer.start() resolves even when the list failed (it reports through 'error'): track success here
    let listed = false;
    const startInformer = async () => {
      await informer.start();
      if (listed) this.synced = true;
    };
    const informer = k8s.makeInformer<KubernetesObject>(kc, path, async () => {
      // the informer diffs each (re)list against its own cache and emits add/update/delete for the changes
      const list = await api.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: POLICY_PLURAL,
      });
      listed = true;
      return list;
    });
    const upsert = (obj: KubernetesObject) => {
      const parsed = PahlevanPolicy.safeParse(obj);
      const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
      if (parsed.success) this.byKey.set(key, parsed.data);
      else {
        this.byKey.delete(key);
        this.log.warn(`policy ${key} ignored: ${parsed.error.issues.map(formatIssue).join('; ')}`);
      }
      this.publish();
    };
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj) => {
      this.byKey.delete(`${obj.metadata?.namespace}/${obj.metadata?.name}`);
      this.publish();
    });
    informer.on('error', (err: unknown) => {
      if (this.stopped) return; // stop() aborts the watch, which reports as an error
      const retryMs = this.options.retryMs ?? 5000;
      this.log.error(`policy watch failed: ${String(err)}; restarting in ${retryMs} ms`);
      setTimeout(() => {
        if (!this.stopped)
          startInformer().catch((e: unknown) => this.log.error(`policy watch restart: ${String(e)}`));
      }, retryMs).unref();
    });
    this.informer = informer;
    await startInformer();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer?.stop();
  }

  private publish(): void {
    this.snapshot = Object.freeze([...this.byKey.values()]);
  }
}

/** A fixed list, for tests and benchmarks. */
export class StaticPolicySource implements PolicySource {
  constructor(private list: readonly Policy[]) {}
  policies(): readonly Policy[] {
    return this.list;
  }
  set(list: readonly Policy[]): void {
    this.list = list;
  }
  ready(): boolean {
    return true;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}
