// Pure merge of every node's observations for one policy, per container name: union of what was seen, coverage
// counts (how many nodes / pods showed each item), the policy's explicit allow/deny additions (deny wins), and
// the profile content with its hash. Same input, same output, whatever the order of nodes or keys.
import type { PolicySpec } from '../../api/policy.js';
import type { DeniedBehaviour, ObservationSpec } from '../../api/observation.js';
import {
  canonicalJson,
  profileContentHash,
  type FileRule,
  type PortAllow,
  type ProfileContent,
} from '../../api/profile.js';
import {
  ALWAYS_ALLOWED_SYSCALLS,
  ARCH_AMD64,
  ARCH_ARM64,
  type OciSeccompProfile,
} from '../../api/seccomp.js';
import { sha256Hex } from '../../api/names.js';

export interface Coverage {
  nodes: number;
  pods: number;
  count: number;
}

export interface MergedContainer {
  container: string;
  images: string[];
  pods: number;
  nodes: number;
  syscalls: Map<string, Coverage>;
  execs: Map<string, Coverage>;
  files: Map<string, Coverage & { write: boolean }>;
  ports: Map<
    string,
    Coverage & { direction: 'listen' | 'egress'; protocol: 'TCP' | 'UDP'; port: number; address?: string }
  >;
  /** The published content: learned ∪ explicit allows ∪ `extra`, minus explicit denies. */
  content: ProfileContent;
  hash: string;
  /** Fingerprint of what was learned (not of the policy's additions): changes only with new behaviour. */
  behaviourHash: string;
  /** Distinct learned items: syscalls + execs + files + ports. */
  behaviourCount: number;
}

export interface NodeSummary {
  node: string;
  agentStartedAt?: string;
  violationsTotal: number;
  violationsByLayer: Record<string, number>;
  active: string[];
  missing: { layer: string; reason: string }[];
  installed: Set<string>;
}

export interface MergedPolicy {
  containers: MergedContainer[];
  nodes: NodeSummary[];
  podsObserved: number;
  denied: DeniedBehaviour[];
  totals: { syscalls: number; execs: number; files: number; ports: number };
}

/** Things added to every container's profile besides what was learned (Relax, carried-over versions). */
export interface ExtraAllowances {
  syscalls?: string[];
  execs?: string[];
  files?: FileRule[];
  ports?: PortAllow[];
}

const ERRNO_EPERM = 1;

/** Glob over paths: `*` matches inside one segment, `**` across segments, `?` one character. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function matchesAny(path: string, patterns: RegExp[]): boolean {
  return patterns.some((p) => p.test(path));
}

function portKey(p: { direction: string; protocol: string; port: number; address?: string }): string {
  return `${p.direction}/${p.protocol}/${p.port}/${p.address ?? ''}`;
}

function bump<T extends Coverage>(
  map: Map<string, T>,
  key: string,
  pods: number,
  count: number,
  init: () => T,
): T {
  let acc = map.get(key);
  if (!acc) {
    acc = init();
    map.set(key, acc);
  }
  acc.nodes += 1;
  acc.pods += pods;
  acc.count += count;
  return acc;
}

interface Accumulator {
  container: string;
  images: Set<string>;
  pods: Set<string>;
  nodes: number;
  syscalls: Map<string, Coverage>;
  execs: Map<string, Coverage>;
  files: Map<string, Coverage & { write: boolean }>;
  ports: MergedContainer['ports'];
}

const byKey = <T>(a: [string, T], b: [string, T]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
const sortedKeys = (m: Map<string, unknown>) => [...m.keys()].sort();

/** Merges the observations of one policy. `extra` is added to every container's content (deny still wins). */
export function mergeObservations(
  spec: Pick<PolicySpec, 'syscalls' | 'files' | 'execs' | 'network'>,
  observations: ObservationSpec[],
  extra: Record<string, ExtraAllowances> = {},
): MergedPolicy {
  const acc = new Map<string, Accumulator>();
  const nodes: NodeSummary[] = [];
  const denied = new Map<string, DeniedBehaviour>();
  const podsAll = new Set<string>();
  for (const obs of observations) {
    nodes.push({
      node: obs.node,
      agentStartedAt: obs.agent?.startedAt,
      violationsTotal: obs.violations?.total ?? 0,
      violationsByLayer: { ...(obs.violations?.byLayer ?? {}) },
      active: [...(obs.layers?.active ?? [])].sort(),
      missing: [...(obs.layers?.missing ?? [])].sort((a, b) => (a.layer < b.layer ? -1 : 1)),
      installed: new Set((obs.installed ?? []).map((i) => i.hash)),
    });
    for (const d of obs.violations?.denied ?? []) {
      const k = `${d.container}\0${d.layer}\0${d.what}`;
      const prev = denied.get(k);
      if (prev) {
        prev.count += d.count;
        if (d.lastAt && (!prev.lastAt || d.lastAt > prev.lastAt)) prev.lastAt = d.lastAt;
      } else denied.set(k, { ...d });
    }
    for (const c of obs.containers ?? []) {
      let a = acc.get(c.name);
      if (!a) {
        a = {
          container: c.name,
          images: new Set(),
          pods: new Set(),
          nodes: 0,
          syscalls: new Map(),
          execs: new Map(),
          files: new Map(),
          ports: new Map(),
        };
        acc.set(c.name, a);
      }
      a.nodes += 1;
      for (const image of c.images) a.images.add(image);
      for (const pod of c.pods) {
        a.pods.add(pod);
        podsAll.add(pod);
      }
      const sys = a.syscalls;
      const seen = c.syscalls;
      // for-in, not Object.keys: on objects from JSON.parse it walks V8's enum cache without an array.
      for (const name in seen) {
        const s = seen[name]!;
        let e = sys.get(name);
        if (!e) sys.set(name, (e = { nodes: 0, pods: 0, count: 0 }));
        e.nodes += 1;
        e.pods += s.pods;
        e.count += s.count;
      }
      for (const path in c.execs) {
        const s = c.execs[path]!;
        bump(a.execs, path, s.pods, s.count, () => ({ nodes: 0, pods: 0, count: 0 }));
      }
      for (const path in c.files) {
        const s = c.files[path]!;
        const e = bump(a.files, path, s.pods, s.count, () => ({ nodes: 0, pods: 0, count: 0, write: false }));
        if (s.write) e.write = true;
      }
      for (const p of c.ports) {
        bump(a.ports, portKey(p), p.pods, p.count, () => ({
          nodes: 0,
          pods: 0,
          count: 0,
          direction: p.direction,
          protocol: p.protocol,
          port: p.port,
          ...(p.address !== undefined ? { address: p.address } : {}),
        }));
      }
    }
  }

  const containers = [...acc.values()]
    .sort((x, y) => (x.container < y.container ? -1 : 1))
    .map((a) => finish(a, spec, extra[a.container] ?? {}));
  nodes.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  const totals = { syscalls: 0, execs: 0, files: 0, ports: 0 };
  for (const c of containers) {
    totals.syscalls += c.syscalls.size;
    totals.execs += c.execs.size;
    totals.files += c.files.size;
    totals.ports += c.ports.size;
  }
  return {
    containers,
    nodes,
    podsObserved: podsAll.size,
    denied: [...denied.entries()].sort(byKey).map(([, d]) => d),
    totals,
  };
}

function finish(
  a: Accumulator,
  spec: Pick<PolicySpec, 'syscalls' | 'files' | 'execs' | 'network'>,
  extra: ExtraAllowances,
): MergedContainer {
  const syscallNames = sortedKeys(a.syscalls);
  const execPaths = sortedKeys(a.execs);
  const filePaths = sortedKeys(a.files);
  const portKeys = sortedKeys(a.ports);
  const behaviourHash = sha256Hex(
    canonicalJson({
      s: syscallNames,
      e: execPaths,
      f: filePaths.map((p) => [p, a.files.get(p)!.write]),
      p: portKeys,
    }),
  );

  // Syscalls: learned ∪ allow ∪ extra, minus deny.
  const denySys = new Set(spec.syscalls?.deny ?? []);
  // The timing-dependent syscalls of the runtimes and of signal delivery: a recording sees them only by
  // chance, and a container that needs one without it crashes at start (api/seccomp.ts).
  const allowSys = new Set<string>([
    ...ALWAYS_ALLOWED_SYSCALLS,
    ...syscallNames,
    ...(spec.syscalls?.allow ?? []),
    ...(extra.syscalls ?? []),
  ]);
  const allowedSyscalls = [...allowSys].filter((s) => !denySys.has(s)).sort();
  const seccomp: OciSeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: ERRNO_EPERM,
    architectures: [ARCH_AMD64, ARCH_ARM64],
    syscalls: allowedSyscalls.length > 0 ? [{ names: allowedSyscalls, action: 'SCMP_ACT_ALLOW' }] : [],
  };

  // Execs and files: learned ∪ allow ∪ extra, minus anything a deny glob matches.
  const denyExec = (spec.execs?.deny ?? []).map(globToRegExp);
  const execs = [...new Set([...execPaths, ...(spec.execs?.allow ?? []), ...(extra.execs ?? [])])]
    .filter((p) => !matchesAny(p, denyExec))
    .sort();
  const denyFile = (spec.files?.deny ?? []).map(globToRegExp);
  const files = new Map<string, boolean>();
  for (const p of filePaths) files.set(p, a.files.get(p)!.write);
  for (const p of spec.files?.allow ?? []) files.set(p, true);
  for (const f of extra.files ?? []) files.set(f.path, (files.get(f.path) ?? false) || f.write);
  const fileRules: FileRule[] = [...files.entries()]
    .filter(([p]) => !matchesAny(p, denyFile))
    .sort(byKey)
    .map(([path, write]) => ({ path, write }));

  // Ports: learned ∪ explicit rules ∪ DNS/loopback when allowed.
  const ports = new Map<string, PortAllow>();
  const addPort = (p: PortAllow) => ports.set(canonicalJson(p), p);
  for (const k of portKeys) {
    const p = a.ports.get(k)!;
    addPort({
      direction: p.direction,
      protocol: p.protocol,
      port: p.port,
      ...(p.direction === 'egress' && p.address ? { cidr: p.address } : {}),
    });
  }
  for (const r of spec.network?.ingress ?? [])
    addPort({
      direction: 'listen',
      protocol: r.protocol,
      port: r.port,
      ...opt('endPort', r.endPort),
      ...opt('cidr', r.cidr),
    });
  for (const r of spec.network?.egress ?? [])
    addPort({
      direction: 'egress',
      protocol: r.protocol,
      port: r.port,
      ...opt('endPort', r.endPort),
      ...opt('cidr', r.cidr),
    });
  if (spec.network?.allowDNS ?? true) {
    addPort({ direction: 'egress', protocol: 'UDP', port: 53 });
    addPort({ direction: 'egress', protocol: 'TCP', port: 53 });
  }
  if (spec.network?.allowLoopback ?? true)
    for (const protocol of ['TCP', 'UDP'] as const)
      for (const cidr of ['127.0.0.0/8', '::1/128'])
        addPort({ direction: 'egress', protocol, port: 1, endPort: 65535, cidr });
  for (const p of extra.ports ?? []) addPort(p);

  const content: ProfileContent = {
    seccomp,
    execs,
    files: fileRules,
    ports: [...ports.entries()].sort(byKey).map(([, p]) => p),
    images: [...a.images].sort(),
  };
  return {
    container: a.container,
    images: [...a.images].sort(),
    pods: a.pods.size,
    nodes: a.nodes,
    syscalls: a.syscalls,
    execs: a.execs,
    files: a.files,
    ports: a.ports,
    content,
    hash: profileContentHash(content),
    behaviourHash,
    behaviourCount: a.syscalls.size + a.execs.size + a.files.size + a.ports.size,
  };
}

function opt<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

/** Per syscall: nodes and pods that showed it (the profile's coverage record), keys sorted. */
export function syscallCoverage(c: MergedContainer): Record<string, { nodes: number; pods: number }> {
  const out: Record<string, { nodes: number; pods: number }> = {};
  for (const name of sortedKeys(c.syscalls)) {
    const e = c.syscalls.get(name)!;
    out[name] = { nodes: e.nodes, pods: e.pods };
  }
  return out;
}

/**
 * What the Relax strategy adds: denied behaviour of one container turned into allowances. Accepts the
 * documented `what` forms (syscall name, path, `<listen|egress>/<TCP|UDP>/<port>`) and the agent's enforcer
 * texts (`ptrace (101) -> -1`, `tcp bind :8080`, `tcp from 10.0.0.1 to port 80`, `tcp 1.2.3.4:443`,
 * `udp [fd00::1]:53`), with or without a trailing ` (allowed: Monitor)`.
 */
export function allowancesFromDenied(denied: DeniedBehaviour[], container: string): ExtraAllowances {
  const out: Required<ExtraAllowances> = { syscalls: [], execs: [], files: [], ports: [] };
  const proto = (p: string) => (p.toUpperCase() === 'UDP' ? ('UDP' as const) : ('TCP' as const));
  for (const d of denied) {
    if (d.container !== container) continue;
    const what = d.what.replace(/ \(allowed: \w+\)$/, '').trim();
    let m: RegExpMatchArray | null;
    if (d.layer === 'syscalls') {
      m = what.match(/^([a-z_][a-z0-9_]*)\b/);
      if (m) out.syscalls.push(m[1]!);
    } else if (d.layer === 'execs' && what.startsWith('/')) out.execs.push(what);
    else if (d.layer === 'files' && what.startsWith('/')) out.files.push({ path: what, write: true });
    else if (d.layer === 'network') {
      if ((m = what.match(/^(listen|egress)\/(TCP|UDP)\/(\d+)$/)))
        out.ports.push({
          direction: m[1] as 'listen' | 'egress',
          protocol: proto(m[2]!),
          port: Number(m[3]),
        });
      else if (
        (m = what.match(/^(tcp|udp) bind :(\d+)$/)) ||
        (m = what.match(/^(tcp|udp) from \S+ to port (\d+)$/))
      )
        out.ports.push({ direction: 'listen', protocol: proto(m[1]!), port: Number(m[2]) });
      else if ((m = what.match(/^(tcp|udp) \[?([0-9a-fA-F:.]+?)\]?:(\d+)$/)))
        out.ports.push({
          direction: 'egress',
          protocol: proto(m[1]!),
          port: Number(m[3]),
          cidr: m[2]!.includes(':') ? `${m[2]}/128` : `${m[2]}/32`,
        });
    }
  }
  return unionAllowances(out, {}) as Required<ExtraAllowances>;
}

/** Union of two allowance sets (sorted, deduplicated). */
export function unionAllowances(a: ExtraAllowances, b: ExtraAllowances): ExtraAllowances {
  const files = new Map<string, boolean>();
  for (const f of [...(a.files ?? []), ...(b.files ?? [])])
    files.set(f.path, (files.get(f.path) ?? false) || f.write);
  const ports = new Map<string, PortAllow>();
  for (const p of [...(a.ports ?? []), ...(b.ports ?? [])]) ports.set(canonicalJson(p), p);
  return {
    syscalls: [...new Set([...(a.syscalls ?? []), ...(b.syscalls ?? [])])].sort(),
    execs: [...new Set([...(a.execs ?? []), ...(b.execs ?? [])])].sort(),
    files: [...files.entries()].sort(byKey).map(([path, write]) => ({ path, write })),
    ports: [...ports.entries()].sort(byKey).map(([, p]) => p),
  };
}

/** A published profile's content seen as allowances (to carry a relaxed version over into the next one). */
export function allowancesOf(content: ProfileContent): ExtraAllowances {
  return {
    syscalls: content.seccomp.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names),
    execs: content.execs,
    files: content.files,
    ports: content.ports,
  };
}
