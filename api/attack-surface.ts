// Attack surface of one container under its learned policy: what the seccomp profile and the allow-lists still
// permit, measured against the container runtime's default profile, and one risk score that summarises it.
// Pure functions over data; reading the reference files lives in api/attack-surface-data.ts.
import type { AttackSurface, PolicySpec, PortRule } from './policy.js';
import type { OciSeccompProfile } from './seccomp.js';

/**
 * Syscalls that widen a container's reach into the kernel or into other processes, with a weight (1-10, how much
 * an attacker gains) and the reason. A learned profile that still allows one of these deserves a look.
 */
export const DANGEROUS_SYSCALLS: readonly { name: string; weight: number; reason: string }[] = [
  {
    name: 'ptrace',
    weight: 10,
    reason: 'reads and writes other processes’ memory and registers; classic sandbox escape',
  },
  { name: 'process_vm_readv', weight: 8, reason: 'reads another process’s memory without ptrace-attaching' },
  {
    name: 'process_vm_writev',
    weight: 8,
    reason: 'writes another process’s memory without ptrace-attaching',
  },
  { name: 'pidfd_getfd', weight: 5, reason: 'steals open file descriptors from another process' },
  { name: 'kcmp', weight: 3, reason: 'compares kernel objects of other processes (address-layout probing)' },
  {
    name: 'bpf',
    weight: 10,
    reason: 'loads programs into the kernel; large verifier attack surface (many CVEs)',
  },
  {
    name: 'perf_event_open',
    weight: 6,
    reason: 'kernel profiling interface; repeated privilege-escalation CVEs and info leaks',
  },
  { name: 'init_module', weight: 10, reason: 'loads kernel code' },
  { name: 'finit_module', weight: 10, reason: 'loads kernel code from a file descriptor' },
  { name: 'delete_module', weight: 6, reason: 'unloads kernel modules (e.g. security modules)' },
  { name: 'kexec_load', weight: 10, reason: 'replaces the running kernel' },
  { name: 'kexec_file_load', weight: 10, reason: 'replaces the running kernel' },
  { name: 'reboot', weight: 6, reason: 'reboots the host or disables Ctrl-Alt-Del handling' },
  {
    name: 'mount',
    weight: 8,
    reason: 'changes the filesystem view; with privileges, mounts host filesystems (escape)',
  },
  { name: 'umount2', weight: 5, reason: 'removes mounts that hide or protect host paths' },
  { name: 'move_mount', weight: 7, reason: 'new mount API: attaches mounts anywhere in the tree' },
  {
    name: 'fsopen',
    weight: 7,
    reason: 'new mount API: fsconfig heap overflow CVE-2022-0185 was reached this way',
  },
  { name: 'fsconfig', weight: 7, reason: 'new mount API: CVE-2022-0185 (container escape)' },
  { name: 'fsmount', weight: 7, reason: 'new mount API: creates mounts' },
  { name: 'open_tree', weight: 6, reason: 'new mount API: clones mount trees' },
  { name: 'mount_setattr', weight: 6, reason: 'changes mount flags (e.g. drops read-only)' },
  { name: 'pivot_root', weight: 6, reason: 'changes the root filesystem' },
  { name: 'chroot', weight: 4, reason: 'changes the root directory; with open fds, escapes it' },
  {
    name: 'unshare',
    weight: 8,
    reason: 'creates namespaces (user namespaces unlock much kernel attack surface)',
  },
  { name: 'setns', weight: 8, reason: 'joins other processes’ namespaces' },
  { name: 'keyctl', weight: 6, reason: 'kernel keyring is not namespaced; keyring CVEs (CVE-2016-0728)' },
  { name: 'add_key', weight: 5, reason: 'kernel keyring is not namespaced' },
  { name: 'request_key', weight: 5, reason: 'kernel keyring is not namespaced' },
  {
    name: 'open_by_handle_at',
    weight: 8,
    reason: 'opens files by handle outside the mount namespace (the “Shocker” escape)',
  },
  { name: 'name_to_handle_at', weight: 3, reason: 'obtains file handles for open_by_handle_at' },
  {
    name: 'userfaultfd',
    weight: 6,
    reason: 'stalls kernel page faults: makes kernel race exploits reliable',
  },
  {
    name: 'io_uring_setup',
    weight: 6,
    reason: 'io_uring: large kernel surface, bypasses per-syscall filtering',
  },
  { name: 'io_uring_enter', weight: 4, reason: 'io_uring: submits work that seccomp does not see' },
  { name: 'io_uring_register', weight: 4, reason: 'io_uring: registers buffers and files' },
  { name: 'iopl', weight: 8, reason: 'raw I/O port access' },
  { name: 'ioperm', weight: 8, reason: 'raw I/O port access' },
  { name: 'modify_ldt', weight: 4, reason: 'x86 LDT changes; history of kernel CVEs' },
  { name: 'swapon', weight: 4, reason: 'adds host swap space' },
  { name: 'swapoff', weight: 4, reason: 'removes host swap space' },
  { name: 'syslog', weight: 3, reason: 'reads the kernel log (addresses, other tenants’ messages)' },
  { name: 'acct', weight: 3, reason: 'switches process accounting on the host' },
  { name: 'settimeofday', weight: 3, reason: 'changes the host clock' },
  { name: 'clock_settime', weight: 3, reason: 'changes the host clock' },
  { name: 'personality', weight: 2, reason: 'can switch off address-space randomisation' },
  { name: 'memfd_create', weight: 2, reason: 'anonymous executable files: fileless malware staging' },
  { name: 'mknod', weight: 3, reason: 'creates device nodes' },
  { name: 'mknodat', weight: 3, reason: 'creates device nodes' },
  { name: 'lookup_dcookie', weight: 2, reason: 'kernel profiling interface' },
  { name: 'quotactl', weight: 2, reason: 'changes host filesystem quotas' },
  { name: 'uselib', weight: 2, reason: 'obsolete library loader' },
];

const DANGEROUS_BY_NAME = new Map(DANGEROUS_SYSCALLS.map((d) => [d.name, d]));

/** Writable paths that hold no state worth protecting: they score nothing. */
const HARMLESS_WRITABLE = [
  /^\/dev\/(null|zero|full|random|urandom|tty|ptmx|console|stdout|stderr)$/,
  /^\/dev\/pts(\/|$)/,
  /^\/proc\/self\/fd\/[0-9]+$/,
  /^\/dev\/fd\/[0-9]+$/,
];
/** Writable paths under these prefixes change the system or read secrets' neighbourhoods: they score more. */
const SENSITIVE_PREFIXES = [
  '/etc',
  '/usr',
  '/bin',
  '/sbin',
  '/lib',
  '/lib64',
  '/boot',
  '/root',
  '/proc',
  '/sys',
  '/dev',
  '/var/run/secrets',
  '/run/secrets',
];
/** Executables that give an attacker a general-purpose tool: a shell or a downloader. */
const TOOL_EXECUTABLE = /(^|\/)(sh|bash|dash|ash|zsh|ksh|busybox|nc|ncat|netcat|curl|wget|socat)$/;

// ------------------------------------------------------------------------------------------------------------
// Syscall sets

/** Profile in the Docker-compatible superset format (the runtime default is written this way). */
export interface DockerSeccompProfile {
  defaultAction: string;
  archMap?: { architecture: string; subArchitectures?: string[] }[];
  syscalls?: {
    names?: string[];
    name?: string;
    action: string;
    args?: unknown[] | null;
    includes?: { caps?: string[]; arches?: string[]; minKernel?: string };
    excludes?: { caps?: string[]; arches?: string[] };
  }[];
}

/** Docker's arch names (used in includes/excludes) for the SCMP_ARCH_* constants. */
const DOCKER_ARCH: Record<string, string[]> = {
  SCMP_ARCH_X86_64: ['amd64'],
  SCMP_ARCH_AARCH64: ['arm64'],
};

const ALLOWING = new Set(['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_TRACE']);

/**
 * Syscall names a profile lets through on `arch`, given the container's capabilities. A name counts as allowed
 * when any applicable rule allows it, also with argument conditions (it is reachable). With a permissive
 * default action, everything the architecture has is allowed except what rules deny. Names the architecture
 * does not have are dropped (libseccomp ignores them too).
 */
export function allowedSyscalls(
  profile: DockerSeccompProfile | OciSeccompProfile,
  archSyscalls: ReadonlySet<string>,
  options: { arch?: string; caps?: readonly string[] } = {},
): Set<string> {
  const arch = options.arch ?? 'SCMP_ARCH_X86_64';
  const dockerArches = DOCKER_ARCH[arch] ?? [];
  const caps = new Set(options.caps ?? []);
  const applies = (rule: NonNullable<DockerSeccompProfile['syscalls']>[number]): boolean => {
    const inc = rule.includes ?? {};
    const exc = rule.excludes ?? {};
    if (inc.caps?.length && !inc.caps.every((c) => caps.has(c))) return false;
    if (inc.arches?.length && !inc.arches.some((a) => dockerArches.includes(a))) return false;
    if (exc.caps?.length && exc.caps.some((c) => caps.has(c))) return false;
    if (exc.arches?.length && exc.arches.some((a) => dockerArches.includes(a))) return false;
    return true;
  };
  const rules = (profile.syscalls ?? []) as NonNullable<DockerSeccompProfile['syscalls']>;
  const permissiveDefault = ALLOWING.has(profile.defaultAction);
  const result = new Set<string>(permissiveDefault ? archSyscalls : []);
  for (const rule of rules) {
    if (!applies(rule)) continue;
    const names = rule.names ?? (rule.name ? [rule.name] : []);
    for (const name of names) {
      if (!archSyscalls.has(name)) continue;
      if (ALLOWING.has(rule.action)) result.add(name);
      else if (permissiveDefault && !rule.args?.length) result.delete(name);
    }
  }
  return result;
}

// ------------------------------------------------------------------------------------------------------------
// Behaviour (what `pahlevan record` learned), normalised

export interface PortUse {
  protocol: 'tcp' | 'udp';
  port: number;
}
export interface SurfaceBehaviour {
  execs: string[];
  files: { path: string; write: boolean }[];
  listening: PortUse[];
  egress: PortUse[];
}

export const EMPTY_BEHAVIOUR: SurfaceBehaviour = { execs: [], files: [], listening: [], egress: [] };

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Entries of a list, or of a {key: value} map turned into [{key, ...value}] objects. */
function entries(value: unknown, keyName: string): Json[] {
  if (Array.isArray(value)) return value.map((v) => (isObject(v) ? v : { [keyName]: v }));
  if (isObject(value))
    return Object.entries(value).map(([k, v]) =>
      isObject(v) ? { [keyName]: k, ...v } : { [keyName]: k, count: v },
    );
  return [];
}

function writeIntent(file: Json): boolean {
  if (typeof file.write === 'boolean') return file.write;
  if (typeof file.writable === 'boolean') return file.writable;
  for (const key of ['intent', 'access', 'mode']) {
    const v = file[key];
    if (typeof v === 'string') return /w/i.test(v);
    if (Array.isArray(v)) return v.some((x) => typeof x === 'string' && /w/i.test(x));
  }
  if (typeof file.writes === 'number') return file.writes > 0;
  return false;
}

function protocolOf(entry: Json): 'tcp' | 'udp' {
  const p = String(entry.protocol ?? entry.proto ?? 'tcp').toLowerCase();
  return p.startsWith('udp') ? 'udp' : 'tcp';
}

// accept reports the peer, not the listening port: bind/listen carry the port the container serves on.
const LISTEN_KINDS = /^(listen|bind|ingress|inbound|server)$/i;
const EGRESS_KINDS = /^(connect|egress|outbound|sendto|sendmsg|client)$/i;

/**
 * Reads a behaviour.json as written by `pahlevan record` into the sets the attack surface needs. Tolerates lists
 * or {path: count} maps and the usual field spellings; throws with the field name when something is not shaped
 * like a behaviour at all.
 */
export function parseBehaviour(input: unknown): SurfaceBehaviour {
  if (!isObject(input)) throw new Error('behaviour: expected a JSON object with execs, files and ports');
  const pathOf = (e: Json): string | undefined => {
    const p = e.path ?? e.binary ?? e.exe ?? e.filename;
    return typeof p === 'string' ? p : undefined;
  };
  const execs = entries(input.execs, 'path')
    .map(pathOf)
    .filter((p): p is string => !!p);
  const files = entries(input.files, 'path').flatMap((f) => {
    const path = pathOf(f);
    return path ? [{ path, write: writeIntent(f) }] : [];
  });
  const listening: PortUse[] = [];
  const egress: PortUse[] = [];
  const add = (list: PortUse[], e: Json): void => {
    const port = Number(e.port ?? e.localPort ?? e.dport ?? e.remotePort);
    if (Number.isInteger(port) && port > 0 && port < 65536) list.push({ protocol: protocolOf(e), port });
  };
  const net = input.ports ?? input.network ?? input.net;
  if (isObject(net) && !('port' in net)) {
    // Grouped form: {listen: [...], bind: [...], connect: [...]}.
    for (const [kind, list] of Object.entries(net)) {
      for (const e of entries(list, 'port')) {
        if (LISTEN_KINDS.test(kind)) add(listening, e);
        else if (EGRESS_KINDS.test(kind)) add(egress, e);
      }
    }
  } else {
    for (const e of entries(net, 'port')) {
      const kind = String(e.kind ?? e.op ?? e.type ?? e.direction ?? e.event ?? '');
      if (LISTEN_KINDS.test(kind)) add(listening, e);
      else if (EGRESS_KINDS.test(kind)) add(egress, e);
    }
  }
  return { execs, files, listening, egress };
}

// ------------------------------------------------------------------------------------------------------------
// The score

export interface RiskBreakdown {
  /** 0-30: allowed syscalls as a share of the runtime default's. */
  syscalls: number;
  /** 0-30: sum of the weights of dangerous syscalls still allowed. */
  dangerous: number;
  /** 0-15: 2 per listening port, 3 per egress destination (6 per port range). */
  network: number;
  /** 0-15: 3 per writable path, 6 under a sensitive prefix, 0 for /dev/null-like paths. */
  files: number;
  /** 0-10: 1 per executable, +5 once if a shell or downloader may run. */
  execs: number;
}

/**
 * Risk score, 0 (nothing reachable) to 100 (unconfined), the sum of five capped parts:
 *   syscalls  = 30 × min(1, allowed / runtimeDefault)
 *   dangerous = min(30, Σ weight of each dangerous syscall still allowed)        (weights: DANGEROUS_SYSCALLS)
 *   network   = min(15, 2 × listening ports + 3 × egress ports + 6 × egress port ranges)
 *   files     = min(15, Σ per writable path: 0 harmless (/dev/null…), 6 under /etc /usr /proc /sys /root
 *                        /var/run/secrets …, else 3)
 *   execs     = min(10, executables + 5 if any is a shell or downloader (sh, bash, busybox, curl, wget, nc…))
 * rounded to one decimal. The runtime default alone (no allow-lists) scores 60 on syscalls; a learned profile
 * of a small web server typically scores 10-25.
 */
export function riskScore(parts: {
  allowed: number;
  runtimeDefault: number;
  dangerous: readonly string[];
  listening: number;
  egressPorts: number;
  egressRanges: number;
  writablePaths: readonly string[];
  executables: readonly string[];
}): { score: number; breakdown: RiskBreakdown } {
  const round1 = (x: number): number => Math.round(x * 10) / 10;
  const syscalls = 30 * Math.min(1, parts.runtimeDefault > 0 ? parts.allowed / parts.runtimeDefault : 1);
  const dangerous = Math.min(
    30,
    parts.dangerous.reduce((sum, name) => sum + (DANGEROUS_BY_NAME.get(name)?.weight ?? 0), 0),
  );
  const network = Math.min(15, 2 * parts.listening + 3 * parts.egressPorts + 6 * parts.egressRanges);
  const files = Math.min(
    15,
    parts.writablePaths.reduce((sum, p) => sum + writablePathWeight(p), 0),
  );
  const tool = parts.executables.some((e) => TOOL_EXECUTABLE.test(e)) ? 5 : 0;
  const execs = Math.min(10, parts.executables.length + tool);
  const breakdown = {
    syscalls: round1(syscalls),
    dangerous,
    network,
    files,
    execs,
  };
  return { score: round1(syscalls + dangerous + network + files + execs), breakdown };
}

export function writablePathWeight(path: string): number {
  if (HARMLESS_WRITABLE.some((re) => re.test(path))) return 0;
  if (SENSITIVE_PREFIXES.some((p) => path === p || path.startsWith(p + '/'))) return 6;
  return 3;
}

// ------------------------------------------------------------------------------------------------------------
// Putting it together

/** The status shape (api/policy.ts AttackSurface) plus the detail the CLI and the demo show. */
export interface AttackSurfaceReport extends AttackSurface {
  /** Allowed syscall names, sorted. */
  syscalls: string[];
  /** Dangerous syscalls the runtime default allows but this profile does not: what learning removed. */
  dangerousRemoved: string[];
  /** Allowed here but denied by the runtime default (worth a look: the workload needs more than usual). */
  outsideRuntimeDefault: string[];
  /** Share of the runtime default's syscalls this profile denies, 0-1. */
  reductionVsDefault: number;
  /** The same score for the runtime default profile with the same allow-lists: the baseline. */
  riskScoreRuntimeDefault: number;
  riskBreakdown: RiskBreakdown;
}

export interface SurfaceInput {
  container: string;
  profile: OciSeccompProfile | DockerSeccompProfile;
  behaviour?: SurfaceBehaviour;
  /** The policy's explicit additions (allow/deny syscalls, file globs, port rules, DNS). */
  spec?: Pick<PolicySpec, 'syscalls' | 'files' | 'execs' | 'network'>;
  /** Syscalls the runtime default allows on this arch (see allowedSyscalls). */
  runtimeDefault: ReadonlySet<string>;
  /** Every syscall name of the architecture. */
  archSyscalls: ReadonlySet<string>;
  arch?: string;
}

const sortedUnique = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

function portRuleText(rule: PortRule): string {
  const ports =
    rule.endPort && rule.endPort !== rule.port ? `${rule.port}-${rule.endPort}` : String(rule.port);
  return `${ports}/${rule.protocol.toLowerCase()}${rule.cidr ? ` to ${rule.cidr}` : ''}`;
}

function portOrder(a: string, b: string): number {
  return parseInt(a, 10) - parseInt(b, 10) || a.localeCompare(b);
}

export function computeAttackSurface(input: SurfaceInput): AttackSurfaceReport {
  const behaviour = input.behaviour ?? EMPTY_BEHAVIOUR;
  const allowed = allowedSyscalls(input.profile, input.archSyscalls, input.arch ? { arch: input.arch } : {});
  // The policy's explicit additions: allow adds, deny wins.
  for (const name of input.spec?.syscalls?.allow ?? []) if (input.archSyscalls.has(name)) allowed.add(name);
  for (const name of input.spec?.syscalls?.deny ?? []) allowed.delete(name);

  const dangerousAllowed = DANGEROUS_SYSCALLS.filter((d) => allowed.has(d.name)).map((d) => d.name);
  const dangerousRemoved = DANGEROUS_SYSCALLS.filter(
    (d) => input.runtimeDefault.has(d.name) && !allowed.has(d.name),
  ).map((d) => d.name);
  const outsideRuntimeDefault = sortedUnique([...allowed].filter((n) => !input.runtimeDefault.has(n)));

  const listening = sortedUnique([
    ...behaviour.listening.map((p) => `${p.port}/${p.protocol}`),
    ...(input.spec?.network?.ingress ?? []).map(portRuleText),
  ]).sort(portOrder);
  const ruleEgress = (input.spec?.network?.egress ?? []).map(portRuleText);
  const dns = input.spec?.network?.allowDNS ? ['53/udp', '53/tcp'] : [];
  const egress = sortedUnique([
    ...behaviour.egress.map((p) => `${p.port}/${p.protocol}`),
    ...ruleEgress,
    ...dns,
  ]).sort(portOrder);
  const egressRanges = egress.filter((e) => /^[0-9]+-[0-9]+\//.test(e)).length;

  const fileDeny = input.spec?.files?.deny ?? [];
  const writablePaths = sortedUnique([
    ...behaviour.files.filter((f) => f.write).map((f) => f.path),
    // A policy's file allow-globs permit opening for writing as well: count them as writable.
    ...(input.spec?.files?.allow ?? []),
  ]).filter((p) => !fileDeny.includes(p));
  const execDeny = input.spec?.execs?.deny ?? [];
  const executables = sortedUnique([...behaviour.execs, ...(input.spec?.execs?.allow ?? [])]).filter(
    (p) => !execDeny.includes(p),
  );

  const common = {
    listening: listening.length,
    egressPorts: egress.length - egressRanges,
    egressRanges,
    writablePaths,
    executables,
  };
  const { score, breakdown } = riskScore({
    allowed: allowed.size,
    runtimeDefault: input.runtimeDefault.size,
    dangerous: dangerousAllowed,
    ...common,
  });
  const baseline = riskScore({
    allowed: input.runtimeDefault.size,
    runtimeDefault: input.runtimeDefault.size,
    dangerous: DANGEROUS_SYSCALLS.filter((d) => input.runtimeDefault.has(d.name)).map((d) => d.name),
    ...common,
  });
  const reduction =
    input.runtimeDefault.size > 0
      ? Math.max(
          0,
          1 - [...allowed].filter((n) => input.runtimeDefault.has(n)).length / input.runtimeDefault.size,
        )
      : 0;

  return {
    container: input.container,
    syscallsAllowed: allowed.size,
    runtimeDefaultSyscalls: input.runtimeDefault.size,
    dangerousAllowed,
    listeningPorts: listening,
    egressPorts: egress,
    writablePaths,
    executables,
    riskScore: score,
    syscalls: sortedUnique(allowed),
    dangerousRemoved,
    outsideRuntimeDefault,
    reductionVsDefault: Math.round(reduction * 1000) / 1000,
    riskScoreRuntimeDefault: baseline.score,
    riskBreakdown: breakdown,
  };
}

/** The fields that go into a policy's status.attackSurface (api/policy.ts AttackSurface). */
export function toStatus(report: AttackSurfaceReport): AttackSurface {
  return {
    container: report.container,
    syscallsAllowed: report.syscallsAllowed,
    runtimeDefaultSyscalls: report.runtimeDefaultSyscalls,
    dangerousAllowed: report.dangerousAllowed,
    listeningPorts: report.listeningPorts,
    egressPorts: report.egressPorts,
    writablePaths: report.writablePaths,
    executables: report.executables,
    riskScore: report.riskScore,
  };
}

/** Why a dangerous syscall is listed (for explanations in the CLI). */
export function dangerReason(name: string): string | undefined {
  return DANGEROUS_BY_NAME.get(name)?.reason;
}

/** A human-readable report, one block per container; fits a terminal. */
export function formatSurfaceText(reports: readonly AttackSurfaceReport[]): string {
  const lines: string[] = [];
  const list = (xs: readonly string[], max = 8): string =>
    xs.length === 0
      ? '-'
      : xs.length <= max
        ? xs.join(', ')
        : `${xs.slice(0, max).join(', ')}, … (+${xs.length - max})`;
  for (const r of reports) {
    const pct = Math.round(r.reductionVsDefault * 100);
    lines.push(`CONTAINER ${r.container}`);
    lines.push(
      `  syscalls allowed    ${r.syscallsAllowed} of ${r.runtimeDefaultSyscalls} in the runtime default (${pct}% fewer)`,
    );
    lines.push(`  dangerous allowed   ${list(r.dangerousAllowed)}`);
    lines.push(`  dangerous removed   ${list(r.dangerousRemoved)}`);
    if (r.outsideRuntimeDefault.length > 0)
      lines.push(`  beyond the default  ${list(r.outsideRuntimeDefault)}`);
    lines.push(`  listening ports     ${list(r.listeningPorts)}`);
    lines.push(`  egress ports        ${list(r.egressPorts)}`);
    lines.push(`  writable paths      ${list(r.writablePaths, 6)}`);
    lines.push(`  executables         ${list(r.executables, 6)}`);
    const b = r.riskBreakdown;
    lines.push(
      `  risk score          ${r.riskScore} / 100 (runtime default: ${r.riskScoreRuntimeDefault}) ` +
        `= syscalls ${b.syscalls} + dangerous ${b.dangerous} + network ${b.network} + files ${b.files} + execs ${b.execs}`,
    );
  }
  return lines.join('\n');
}

/** Lines for a policy's status view (`pahlevan status NAME`): one per container. */
export function formatSurfaceStatusLines(surfaces: readonly AttackSurface[]): string[] {
  return surfaces.map((s) => {
    const dangerous = s.dangerousAllowed.length
      ? `dangerous: ${s.dangerousAllowed.join(', ')}`
      : 'no dangerous syscalls';
    return (
      `  ${s.container}: risk ${s.riskScore}/100; ${s.syscallsAllowed} of ${s.runtimeDefaultSyscalls} syscalls ` +
      `(${dangerous}); listens ${s.listeningPorts.join(', ') || '-'}; egress ${s.egressPorts.join(', ') || '-'}; ` +
      `${s.writablePaths.length} writable paths, ${s.executables.length} executables`
    );
  });
}
