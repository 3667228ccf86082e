// A small stand-in Kubernetes API server over plain HTTP for tests: the real @kubernetes/client-node talks to it
// (KubeConfig with server http://127.0.0.1:<port>, skipTLSVerify). It keeps the real API's semantics where our
// code depends on them (https://kubernetes.io/docs/reference/using-api/api-concepts/):
// - one global, monotonic resourceVersion (a decimal string; clients must treat it as opaque);
// - list + watch: watch without resourceVersion (or "0") first replays the current state as ADDED events;
//   watch from a resourceVersion replays the retained history after it; a resourceVersion older than the
//   bounded history gets an ERROR event carrying a 410 Gone Status ("too old resource version") and the
//   stream ends, as kube-apiserver does; BOOKMARK events when allowWatchBookmarks=true; objects that stop or
//   start matching a selector are seen as DELETED / ADDED by that watch;
// - 404 NotFound, 409 AlreadyExists, 409 Conflict for a stale metadata.resourceVersion on update or patch,
//   422 Invalid, 400 BadRequest, each as a metav1 Status object;
// - the status subresource: writes to .../status change only status, writes to the main resource ignore status;
//   metadata.generation moves only when something other than metadata and status changes;
// - patches: merge-patch+json (RFC 7386), json-patch+json (RFC 6902), strategic-merge-patch+json (treated as
//   a merge patch: lists are replaced, not merged by key), apply-patch+yaml (server-side apply, simplified:
//   a merge of the applied configuration, fieldManager required, creates when absent, managedFields records the
//   manager; fields last applied by another manager with another value conflict unless force=true);
// - field selectors (metadata.name, metadata.namespace, and per kind: pods spec.nodeName/status.phase, events
//   involvedObject.*) and label selectors (=, ==, !=, in, notin, exists, !key);
// - uid, creationTimestamp, generateName; namespaces must exist for namespaced creates; deleting a namespace
//   deletes what is in it (at once: there is no Terminating phase here); objects whose ownerReferences name a
//   deleted object are deleted too (the garbage collector's background propagation, done at once).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import jsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import YAML from 'yaml';
import { KubeConfig } from '@kubernetes/client-node';
import { CRDS } from '../../api/crds.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: Record<string, unknown> & {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    uid?: string;
  };
  [key: string]: unknown;
};

export interface ResourceType {
  group: string; // '' for the core group
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  statusSubresource: boolean;
  /** Extra field-selector paths besides metadata.name and metadata.namespace. */
  fieldSelectors?: string[];
  /** Returns validation errors (422 Invalid) for an object about to be stored. */
  validate?: (obj: KubeObject) => string[];
}

const CORE_TYPES: ResourceType[] = [
  {
    group: '',
    version: 'v1',
    kind: 'Namespace',
    plural: 'namespaces',
    namespaced: false,
    statusSubresource: true,
  },
  { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false, statusSubresource: true },
  {
    group: '',
    version: 'v1',
    kind: 'Pod',
    plural: 'pods',
    namespaced: true,
    statusSubresource: true,
    fieldSelectors: ['spec.nodeName', 'status.phase', 'spec.serviceAccountName'],
  },
  {
    group: '',
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    namespaced: true,
    statusSubresource: false,
    fieldSelectors: [
      'involvedObject.kind',
      'involvedObject.name',
      'involvedObject.namespace',
      'involvedObject.uid',
      'reason',
      'type',
    ],
  },
  {
    group: '',
    version: 'v1',
    kind: 'ConfigMap',
    plural: 'configmaps',
    namespaced: true,
    statusSubresource: false,
  },
  { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true, statusSubresource: false },
  {
    group: '',
    version: 'v1',
    kind: 'Service',
    plural: 'services',
    namespaced: true,
    statusSubresource: true,
  },
  {
    group: '',
    version: 'v1',
    kind: 'ServiceAccount',
    plural: 'serviceaccounts',
    namespaced: true,
    statusSubresource: false,
  },
  {
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    plural: 'leases',
    namespaced: true,
    statusSubresource: false,
  },
  {
    group: 'apps',
    version: 'v1',
    kind: 'Deployment',
    plural: 'deployments',
    namespaced: true,
    statusSubresource: true,
  },
  {
    group: 'apps',
    version: 'v1',
    kind: 'DaemonSet',
    plural: 'daemonsets',
    namespaced: true,
    statusSubresource: true,
  },
  {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    namespaced: false,
    statusSubresource: true,
  },
];

interface StoredEvent {
  rv: number;
  typeKey: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  previous?: KubeObject;
}

interface Watcher {
  typeKey: string;
  namespace?: string;
  matches: (obj: KubeObject) => boolean;
  res: ServerResponse;
  bookmarks: boolean;
  type: ResourceType;
  sentRv: number;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export interface FakeApiServerOptions {
  /** Watch events kept for resuming watches; older resourceVersions get 410 Gone. */
  historyLimit?: number;
  /** Interval between BOOKMARK events for watches that allow them (kube-apiserver: about a minute). */
  bookmarkIntervalMs?: number;
  /** Register Pahlevan's CRDs (api/crds.ts) at start. Default true. */
  withPahlevanCrds?: boolean;
  /** Namespaces that exist from the start. Default default, kube-system, kube-public. */
  namespaces?: string[];
}

const GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function clone<T>(value: T): T {
  return structuredClone(value);
}

function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function typeKeyOf(t: Pick<ResourceType, 'group' | 'plural'>): string {
  return `${t.plural}.${t.group}`;
}

function apiVersionOf(t: ResourceType): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const result: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

/** Everything except metadata and status: what metadata.generation tracks. */
function specPart(obj: KubeObject, withStatus: boolean): string {
  const { metadata: _m, status, ...rest } = obj;
  return stableStringify(withStatus ? { ...rest, status } : rest);
}

function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

// ---- selectors ----

type LabelRequirement =
  { key: string; op: 'in' | 'notin'; values: string[] } | { key: string; op: 'exists' | 'notexists' };

/** Parses a label selector string (the syntax of kubectl -l / ?labelSelector=). */
export function parseLabelSelector(text: string): LabelRequirement[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  parts.push(current);
  const out: LabelRequirement[] = [];
  const key = String.raw`[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?`;
  const value = String.raw`([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?`;
  for (const raw of parts) {
    const p = raw.trim();
    if (p === '') continue;
    let m: RegExpMatchArray | null;
    if ((m = p.match(new RegExp(`^(${key})\\s+(in|notin)\\s+\\(([^)]*)\\)$`)))) {
      const values = m[4]!.split(',').map((v) => v.trim());
      if (values.some((v) => !new RegExp(`^${value}$`).test(v)))
        throw new ApiError(400, 'BadRequest', `unable to parse requirement: invalid label value in ${p}`);
      out.push({ key: m[1]!, op: m[3] as 'in' | 'notin', values });
    } else if ((m = p.match(new RegExp(`^(${key})\\s*(==|=|!=)\\s*(${value})$`)))) {
      out.push({ key: m[1]!, op: m[3] === '!=' ? 'notin' : 'in', values: [m[4]!] });
    } else if ((m = p.match(new RegExp(`^!\\s*(${key})$`)))) {
      out.push({ key: m[1]!, op: 'notexists' });
    } else if ((m = p.match(new RegExp(`^(${key})$`)))) {
      out.push({ key: m[1]!, op: 'exists' });
    } else {
      throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(p)}`);
    }
  }
  return out;
}

export function labelsMatch(
  requirements: LabelRequirement[],
  labels: Record<string, string> | undefined,
): boolean {
  const l = labels ?? {};
  return requirements.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case 'notexists':
        return !has;
      case 'in':
        return has && r.values.includes(l[r.key]!);
      case 'notin':
        return !has || !r.values.includes(l[r.key]!);
    }
  });
}

function parseFieldSelector(text: string, type: ResourceType): ((obj: KubeObject) => boolean)[] {
  const allowed = new Set(['metadata.name', 'metadata.namespace', ...(type.fieldSelectors ?? [])]);
  return text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .map((p) => {
      const m = p.match(/^([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)$/);
      if (!m) throw new ApiError(400, 'BadRequest', `invalid field selector: ${JSON.stringify(p)}`);
      const [, field, op, want] = m as unknown as [string, string, string, string];
      if (!allowed.has(field))
        throw new ApiError(
          400,
          'BadRequest',
          `field label not supported: ${field} (supported: ${[...allowed].join(', ')})`,
        );
      return (obj: KubeObject) => {
        const got = getPath(obj, field);
        const gotText = got === undefined || got === null ? '' : String(got as string);
        return op === '!=' ? gotText !== want : gotText === want;
      };
    });
}

// ---- the server ----

export class FakeApiServer {
  readonly types = new Map<string, ResourceType>(); // typeKey -> type
  private readonly objects = new Map<string, Map<string, KubeObject>>(); // typeKey -> "ns/name" -> object
  private history: StoredEvent[] = [];
  /** Events with rv <= compactedRv are gone: watches from before it get 410. */
  private compactedRv = 0;
  private rv = 0;
  private readonly watchers = new Set<Watcher>();
  private server!: Server;
  private bookmarkTimer?: NodeJS.Timeout;
  private available = true;
  /** Every request, for tests that assert what a client did: "METHOD path?query". */
  readonly requests: string[] = [];
  port = 0;

  private constructor(private readonly options: FakeApiServerOptions) {}

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const api = new FakeApiServer(options);
    for (const t of CORE_TYPES) api.addType(t);
    if (options.withPahlevanCrds ?? true)
      for (const crd of CRDS)
        api.addType({
          group: crd.group,
          version: crd.version,
          kind: crd.kind,
          plural: crd.plural,
          namespaced: crd.scope === 'Namespaced',
          statusSubresource: crd.statusSubresource,
        });
    for (const ns of options.namespaces ?? ['default', 'kube-system', 'kube-public'])
      api.create(api.typeOf('', 'namespaces'), undefined, { metadata: { name: ns } });
    api.server = createServer((req, res) => void api.handle(req, res));
    api.server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => api.server.listen(0, '127.0.0.1', resolve));
    api.port = (api.server.address() as AddressInfo).port;
    api.bookmarkTimer = setInterval(() => api.sendBookmarks(), options.bookmarkIntervalMs ?? 1000);
    api.bookmarkTimer.unref();
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A KubeConfig for @kubernetes/client-node pointing at this server. */
  kubeConfig(namespace = 'default'): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake', namespace }],
      currentContext: 'fake',
    });
    return kc;
  }

  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    this.closeWatches();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  addType(type: ResourceType): void {
    const key = typeKeyOf(type);
    this.types.set(key, type);
    if (!this.objects.has(key)) this.objects.set(key, new Map());
  }

  /** A created CustomResourceDefinition is served at once (as kube-apiserver does once it is Established). */
  private serveCrd(crd: KubeObject): void {
    const spec = crd.spec as
      | {
          group?: string;
          scope?: string;
          names?: { plural?: string; kind?: string };
          versions?: {
            name?: string;
            served?: boolean;
            storage?: boolean;
            subresources?: { status?: object };
          }[];
        }
      | undefined;
    const version = spec?.versions?.find((v) => v.storage) ?? spec?.versions?.[0];
    if (!spec?.group || !spec.names?.plural || !spec.names.kind || !version?.name) return;
    if (this.types.has(typeKeyOf({ group: spec.group, plural: spec.names.plural }))) return;
    this.addType({
      group: spec.group,
      version: version.name,
      kind: spec.names.kind,
      plural: spec.names.plural,
      namespaced: spec.scope !== 'Cluster',
      statusSubresource: version.subresources?.status !== undefined,
    });
  }

  typeOf(group: string, plural: string): ResourceType {
    const t = this.types.get(typeKeyOf({ group, plural }));
    if (!t)
      throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${plural})`);
    return t;
  }

  /** Drops all retained watch history: any watch resuming from an earlier resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Ends every open watch as if the server closed the connection (clients are expected to re-watch). */
  closeWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** While false, every request fails with 503 and open watches are closed: an API server outage. */
  setAvailable(available: boolean): void {
    this.available = available;
    if (!available) this.closeWatches();
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Direct read of the store (tests). */
  getObject(
    group: string,
    plural: string,
    namespace: string | undefined,
    name: string,
  ): KubeObject | undefined {
    const o = this.objects.get(typeKeyOf({ group, plural }))?.get(`${namespace ?? ''}/${name}`);
    return o ? clone(o) : undefined;
  }

  listObjects(group: string, plural: string, namespace?: string): KubeObject[] {
    return [...(this.objects.get(typeKeyOf({ group, plural }))?.values() ?? [])]
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .map(clone);
  }

  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      this.writeEvent(w, 'BOOKMARK', {
        kind: w.type.kind,
        apiVersion: apiVersionOf(w.type),
        metadata: { resourceVersion: String(this.rv) },
      });
    }
  }

  // ---- storage operations (also usable directly by tests) ----

  private nextRv(): number {
    return ++this.rv;
  }

  private record(type: ResourceType, event: Omit<StoredEvent, 'typeKey'>): void {
    const stored: StoredEvent = { ...event, typeKey: typeKeyOf(type) };
    this.history.push(stored);
    const limit = this.options.historyLimit ?? 1000;
    while (this.history.length > limit) this.compactedRv = this.history.shift()!.rv;
    for (const w of this.watchers) this.deliver(w, stored);
  }

  private deliver(w: Watcher, ev: StoredEvent): void {
    if (ev.typeKey !== w.typeKey || ev.rv <= w.sentRv) return;
    const inNs = (o: KubeObject) => w.namespace === undefined || o.metadata.namespace === w.namespace;
    const now = inNs(ev.object) && w.matches(ev.object);
    const before = ev.previous !== undefined && inNs(ev.previous) && w.matches(ev.previous);
    let type: string | undefined;
    if (ev.type === 'ADDED') type = now ? 'ADDED' : undefined;
    else if (ev.type === 'DELETED') type = now ? 'DELETED' : undefined;
    else if (now && before) type = 'MODIFIED';
    else if (now) type = 'ADDED';
    else if (before) type = 'DELETED';
    if (type) this.writeEvent(w, type, ev.object);
    w.sentRv = ev.rv;
  }

  private writeEvent(w: Watcher, type: string, object: unknown): void {
    if (!w.res.writableEnded) w.res.write(JSON.stringify({ type, object }) + '\n');
  }

  private key(namespace: string | undefined, name: string): string {
    return `${namespace ?? ''}/${name}`;
  }

  private withTypeMeta(type: ResourceType, obj: KubeObject): KubeObject {
    return { apiVersion: apiVersionOf(type), kind: type.kind, ...obj };
  }

  private checkNamespace(type: ResourceType, namespace: string | undefined): void {
    if (!type.namespaced) return;
    if (!namespace)
      throw new ApiError(400, 'BadRequest', `${type.plural} is namespaced: a namespace is required`);
    if (
      !this.objects.get(typeKeyOf({ group: '', plural: 'namespaces' }))!.has(this.key(undefined, namespace))
    )
      throw new ApiError(404, 'NotFound', `namespaces "${namespace}" not found`, {
        name: namespace,
        kind: 'namespaces',
      });
  }

  private validateBody(type: ResourceType, body: unknown, namespace: string | undefined): KubeObject {
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw new ApiError(400, 'BadRequest', 'the request body must be a JSON object');
    const obj = body as KubeObject;
    if (!obj.metadata || typeof obj.metadata !== 'object') obj.metadata = {};
    if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersionOf(type))
      throw new ApiError(
        400,
        'BadRequest',
        `the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(type)})`,
      );
    if (obj.kind !== undefined && obj.kind !== type.kind)
      throw new ApiError(
        400,
        'BadRequest',
        `the kind in the data (${obj.kind}) does not match the expected kind (${type.kind})`,
      );
    if (type.namespaced && obj.metadata.namespace !== undefined && obj.metadata.namespace !== namespace)
      throw new ApiError(
        400,
        'BadRequest',
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    obj.apiVersion = apiVersionOf(type);
    obj.kind = type.kind;
    return obj;
  }

  private invalid(type: ResourceType, name: string | undefined, causes: string[]): ApiError {
    return new ApiError(422, 'Invalid', `${type.kind} "${name ?? ''}" is invalid: ${causes.join('; ')}`, {
      name,
      kind: type.kind,
      group: type.group,
      causes: causes.map((message) => ({ message })),
    });
  }

  private conflict(type: ResourceType, name: string): ApiError {
    const resource = type.group ? `${type.plural}.${type.group}` : type.plural;
    return new ApiError(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      { name, group: type.group, kind: type.plural },
    );
  }

  private notFound(type: ResourceType, name: string): ApiError {
    const resource = type.group ? `${type.plural}.${type.group}` : type.plural;
    return new ApiError(404, 'NotFound', `${resource} "${name}" not found`, {
      name,
      group: type.group,
      kind: type.plural,
    });
  }

  create(type: ResourceType, namespace: string | undefined, body: unknown, dryRun = false): KubeObject {
    this.checkNamespace(type, namespace);
    const obj = clone(this.validateBody(type, body, namespace));
    const meta = obj.metadata;
    if (!meta.name && typeof meta.generateName === 'string' && meta.generateName) {
      let suffix = '';
      for (let i = 0; i < 5; i++)
        suffix += GENERATE_NAME_ALPHABET[Math.floor(Math.random() * GENERATE_NAME_ALPHABET.length)];
      meta.name = `${meta.generateName}${suffix}`;
    }
    if (!meta.name)
      throw this.invalid(type, '', ['metadata.name: Required value: name or generateName is required']);
    if (meta.name.length > 253 || !DNS_SUBDOMAIN.test(meta.name))
      throw this.invalid(type, meta.name, [
        `metadata.name: Invalid value: ${JSON.stringify(meta.name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      ]);
    if (type.namespaced) meta.namespace = namespace;
    else delete meta.namespace;
    const store = this.objects.get(typeKeyOf(type))!;
    const k = this.key(meta.namespace, meta.name);
    if (store.has(k)) {
      const resource = type.group ? `${type.plural}.${type.group}` : type.plural;
      throw new ApiError(409, 'AlreadyExists', `${resource} "${meta.name}" already exists`, {
        name: meta.name,
        group: type.group,
        kind: type.plural,
      });
    }
    const errors = type.validate?.(obj) ?? [];
    if (errors.length > 0) throw this.invalid(type, meta.name, errors);
    if (type.statusSubresource && type.kind !== 'Namespace') delete obj.status;
    if (type.kind === 'Namespace') obj.status = { phase: 'Active' };
    if (type.kind === 'Pod') obj.status = { phase: 'Pending' };
    meta.uid = randomUUID();
    meta.creationTimestamp = nowRfc3339();
    meta.generation = 1;
    delete meta.deletionTimestamp;
    if (dryRun) return obj;
    meta.resourceVersion = String(this.nextRv());
    store.set(k, obj);
    this.record(type, { rv: this.rv, type: 'ADDED', object: clone(obj) });
    if (type.kind === 'CustomResourceDefinition') this.serveCrd(obj);
    return clone(obj);
  }

  get(type: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const o = this.objects.get(typeKeyOf(type))!.get(this.key(type.namespaced ? namespace : undefined, name));
    if (!o) throw this.notFound(type, name);
    return clone(o);
  }

  /**
   * Stores `next` as the new version of an existing object. `subresource` 'status' keeps everything but status
   * from the old object; the main resource keeps the old status when the type has a status subresource.
   */
  private update(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    body: unknown,
    options: { subresource?: string; requireRv: boolean; dryRun?: boolean; managedFields?: unknown },
  ): KubeObject {
    const ns = type.namespaced ? namespace : undefined;
    const store = this.objects.get(typeKeyOf(type))!;
    const old = store.get(this.key(ns, name));
    if (!old) throw this.notFound(type, name);
    const incoming = clone(this.validateBody(type, body, ns));
    if (incoming.metadata.name !== undefined && incoming.metadata.name !== name)
      throw new ApiError(
        400,
        'BadRequest',
        `the name of the object (${incoming.metadata.name}) does not match the name on the URL (${name})`,
      );
    const wantRv = incoming.metadata.resourceVersion;
    if (wantRv === undefined || wantRv === '') {
      if (options.requireRv)
        throw this.invalid(type, name, [
          'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update',
        ]);
    } else if (wantRv !== old.metadata.resourceVersion) throw this.conflict(type, name);
    let next: KubeObject;
    if (options.subresource === 'status') {
      next = clone(old);
      if (incoming.status === undefined) delete next.status;
      else next.status = incoming.status;
    } else {
      next = incoming;
      if (type.statusSubresource) {
        if (old.status === undefined) delete next.status;
        else next.status = clone(old.status);
      }
      // Fields the server owns survive whatever the client sent.
      for (const f of ['uid', 'creationTimestamp', 'generation', 'managedFields', 'deletionTimestamp'])
        if (old.metadata[f] === undefined) delete next.metadata[f];
        else next.metadata[f] = clone(old.metadata[f]);
      if (options.managedFields !== undefined) next.metadata.managedFields = options.managedFields;
    }
    next.metadata.name = name;
    if (ns) next.metadata.namespace = ns;
    else delete next.metadata.namespace;
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    // A no-op write is not a change: no new resourceVersion, no watch event (as kube-apiserver).
    if (stableStringify(next) === stableStringify(old)) return clone(old);
    const errors = type.validate?.(next) ?? [];
    if (errors.length > 0) throw this.invalid(type, name, errors);
    if (specPart(next, !type.statusSubresource) !== specPart(old, !type.statusSubresource))
      next.metadata.generation = (old.metadata.generation ?? 0) + 1;
    if (options.dryRun) return next;
    next.metadata.resourceVersion = String(this.nextRv());
    store.set(this.key(ns, name), next);
    this.record(type, { rv: this.rv, type: 'MODIFIED', object: clone(next), previous: clone(old) });
    return clone(next);
  }

  replace(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    body: unknown,
    subresource?: string,
    dryRun = false,
  ): KubeObject {
    // Custom resources need a resourceVersion on update; core types allow an unconditional update.
    const requireRv = !CORE_TYPES.some((t) => typeKeyOf(t) === typeKeyOf(type));
    return this.update(type, namespace, name, body, { subresource, requireRv, dryRun });
  }

  patch(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    contentType: string,
    rawBody: string,
    query: URLSearchParams,
    subresource?: string,
  ): KubeObject {
    const ns = type.namespaced ? namespace : undefined;
    const dryRun = query.get('dryRun') === 'All';
    const old = this.objects.get(typeKeyOf(type))!.get(this.key(ns, name));
    const mediaType = contentType.split(';')[0]!.trim().toLowerCase();
    let patched: unknown;
    if (mediaType === 'application/apply-patch+yaml') {
      return this.apply(type, ns, name, rawBody, query, subresource, dryRun);
    }
    if (!old) throw this.notFound(type, name);
    let body: unknown;
    try {
      body = JSON.parse(rawBody);
    } catch (e) {
      throw new ApiError(400, 'BadRequest', `the patch is not valid JSON: ${(e as Error).message}`);
    }
    if (mediaType === 'application/json-patch+json') {
      if (!Array.isArray(body))
        throw new ApiError(400, 'BadRequest', 'a JSON patch must be an array of operations');
      try {
        patched = jsonPatch.applyPatch(clone(old), body as Operation[], true, false).newDocument;
      } catch (e) {
        const err = e as Error & { name?: string };
        if (err.name === 'TEST_OPERATION_FAILED')
          throw this.invalid(type, name, [`the test operation failed: ${err.message}`]);
        throw this.invalid(type, name, [`the JSON patch could not be applied: ${err.message}`]);
      }
    } else if (
      mediaType === 'application/merge-patch+json' ||
      mediaType === 'application/strategic-merge-patch+json'
    ) {
      if (mediaType === 'application/strategic-merge-patch+json' && !CORE_TYPES.some((t) => t === type))
        throw new ApiError(
          415,
          'UnsupportedMediaType',
          'strategic merge patch is not supported for custom resources; use merge-patch+json or json-patch+json',
        );
      patched = mergePatch(clone(old), body);
    } else {
      throw new ApiError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format: ${mediaType}`,
      );
    }
    const next = patched as KubeObject;
    if (!next || typeof next !== 'object' || !next.metadata)
      throw this.invalid(type, name, ['the patch removed metadata']);
    // A resourceVersion in the patch is a precondition: if it differs from the stored one, 409 Conflict.
    return this.update(type, ns, name, next, { subresource, requireRv: false, dryRun });
  }

  private apply(
    type: ResourceType,
    ns: string | undefined,
    name: string,
    rawBody: string,
    query: URLSearchParams,
    subresource: string | undefined,
    dryRun: boolean,
  ): KubeObject {
    const manager = query.get('fieldManager');
    if (!manager)
      throw new ApiError(
        400,
        'BadRequest',
        'PATCH, application/apply-patch+yaml requests require a fieldManager',
      );
    let config: KubeObject;
    try {
      config = YAML.parse(rawBody) as KubeObject;
    } catch (e) {
      throw new ApiError(
        400,
        'BadRequest',
        `the applied configuration is not valid YAML: ${(e as Error).message}`,
      );
    }
    if (!config || typeof config !== 'object' || !config.apiVersion || !config.kind)
      throw new ApiError(400, 'BadRequest', 'an applied configuration needs apiVersion and kind');
    config.metadata ??= {};
    if (config.metadata.name !== undefined && config.metadata.name !== name)
      throw new ApiError(
        400,
        'BadRequest',
        `the name of the object (${config.metadata.name}) does not match the name on the URL (${name})`,
      );
    const force = query.get('force') === 'true';
    const appliedPaths = leafPaths(config, '').filter(
      (p) => !p.startsWith('.apiVersion') && !p.startsWith('.kind'),
    );
    const store = this.objects.get(typeKeyOf(type))!;
    const old = store.get(this.key(ns, name));
    const managedEntry = {
      manager,
      operation: 'Apply',
      apiVersion: apiVersionOf(type),
      time: nowRfc3339(),
      fieldsType: 'FieldsV1',
      fieldsV1: Object.fromEntries(appliedPaths.map((p) => [`f:${p}`, {}])),
      ...(subresource ? { subresource } : {}),
    };
    if (!old) {
      if (subresource) throw this.notFound(type, name);
      const created = { ...config, metadata: { ...config.metadata, name, managedFields: [managedEntry] } };
      return this.create(type, ns, created, dryRun);
    }
    // Conflicts: a field another Apply manager set to a different value.
    const owners =
      (old.metadata.managedFields as { manager: string; operation: string; fieldsV1?: object }[]) ?? [];
    if (!force) {
      const conflicts: string[] = [];
      for (const entry of owners) {
        if (entry.manager === manager || entry.operation !== 'Apply') continue;
        for (const f of Object.keys(entry.fieldsV1 ?? {})) {
          const path = f.slice(2);
          if (!appliedPaths.includes(path)) continue;
          if (stableStringify(getLeaf(old, path)) !== stableStringify(getLeaf(config, path)))
            conflicts.push(`conflict with "${entry.manager}": ${path}`);
        }
      }
      if (conflicts.length > 0)
        throw new ApiError(
          409,
          'Conflict',
          `Apply failed with ${conflicts.length} conflict(s): ${conflicts.join(', ')}`,
          {
            name,
            group: type.group,
            kind: type.plural,
            causes: conflicts.map((message) => ({ reason: 'FieldManagerConflict', message })),
          },
        );
    }
    const { resourceVersion: _rv, ...configMeta } = config.metadata;
    const merged = mergePatch(clone(old), { ...config, metadata: configMeta }) as KubeObject;
    // The applier now owns what it applied; with force, other managers lose those fields.
    const others = owners
      .filter((e) => e.manager !== manager)
      .map((e) =>
        force
          ? {
              ...e,
              fieldsV1: Object.fromEntries(
                Object.entries(e.fieldsV1 ?? {}).filter(([f]) => !appliedPaths.includes(f.slice(2))),
              ),
            }
          : e,
      );
    const managedFields = [...others, managedEntry];
    if (config.metadata.resourceVersion !== undefined)
      merged.metadata.resourceVersion = config.metadata.resourceVersion;
    return this.update(type, ns, name, merged, {
      subresource,
      requireRv: false,
      dryRun,
      managedFields,
    });
  }

  delete(type: ResourceType, namespace: string | undefined, name: string, body?: unknown): KubeObject {
    const ns = type.namespaced ? namespace : undefined;
    const store = this.objects.get(typeKeyOf(type))!;
    const k = this.key(ns, name);
    const old = store.get(k);
    if (!old) throw this.notFound(type, name);
    const pre = (body as { preconditions?: { uid?: string; resourceVersion?: string } } | undefined)
      ?.preconditions;
    if (pre?.uid !== undefined && pre.uid !== old.metadata.uid)
      throw new ApiError(
        409,
        'Conflict',
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(old.metadata.uid)}`,
      );
    if (pre?.resourceVersion !== undefined && pre.resourceVersion !== old.metadata.resourceVersion)
      throw this.conflict(type, name);
    if (type.kind === 'Namespace') {
      for (const [key, t] of this.types) {
        if (!t.namespaced) continue;
        for (const o of [...this.objects.get(key)!.values()])
          if (o.metadata.namespace === name) this.delete(t, name, o.metadata.name!);
      }
    }
    store.delete(k);
    const gone = clone(old);
    gone.metadata.resourceVersion = String(this.nextRv());
    this.record(type, { rv: this.rv, type: 'DELETED', object: clone(gone) });
    this.collectDependents(String(old.metadata.uid));
    return gone;
  }

  /**
   * The garbage collector's background propagation, done at once: objects whose ownerReferences name the
   * deleted object go too (kube-controller-manager does this asynchronously; the end state is the same).
   */
  private collectDependents(ownerUid: string): void {
    for (const [key, t] of this.types)
      for (const o of [...this.objects.get(key)!.values()]) {
        const refs = (o.metadata.ownerReferences as { uid?: string }[] | undefined) ?? [];
        if (
          refs.some((r) => r.uid === ownerUid) &&
          this.objects.get(key)!.has(this.key(o.metadata.namespace, o.metadata.name!))
        )
          this.delete(t, o.metadata.namespace, o.metadata.name!);
      }
  }

  list(
    type: ResourceType,
    namespace: string | undefined,
    query: URLSearchParams,
  ): { apiVersion: string; kind: string; metadata: Record<string, unknown>; items: KubeObject[] } {
    const matches = this.matcher(type, query);
    let items = [...this.objects.get(typeKeyOf(type))!.entries()]
      .filter(([, o]) => (namespace === undefined || o.metadata.namespace === namespace) && matches(o))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const listRv = String(this.rv);
    const cont = query.get('continue');
    if (cont) {
      let token: { rv: number; after: string };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString()) as { rv: number; after: string };
      } catch {
        throw new ApiError(400, 'BadRequest', 'invalid continue token');
      }
      if (token.rv < this.compactedRv)
        throw new ApiError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result.',
        );
      items = items.filter(([k]) => k > token.after);
    }
    const limit = Number(query.get('limit') ?? 0);
    const metadata: Record<string, unknown> = { resourceVersion: listRv };
    if (limit > 0 && items.length > limit) {
      items = items.slice(0, limit);
      metadata.continue = Buffer.from(
        JSON.stringify({ rv: this.rv, after: items[items.length - 1]![0] }),
      ).toString('base64url');
    }
    const isCustom = !CORE_TYPES.some((t) => typeKeyOf(t) === typeKeyOf(type));
    return {
      apiVersion: apiVersionOf(type),
      kind: `${type.kind}List`,
      metadata,
      // Items of built-in lists carry no apiVersion/kind; custom resource lists (unstructured) keep them.
      items: items.map(([, o]) => {
        const c = clone(o);
        if (!isCustom) {
          delete c.apiVersion;
          delete c.kind;
        }
        return c;
      }),
    };
  }

  private matcher(type: ResourceType, query: URLSearchParams): (obj: KubeObject) => boolean {
    const labels = parseLabelSelector(query.get('labelSelector') ?? '');
    const fields = parseFieldSelector(query.get('fieldSelector') ?? '', type);
    return (obj) => labelsMatch(labels, obj.metadata.labels) && fields.every((f) => f(obj));
  }

  private watch(
    type: ResourceType,
    namespace: string | undefined,
    query: URLSearchParams,
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    const matches = this.matcher(type, query);
    const rvParam = query.get('resourceVersion') ?? '';
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = {
      typeKey: typeKeyOf(type),
      namespace,
      matches,
      res,
      bookmarks: query.get('allowWatchBookmarks') === 'true',
      type,
      sentRv: this.rv,
    };
    if (rvParam === '' || rvParam === '0') {
      // Start with the current state as synthetic ADDED events, then changes after it.
      for (const o of [...this.objects.get(w.typeKey)!.values()].sort(
        (a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion),
      ))
        if ((namespace === undefined || o.metadata.namespace === namespace) && matches(o))
          this.writeEvent(w, 'ADDED', o);
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) {
        this.writeEvent(
          w,
          'ERROR',
          statusObject(new ApiError(400, 'BadRequest', `invalid resourceVersion ${JSON.stringify(rvParam)}`)),
        );
        res.end();
        return;
      }
      if (from < this.compactedRv) {
        this.writeEvent(
          w,
          'ERROR',
          statusObject(
            new ApiError(410, 'Expired', `too old resource version: ${from} (${this.compactedRv + 1})`),
          ),
        );
        res.end();
        return;
      }
      w.sentRv = from;
      for (const ev of this.history) if (ev.rv > from) this.deliver(w, ev);
      w.sentRv = Math.max(w.sentRv, this.rv);
    }
    this.watchers.add(w);
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? 0);
    const timer = timeoutSeconds > 0 ? setTimeout(() => res.end(), timeoutSeconds * 1000) : undefined;
    const cleanup = () => {
      clearTimeout(timer);
      this.watchers.delete(w);
    };
    req.on('close', cleanup);
    res.on('close', cleanup);
    res.on('finish', cleanup);
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (this.requests.length > 20_000) this.requests.splice(0, 10_000); // long runs: keep the recent ones
    try {
      const raw = await readBody(req);
      if (!this.available)
        throw new ApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
      const discovery = this.discovery(url.pathname);
      if (discovery) return sendJson(res, 200, discovery);
      const route = this.route(url.pathname);
      const { type, namespace, name, subresource } = route;
      const q = url.searchParams;
      const dryRun = q.get('dryRun') === 'All';
      const parse = () => {
        try {
          return JSON.parse(raw) as unknown;
        } catch (e) {
          throw new ApiError(
            400,
            'BadRequest',
            `the request body is not valid JSON: ${(e as Error).message}`,
          );
        }
      };
      switch (req.method) {
        case 'GET':
          if (name) return sendJson(res, 200, this.withTypeMeta(type, this.get(type, namespace, name)));
          if (q.get('watch') === 'true' || q.get('watch') === '1')
            return this.watch(type, namespace, q, req, res);
          return sendJson(res, 200, this.list(type, namespace, q));
        case 'POST':
          if (name) throw new ApiError(405, 'MethodNotAllowed', 'POST is not allowed on a single object');
          return sendJson(res, 201, this.create(type, namespace, parse(), dryRun));
        case 'PUT':
          if (!name) throw new ApiError(405, 'MethodNotAllowed', 'PUT needs an object name');
          return sendJson(res, 200, this.replace(type, namespace, name, parse(), subresource, dryRun));
        case 'PATCH':
          if (!name) throw new ApiError(405, 'MethodNotAllowed', 'PATCH needs an object name');
          return sendJson(
            res,
            200,
            this.patch(type, namespace, name, String(req.headers['content-type'] ?? ''), raw, q, subresource),
          );
        case 'DELETE': {
          const body = raw.trim() ? parse() : undefined;
          if (name) return sendJson(res, 200, this.delete(type, namespace, name, body));
          const victims = this.list(type, namespace, q).items;
          for (const v of victims) this.delete(type, v.metadata.namespace, v.metadata.name!);
          return sendJson(res, 200, { ...this.list(type, namespace, new URLSearchParams()), items: victims });
        }
        default:
          throw new ApiError(405, 'MethodNotAllowed', `method ${req.method} is not supported`);
      }
    } catch (e) {
      const err =
        e instanceof ApiError
          ? e
          : new ApiError(500, 'InternalError', `internal error: ${(e as Error).message}`);
      if (!res.headersSent) sendJson(res, err.code, statusObject(err));
      else res.end();
    }
  }

  private route(pathname: string): {
    type: ResourceType;
    namespace?: string;
    name?: string;
    subresource?: string;
  } {
    const segs = pathname
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
    let group: string;
    let rest: string[];
    if (segs[0] === 'api' && segs[1] === 'v1') {
      group = '';
      rest = segs.slice(2);
    } else if (segs[0] === 'apis' && segs.length >= 3) {
      group = segs[1]!;
      const version = segs[2]!;
      rest = segs.slice(3);
      if (![...this.types.values()].some((t) => t.group === group && t.version === version))
        throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    } else throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3 && this.types.has(`${rest[2]}.${group}`)) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, subresource, ...extra] = rest;
    if (!plural || extra.length > 0)
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const type = this.typeOf(group, plural);
    if (namespace !== undefined && !type.namespaced)
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (type.namespaced && name !== undefined && namespace === undefined)
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (subresource !== undefined && !(subresource === 'status' && type.statusSubresource))
      throw new ApiError(
        404,
        'NotFound',
        `the server could not find the requested resource (${plural}/${subresource})`,
      );
    return { type, namespace, name, subresource };
  }

  private discovery(pathname: string): unknown {
    const types = [...this.types.values()];
    const resources = (group: string, version: string) => ({
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group ? `${group}/${version}` : version,
      resources: types
        .filter((t) => t.group === group && t.version === version)
        .flatMap((t) => [
          {
            name: t.plural,
            singularName: t.kind.toLowerCase(),
            namespaced: t.namespaced,
            kind: t.kind,
            verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
          },
          ...(t.statusSubresource
            ? [
                {
                  name: `${t.plural}/status`,
                  singularName: '',
                  namespaced: t.namespaced,
                  kind: t.kind,
                  verbs: ['get', 'patch', 'update'],
                },
              ]
            : []),
        ]),
    });
    const p = pathname.replace(/\/+$/, '');
    if (p === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] };
    if (p === '/api/v1') return resources('', 'v1');
    if (p === '/apis') {
      const groups = new Map<string, Set<string>>();
      for (const t of types)
        if (t.group) (groups.get(t.group) ?? groups.set(t.group, new Set()).get(t.group)!).add(t.version);
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups].map(([name, versions]) => ({
          name,
          versions: [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
          preferredVersion: { groupVersion: `${name}/${[...versions][0]}`, version: [...versions][0] },
        })),
      };
    }
    const m = p.match(/^\/apis\/([^/]+)\/([^/]+)$/);
    if (m && types.some((t) => t.group === m[1] && t.version === m[2])) return resources(m[1]!, m[2]!);
    if (p === '/version') return { major: '1', minor: '33', gitVersion: 'v1.33.0-pahlevan-fake' };
    return undefined;
  }
}

function leafPaths(value: unknown, prefix: string): string[] {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) return [prefix];
    return entries.flatMap(([k, v]) => leafPaths(v, `${prefix}.${k}`));
  }
  return [prefix];
}

function getLeaf(obj: unknown, dottedPath: string): unknown {
  return getPath(obj, dottedPath.replace(/^\./, ''));
}

export function statusObject(err: ApiError): Json {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: err.message,
    reason: err.reason,
    ...(err.details ? { details: err.details as Json } : {}),
    code: err.code,
  };
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 3 * 1024 * 1024)
      throw new ApiError(413, 'RequestEntityTooLarge', 'request entity too large: limit is 3145728');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
