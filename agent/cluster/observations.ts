// What this node's agent learned, per (policy, container name), and the writer that keeps the node's
// PahlevanNodeObservation objects in step with it.
//
// Learned data is the thing we must never lose: the store is persisted to a local file (atomically) on
// every change before any API write is attempted, so an unreachable API server or an agent restart only
// delays the write. Writes replace the whole spec with the full accumulated state, so they are idempotent:
// repeating one after a timeout or a restart changes nothing. Counts are "distinct container instances
// that showed it", kept exact by remembering which (container ID, item) pairs were already counted, so a
// learner that reports the same first-seen behaviour twice (e.g. after a restart) does not inflate them.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Layer } from '../../api/policy.js';
import { API_VERSION } from '../../api/policy.js';
import {
  OBSERVATION_KIND,
  LABEL_NODE,
  nodeLabelValue,
  observationName,
  type ContainerObservation,
  type ObservationSpec,
  type PahlevanNodeObservation,
  type PortSeen,
} from '../../api/observation.js';
import { LABEL_POLICY } from '../../api/names.js';
import { canonicalJson } from '../../api/profile.js';

/** One piece of first-seen behaviour from the learner. */
export type Behaviour =
  | { kind: 'syscall'; name: string }
  | { kind: 'exec'; path: string }
  | { kind: 'file'; path: string; write: boolean }
  | {
      kind: 'port';
      direction: 'listen' | 'egress';
      protocol: 'TCP' | 'UDP';
      port: number;
      address?: string;
    };

/** Who showed it (from attribution). */
export interface Source {
  policy: { namespace: string; name: string; uid?: string };
  containerName: string;
  containerId: string;
  podName: string;
  image?: string;
}

interface ItemState {
  /** Distinct container instances (IDs) that showed it. */
  count: number;
  pods: string[];
  write?: boolean;
}

interface ContainerState {
  images: string[];
  pods: string[];
  firstSeenAt?: string;
  lastSeenAt?: string;
  syscalls: Record<string, ItemState>;
  execs: Record<string, ItemState>;
  files: Record<string, ItemState>;
  ports: Record<string, ItemState & { port: Omit<PortSeen, 'count' | 'pods'> }>;
}

interface PolicyState {
  namespace: string;
  name: string;
  uid?: string;
  containers: Record<string, ContainerState>;
  /** `<containerId>|<item key>` pairs already counted. */
  counted: Record<string, true>;
  violations: { total: number; byLayer: Record<string, number>; denied: Record<string, DeniedState> };
  installed: { hash: string; profileName?: string; installedAt?: string }[];
  /** Bumped on every change; the writer compares it with writtenVersion. */
  version: number;
  writtenVersion: number;
}

interface DeniedState {
  container: string;
  layer: Layer;
  what: string;
  count: number;
  lastAt?: string;
}

interface StoreFile {
  formatVersion: 1;
  node: string;
  startedAt: string;
  layers: ObservationSpec['layers'];
  policies: Record<string, PolicyState>;
}

const MAX_DENIED = 50;

function insertSorted(list: string[], value: string): boolean {
  if (list.includes(value)) return false;
  list.push(value);
  list.sort();
  return true;
}

function itemKey(b: Behaviour): [bucket: 'syscalls' | 'execs' | 'files' | 'ports', key: string] {
  switch (b.kind) {
    case 'syscall':
      return ['syscalls', b.name];
    case 'exec':
      return ['execs', b.path];
    case 'file':
      return ['files', b.path];
    case 'port':
      return ['ports', `${b.direction}/${b.protocol}/${b.port}/${b.address ?? ''}`];
  }
}

export function policyKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The accumulated observations of one node, persisted to `<stateDir>/observations.json`. */
export class ObservationStore {
  private state: StoreFile;
  private readonly file: string | undefined;
  private readonly listeners: (() => void)[] = [];
  private readonly newItemListeners: ((kind: Behaviour['kind']) => void)[] = [];

  constructor(
    readonly node: string,
    stateDir?: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.file = stateDir ? join(stateDir, 'observations.json') : undefined;
    this.state = this.load() ?? {
      formatVersion: 1,
      node,
      startedAt: this.now().toISOString(),
      layers: { active: [], missing: [] },
      policies: {},
    };
  }

  /** Called for every item (syscall, exec, file, port) seen for the first time in a container. */
  onNewItem(listener: (kind: Behaviour['kind']) => void): void {
    this.newItemListeners.push(listener);
  }

  /** Called after every change (the writer schedules a flush). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private load(): StoreFile | undefined {
    if (!this.file) return undefined;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read agent state ${this.file}: ${(err as Error).message}`);
    }
    try {
      const parsed = JSON.parse(text) as StoreFile;
      if (parsed.formatVersion !== 1 || parsed.node !== this.node || typeof parsed.policies !== 'object')
        throw new Error('unexpected format or node');
      return parsed;
    } catch (err) {
      // A corrupt file is kept for inspection, never silently overwritten.
      const aside = `${this.file}.corrupt-${Date.now()}`;
      renameSync(this.file, aside);
      process.emitWarning(
        `agent state ${this.file} unreadable (${(err as Error).message}); moved to ${aside}`,
      );
      return undefined;
    }
  }

  /** Writes the state file atomically (temp + fsync + rename + fsync of the directory). */
  persist(): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const temp = `${this.file}.tmp-${process.pid}`;
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(this.state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, this.file);
    const dirFd = openSync(dirname(this.file), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  private policy(p: Source['policy']): PolicyState {
    const key = policyKey(p.namespace, p.name);
    let state = this.state.policies[key];
    if (state && p.uid && state.uid && state.uid !== p.uid) state = undefined; // recreated policy: start over
    if (!state) {
      state = {
        namespace: p.namespace,
        name: p.name,
        ...(p.uid ? { uid: p.uid } : {}),
        containers: {},
        counted: {},
        violations: { total: 0, byLayer: {}, denied: {} },
        installed: [],
        version: 1,
        writtenVersion: 0,
      };
      this.state.policies[key] = state;
    } else if (p.uid && !state.uid) state.uid = p.uid;
    return state;
  }

  private container(policy: PolicyState, source: Source): { c: ContainerState; changed: boolean } {
    let c = policy.containers[source.containerName];
    let changed = false;
    if (!c) {
      c = { images: [], pods: [], syscalls: {}, execs: {}, files: {}, ports: {} };
      policy.containers[source.containerName] = c;
      changed = true;
    }
    if (source.image && insertSorted(c.images, source.image)) changed = true;
    if (insertSorted(c.pods, source.podName)) changed = true;
    return { c, changed };
  }

  private changed(policy: PolicyState): void {
    policy.version++;
    for (const l of this.listeners) l();
  }

  /** Adds learned behaviour; returns true if it was new information. */
  record(source: Source, behaviours: Behaviour[]): boolean {
    const policy = this.policy(source.policy);
    const { c, changed: containerChanged } = this.container(policy, source);
    let changed = containerChanged;
    const now = this.now().toISOString();
    for (const b of behaviours) {
      const [bucket, key] = itemKey(b);
      const items = c[bucket] as Record<string, ItemState>;
      let item = items[key];
      if (!item) {
        item = { count: 0, pods: [] };
        if (b.kind === 'port') {
          const port: Omit<PortSeen, 'count' | 'pods'> = {
            direction: b.direction,
            protocol: b.protocol,
            port: b.port,
          };
          if (b.address) port.address = b.address;
          (item as ItemState & { port: typeof port }).port = port;
        }
        items[key] = item;
        changed = true;
        for (const l of this.newItemListeners) l(b.kind);
      }
      const countedKey = `${source.containerId}|${source.containerName}|${bucket}|${key}`;
      if (!policy.counted[countedKey]) {
        policy.counted[countedKey] = true;
        item.count++;
        changed = true;
      }
      if (insertSorted(item.pods, source.podName)) changed = true;
      if (b.kind === 'file' && b.write && !item.write) {
        item.write = true;
        changed = true;
      }
    }
    if (changed) {
      c.firstSeenAt ??= now;
      c.lastSeenAt = now;
      this.changed(policy);
    }
    return changed;
  }

  /**
   * Forgets which items a container instance already counted, once it is gone: only a running instance can
   * report again (after an agent restart), so the dedup set stays bounded by what runs.
   */
  forgetInstance(policy: Source['policy'], containerId: string): void {
    const state = this.state.policies[policyKey(policy.namespace, policy.name)];
    if (!state) return;
    const prefix = `${containerId}|`;
    for (const key of Object.keys(state.counted)) if (key.startsWith(prefix)) delete state.counted[key];
  }

  /** Counts one denied action (a violation) of an enforcement layer. */
  recordViolation(source: Source, layer: Layer, what: string, count = 1): void {
    const policy = this.policy(source.policy);
    this.container(policy, source);
    const v = policy.violations;
    v.total += count;
    v.byLayer[layer] = (v.byLayer[layer] ?? 0) + count;
    const key = `${source.containerName}|${layer}|${what}`;
    const d = (v.denied[key] ??= { container: source.containerName, layer, what, count: 0 });
    d.count += count;
    d.lastAt = this.now().toISOString();
    const entries = Object.entries(v.denied);
    if (entries.length > MAX_DENIED) {
      entries.sort((a, b) => a[1].count - b[1].count);
      for (const [k] of entries.slice(0, entries.length - MAX_DENIED)) delete v.denied[k];
    }
    this.changed(policy);
  }

  /** The enforcement layers found on this node (same for every policy). */
  setLayers(layers: ObservationSpec['layers']): void {
    if (canonicalJson(layers) === canonicalJson(this.state.layers)) return;
    this.state.layers = layers;
    for (const p of Object.values(this.state.policies)) this.changed(p);
  }

  /** The profile hashes of this policy installed on this node (the acks). */
  setInstalled(policy: Source['policy'], installed: { hash: string; profileName?: string }[]): void {
    const state = this.policy(policy);
    const before = new Map(state.installed.map((i) => [i.hash, i]));
    const next = installed
      .map((i) => before.get(i.hash) ?? { ...i, installedAt: this.now().toISOString() })
      .sort((a, b) => a.hash.localeCompare(b.hash));
    if (canonicalJson(next.map((i) => i.hash)) === canonicalJson(state.installed.map((i) => i.hash))) return;
    state.installed = next;
    this.changed(state);
  }

  /** Forgets a policy (it was deleted); its observation object is garbage-collected by its owner reference. */
  dropPolicy(namespace: string, name: string): void {
    delete this.state.policies[policyKey(namespace, name)];
    for (const l of this.listeners) l();
  }

  policyKeys(): string[] {
    return Object.keys(this.state.policies).sort();
  }

  /** Policies with changes not yet written, and the version each must reach. */
  dirty(): { key: string; version: number }[] {
    return Object.entries(this.state.policies)
      .filter(([, p]) => p.version > p.writtenVersion)
      .map(([key, p]) => ({ key, version: p.version }));
  }

  markWritten(key: string, version: number): void {
    const p = this.state.policies[key];
    if (p && version > p.writtenVersion) p.writtenVersion = version;
  }

  /** The policy's owner (for the object's ownerReference), if known. */
  policyMeta(key: string): { namespace: string; name: string; uid?: string } | undefined {
    const p = this.state.policies[key];
    return p && { namespace: p.namespace, name: p.name, ...(p.uid ? { uid: p.uid } : {}) };
  }

  /** The spec of this node's observation object for a policy (deterministic; updatedAt left to the writer). */
  spec(key: string): ObservationSpec | undefined {
    const p = this.state.policies[key];
    if (!p) return undefined;
    const containers: ContainerObservation[] = Object.keys(p.containers)
      .sort()
      .map((name) => {
        const c = p.containers[name]!;
        const seen = (items: Record<string, ItemState>) =>
          Object.fromEntries(
            Object.keys(items)
              .sort()
              .map((k) => [k, { count: items[k]!.count, pods: items[k]!.pods.length }]),
          );
        const out: ContainerObservation = {
          name,
          images: [...c.images],
          pods: [...c.pods],
          syscalls: seen(c.syscalls),
          execs: seen(c.execs),
          files: Object.fromEntries(
            Object.keys(c.files)
              .sort()
              .map((k) => [
                k,
                { count: c.files[k]!.count, pods: c.files[k]!.pods.length, write: !!c.files[k]!.write },
              ]),
          ),
          ports: Object.keys(c.ports)
            .sort()
            .map((k) => ({ ...c.ports[k]!.port, count: c.ports[k]!.count, pods: c.ports[k]!.pods.length })),
        };
        if (c.firstSeenAt) out.firstSeenAt = c.firstSeenAt;
        if (c.lastSeenAt) out.lastSeenAt = c.lastSeenAt;
        return out;
      });
    const denied = Object.values(p.violations.denied)
      .sort((a, b) => b.count - a.count || a.what.localeCompare(b.what))
      .map((d) => ({ ...d }));
    return {
      policy: p.name,
      node: this.node,
      agent: { startedAt: this.state.startedAt },
      containers,
      violations: { total: p.violations.total, byLayer: { ...p.violations.byLayer }, denied },
      layers: structuredClone(this.state.layers),
      installed: p.installed.map((i) => ({ ...i })),
    };
  }
}

/** The API calls the writer needs (client-node in production, anything in tests). */
export interface ObservationApi {
  get(namespace: string, name: string): Promise<PahlevanNodeObservation | undefined>;
  create(object: PahlevanNodeObservation): Promise<PahlevanNodeObservation>;
  /** Replace with metadata.resourceVersion as a precondition; throws an error with `code` 409 on conflict. */
  replace(object: PahlevanNodeObservation): Promise<PahlevanNodeObservation>;
}

export interface WriterOptions {
  /** Quiet time after a change before writing (coalesces bursts). */
  debounceMs?: number;
  /** First back-off after an API error; doubles per consecutive error up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (err: unknown, attempt: number, retryInMs: number) => void;
  onWritten?: (key: string, name: string) => void;
}

function errorCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } };
  for (const c of [e?.code, e?.statusCode, e?.response?.statusCode]) if (typeof c === 'number') return c;
  return undefined;
}

function comparable(spec: ObservationSpec | undefined): string {
  if (!spec) return '';
  const { updatedAt: _u, ...rest } = spec;
  return canonicalJson(rest);
}

/**
 * Writes dirty policies' observation objects: debounced, only when the content differs from what the
 * server has, exponential back-off with jitter on errors, conflicts resolved by re-reading.
 */
export class ObservationWriter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failures = 0;
  private stopped = false;
  private readonly resourceVersions = new Map<string, string>();
  private readonly debounceMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(
    private readonly store: ObservationStore,
    private readonly api: ObservationApi,
    private readonly options: WriterOptions = {},
  ) {
    this.debounceMs = options.debounceMs ?? 1000;
    this.initialBackoffMs = options.initialBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    store.onChange(() => this.schedule(this.debounceMs));
  }

  /** Starts writing what the state file left pending (after a restart). */
  start(): void {
    this.stopped = false;
    if (this.store.dirty().length > 0) this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Number of consecutive failed flushes (0 when the last one succeeded). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    // Back-off wins over the debounce: errors must not turn into a tight loop on every new event.
    if (this.failures > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.flush(), delayMs);
    this.timer.unref?.();
  }

  /** Writes everything pending now; resolves when done (errors schedule a retry and are not thrown). */
  async flush(): Promise<void> {
    if (this.running) {
      await this.running;
      if (this.store.dirty().length === 0) return;
    }
    this.timer = undefined;
    this.running = this.flushOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private async flushOnce(): Promise<void> {
    try {
      this.store.persist();
      for (const { key, version } of this.store.dirty()) {
        await this.writeOne(key);
        this.store.markWritten(key, version);
      }
      this.store.persist();
      this.failures = 0;
      // Changes that arrived during the write.
      if (this.store.dirty().length > 0 && !this.stopped) this.schedule(this.debounceMs);
    } catch (err) {
      this.failures++;
      const base = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** (this.failures - 1));
      const retryInMs = Math.round(base * (0.8 + Math.random() * 0.4));
      this.options.onError?.(err, this.failures, retryInMs);
      if (this.stopped) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, retryInMs);
      this.timer.unref?.();
    }
  }

  private async writeOne(key: string): Promise<void> {
    const meta = this.store.policyMeta(key);
    const spec = this.store.spec(key);
    if (!meta || !spec) return;
    const name = observationName(meta.name, this.store.node);
    const desired: PahlevanNodeObservation = {
      apiVersion: API_VERSION,
      kind: OBSERVATION_KIND,
      metadata: {
        name,
        namespace: meta.namespace,
        labels: { [LABEL_POLICY]: meta.name, [LABEL_NODE]: nodeLabelValue(this.store.node) },
        ...(meta.uid
          ? {
              ownerReferences: [
                { apiVersion: API_VERSION, kind: 'PahlevanPolicy', name: meta.name, uid: meta.uid },
              ],
            }
          : {}),
      },
      spec: { ...spec, updatedAt: new Date().toISOString() },
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      let rv = this.resourceVersions.get(key);
      if (rv === undefined) {
        const current = await this.api.get(meta.namespace, name);
        if (!current) {
          try {
            const created = await this.api.create(desired);
            this.remember(key, created);
            this.options.onWritten?.(key, name);
            return;
          } catch (err) {
            if (errorCode(err) === 409) continue; // created meanwhile (e.g. by our previous run): re-read
            throw err;
          }
        }
        this.remember(key, current);
        if (comparable(current.spec) === comparable(desired.spec)) return; // already there (idempotent)
        rv = current.metadata.resourceVersion!;
      }
      try {
        const replaced = await this.api.replace({
          ...desired,
          metadata: { ...desired.metadata, resourceVersion: rv },
        });
        this.remember(key, replaced);
        this.options.onWritten?.(key, name);
        return;
      } catch (err) {
        const code = errorCode(err);
        if (code === 409 || code === 404) {
          this.resourceVersions.delete(key);
          continue;
        }
        throw err;
      }
    }
    throw new Error(`observation ${meta.namespace}/${name}: still conflicting after 5 attempts`);
  }

  private remember(key: string, object: PahlevanNodeObservation): void {
    const rv = object.metadata.resourceVersion;
    if (rv) this.resourceVersions.set(key, rv);
    else this.resourceVersions.delete(key);
  }
}
