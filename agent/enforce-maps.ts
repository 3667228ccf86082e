// Byte layouts of the enforcement maps and events (bpf/netpolicy.bpf.c, bpf/lsm.bpf.c,
// bpf/seccomp_watch.bpf.c, bpf/enforce.bpf.h), and the plans that fill them: a container's policy
// becomes a list of map writes. The same plan is sent to the helper by the agent and replayed by the
// qemu-booted kernel in test/lsm-qemu/, so what is proven there is what the agent does. Pure functions.
import type { Mode } from '../api/policy.js';

export const MODE_VALUE: Record<Mode | 'Off', number> = { Off: 0, Monitor: 1, Enforce: 2, Alert: 3 };
export const MODE_NAME = ['Off', 'Monitor', 'Enforce', 'Alert'] as const;

export const KIND = {
  connect: 1,
  bind: 2,
  ingress: 3,
  sendmsg: 4,
  file: 5,
  exec: 6,
  syscall: 7,
} as const;
export type ViolationKind = keyof typeof KIND;
const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k])) as Record<
  number,
  ViolationKind
>;

export const NP_ALLOW_DNS = 1;
export const NP_ALLOW_LOOPBACK = 2;
export const NP_DIR = { egress: 1, bind: 2, ingress: 3 } as const;
export const IPPROTO = { TCP: 6, UDP: 17 } as const;
export const LSM_KIND = { file: 1, exec: 2 } as const;
export const ALLOW_FLAG = { file: 1, subtree: 2 } as const;

/** One map write; `flag` as in the helper protocol. */
export interface MapWrite {
  obj: string;
  map: string;
  key: Buffer;
  value: Buffer;
  flag?: 'any' | 'noexist' | 'exist';
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, n));
  return b;
};

// ---------- addresses ----------

/** An IPv4 or IPv6 address as 16 bytes (IPv4 as ::ffff:a.b.c.d), like the BPF side. */
export function addressBytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  if (address.includes('.') && !address.includes(':')) {
    const octets = address.split('.').map(Number);
    if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255))
      throw new Error(`bad IPv4 address ${JSON.stringify(address)}`);
    out[10] = 0xff;
    out[11] = 0xff;
    octets.forEach((o, i) => (out[12 + i] = o));
    return out;
  }
  if (address.split('::').length > 2) throw new Error(`bad IPv6 address ${JSON.stringify(address)}`);
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const parse = (s: string | undefined): number[] => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const words =
    tail === undefined
      ? left
      : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff))
    throw new Error(`bad IPv6 address ${JSON.stringify(address)}`);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

export function formatAddress(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(bytes.readUInt16BE(i).toString(16));
  return words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** `10.0.0.0/8` -> address bytes and the prefix length over the 128-bit (v4-mapped) address. */
export function parseCidr(cidr: string): { addr: Buffer; bits: number } {
  const [a, p] = cidr.split('/');
  const addr = addressBytes(a ?? '');
  const v4 = !(a ?? '').includes(':');
  const bits = Number(p);
  if (!Number.isInteger(bits) || bits < 0 || bits > (v4 ? 32 : 128)) throw new Error(`bad CIDR ${cidr}`);
  return { addr, bits: v4 ? 96 + bits : bits };
}

// ---------- netpolicy ----------

export const NP_OBJ = 'netpolicy';

export interface PortRuleSpec {
  protocol: 'TCP' | 'UDP';
  port: number;
  endPort?: number;
  cidr?: string;
}

/** Largest port range expanded into single-port rules; wider ranges must be written as any-port rules. */
export const MAX_RANGE_PORTS = 4096;

export function npRuleKey(
  cgid: bigint,
  dir: keyof typeof NP_DIR,
  proto: number,
  port: number,
  cidr?: string,
): Buffer {
  const key = Buffer.alloc(32);
  const { addr, bits } = cidr ? parseCidr(cidr) : { addr: Buffer.alloc(16), bits: 0 };
  key.writeUInt32LE(96 + bits, 0);
  key.writeUInt8(NP_DIR[dir], 4);
  key.writeUInt8(proto, 5);
  key.writeUInt16LE(port, 6);
  key.writeBigUInt64LE(cgid, 8);
  // Host bits beyond the prefix do not matter to the trie, but zero them for tidy dumps.
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    key[16 + i] = addr[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return key;
}

export interface NetPlan {
  cgid: bigint;
  mode: Mode | 'Off';
  allowDNS: boolean;
  allowLoopback: boolean;
  egress: PortRuleSpec[];
  /** Listening ports: allowed to bind, and (with cidr = allowed sources) to receive new flows. */
  ingress: PortRuleSpec[];
}

export function npConfigValue(plan: Pick<NetPlan, 'mode' | 'allowDNS' | 'allowLoopback'>): Buffer {
  return Buffer.concat([
    u32(MODE_VALUE[plan.mode]),
    u32((plan.allowDNS ? NP_ALLOW_DNS : 0) | (plan.allowLoopback ? NP_ALLOW_LOOPBACK : 0)),
  ]);
}

function expandPorts(rule: PortRuleSpec): number[] {
  const end = rule.endPort ?? rule.port;
  if (end < rule.port) throw new Error(`port range ${rule.port}-${end} is empty`);
  if (end - rule.port + 1 > MAX_RANGE_PORTS)
    throw new Error(`port range ${rule.port}-${end} is wider than ${MAX_RANGE_PORTS} ports`);
  return Array.from({ length: end - rule.port + 1 }, (_, i) => rule.port + i);
}

/** Map writes for one container's network layer: rules first, config (which turns it on) last. */
export function planNetwork(plan: NetPlan): MapWrite[] {
  const writes: MapWrite[] = [];
  const one = Buffer.from([1]);
  const rule = (dir: keyof typeof NP_DIR, r: PortRuleSpec, cidr?: string): void => {
    for (const port of expandPorts(r))
      writes.push({
        obj: NP_OBJ,
        map: 'np_rules',
        key: npRuleKey(plan.cgid, dir, IPPROTO[r.protocol], port, cidr),
        value: one,
      });
  };
  for (const r of plan.egress) rule('egress', r, r.cidr);
  for (const r of plan.ingress) {
    rule('bind', r);
    rule('ingress', r, r.cidr);
  }
  writes.push({
    obj: NP_OBJ,
    map: 'np_counters',
    key: u64(plan.cgid),
    value: Buffer.alloc(40),
    flag: 'noexist',
  });
  writes.push({ obj: NP_OBJ, map: 'np_config', key: u64(plan.cgid), value: npConfigValue(plan) });
  return writes;
}

export function npInterfaceWrite(ifindex: number, cgid: bigint): MapWrite {
  return { obj: NP_OBJ, map: 'np_ifaces', key: u32(ifindex), value: u64(cgid) };
}

export interface NetCounters {
  connect: bigint;
  bind: bigint;
  ingress: bigint;
  sendmsg: bigint;
  eventsLost: bigint;
}

export function decodeNetCounters(v: Buffer): NetCounters {
  return {
    connect: v.readBigUInt64LE(0),
    bind: v.readBigUInt64LE(8),
    ingress: v.readBigUInt64LE(16),
    sendmsg: v.readBigUInt64LE(24),
    eventsLost: v.readBigUInt64LE(32),
  };
}

// ---------- events ----------

export interface Violation {
  cgid: bigint;
  layer: 'network' | 'files' | 'execs' | 'syscalls';
  kind: ViolationKind;
  /** Denied (Enforce/Alert) or only reported (Monitor). */
  denied: boolean;
  mode: (typeof MODE_NAME)[number];
  pid: number;
  comm: string;
  /** What was refused: `tcp 10.0.0.2:8082`, a path, a syscall name. */
  what: string;
}

const cstr = (b: Buffer): string => {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
};

export function decodeNetEvent(b: Buffer): Violation {
  if (b.length < 52) throw new Error(`netpolicy event of ${b.length} bytes, want 52`);
  const kind = KIND_NAME[b[8]!] ?? 'connect';
  const proto = b[10] === IPPROTO.UDP ? 'udp' : b[10] === IPPROTO.TCP ? 'tcp' : `proto${b[10]}`;
  const addr = formatAddress(b.subarray(20, 36));
  const port = b.readUInt16LE(12);
  return {
    cgid: b.readBigUInt64LE(0),
    layer: 'network',
    kind,
    denied: b[9] === 1,
    mode: MODE_NAME[b[11]!] ?? 'Off',
    pid: b.readUInt32LE(16),
    comm: cstr(b.subarray(36, 52)),
    what:
      kind === 'bind'
        ? `${proto} bind :${port}`
        : kind === 'ingress'
          ? `${proto} from ${addr} to port ${port}`
          : `${proto} ${addr.includes(':') ? `[${addr}]` : addr}:${port}`,
  };
}

// ---------- lsm ----------

export const LSM_OBJ = 'lsm';

/** A resolved allow-list entry: kernel device number (major << 20 | minor) and inode. */
export interface InodeAllow {
  kind: keyof typeof LSM_KIND;
  dev: number;
  ino: bigint;
  subtree: boolean;
}

export function lsmAllowKey(cgid: bigint, e: Pick<InodeAllow, 'kind' | 'dev' | 'ino'>): Buffer {
  return Buffer.concat([u64(cgid), u64(e.ino), u32(e.dev), u32(LSM_KIND[e.kind])]);
}

export function allowFlags(e: Pick<InodeAllow, 'subtree'>): number {
  return ALLOW_FLAG.file | (e.subtree ? ALLOW_FLAG.subtree : 0);
}

export interface FilePlan {
  cgid: bigint;
  fileMode: Mode | 'Off';
  execMode: Mode | 'Off';
  allow: InodeAllow[];
}

export function lsmConfigValue(plan: Pick<FilePlan, 'fileMode' | 'execMode'>): Buffer {
  return Buffer.concat([u32(MODE_VALUE[plan.fileMode]), u32(MODE_VALUE[plan.execMode])]);
}

export function planLsm(plan: FilePlan): MapWrite[] {
  const writes: MapWrite[] = plan.allow.map((e) => ({
    obj: LSM_OBJ,
    map: 'lsm_allow',
    key: lsmAllowKey(plan.cgid, e),
    value: Buffer.from([allowFlags(e)]),
  }));
  writes.push({
    obj: LSM_OBJ,
    map: 'lsm_counters',
    key: u64(plan.cgid),
    value: Buffer.alloc(24),
    flag: 'noexist',
  });
  writes.push({ obj: LSM_OBJ, map: 'lsm_config', key: u64(plan.cgid), value: lsmConfigValue(plan) });
  return writes;
}

/** fanotify.c takes the same entries as `kind:dev:ino:flags` words. */
export function fanAllowWords(allow: InodeAllow[]): string[] {
  return allow.map((e) => `${LSM_KIND[e.kind]}:${e.dev}:${e.ino}:${allowFlags(e)}`);
}

export interface FileCounters {
  fileDenied: bigint;
  execDenied: bigint;
  eventsLost: bigint;
}

export function decodeLsmCounters(v: Buffer): FileCounters {
  return {
    fileDenied: v.readBigUInt64LE(0),
    execDenied: v.readBigUInt64LE(8),
    eventsLost: v.readBigUInt64LE(16),
  };
}

export function decodeLsmEvent(b: Buffer): Violation & { dev: number; ino: bigint } {
  if (b.length < 336) throw new Error(`lsm event of ${b.length} bytes, want 336`);
  const levels = b[27]!;
  const names: string[] = [];
  for (let i = 0; i < Math.min(levels, 6); i++) names.push(cstr(b.subarray(48 + i * 48, 96 + i * 48)));
  // Innermost first; the walk stops at a mount root (whose name is "/").
  const parts = names.filter((n) => n !== '/').reverse();
  const kind = b[24] === LSM_KIND.exec ? 'exec' : 'file';
  return {
    cgid: b.readBigUInt64LE(0),
    ino: b.readBigUInt64LE(8),
    dev: b.readUInt32LE(16),
    pid: b.readUInt32LE(20),
    layer: kind === 'exec' ? 'execs' : 'files',
    kind,
    denied: b[25] === 1,
    mode: MODE_NAME[b[26]!] ?? 'Off',
    comm: cstr(b.subarray(32, 48)),
    what: (levels > 6 ? '…/' : '/') + parts.join('/'),
  };
}

// ---------- seccomp_watch ----------

export const SW_OBJ = 'seccomp_watch';

export function planSeccompWatch(cgid: bigint, mode: Mode | 'Off'): MapWrite[] {
  return [
    { obj: SW_OBJ, map: 'sw_totals', key: u64(cgid), value: Buffer.alloc(24), flag: 'noexist' },
    { obj: SW_OBJ, map: 'sw_watch', key: u64(cgid), value: u32(MODE_VALUE[mode]) },
  ];
}

export function swCountKey(cgid: bigint, nr: number): Buffer {
  return Buffer.concat([u64(cgid), u32(nr), u32(0)]);
}

export function decodeSwCountKey(k: Buffer): { cgid: bigint; nr: number } {
  return { cgid: k.readBigUInt64LE(0), nr: k.readUInt32LE(8) };
}

export interface SyscallTotals {
  denied: bigint;
  eventsLost: bigint;
  pairsLost: bigint;
}

export function decodeSwTotals(v: Buffer): SyscallTotals {
  return { denied: v.readBigUInt64LE(0), eventsLost: v.readBigUInt64LE(8), pairsLost: v.readBigUInt64LE(16) };
}

export function decodeSwEvent(b: Buffer, syscallName: (nr: number) => string): Violation & { nr: number } {
  if (b.length < 40) throw new Error(`seccomp_watch event of ${b.length} bytes, want 40`);
  const nr = b.readUInt32LE(8);
  return {
    cgid: b.readBigUInt64LE(0),
    nr,
    pid: b.readUInt32LE(12),
    layer: 'syscalls',
    kind: 'syscall',
    denied: true,
    mode: 'Enforce',
    comm: cstr(b.subarray(24, 40)),
    what: `${syscallName(nr)} (${nr}) -> ${b.readBigInt64LE(16)}`,
  };
}

export const u64Key = u64;
export const u32Value = u32;

/** `map_update` protocol lines for a plan (what the agent sends; the qemu guest replays them). */
export function protocolLines(writes: MapWrite[], firstId = 1): string[] {
  return writes.map(
    (w, i) =>
      `${firstId + i} map_update ${w.obj} ${w.map} ${w.key.toString('hex')} ${w.value.toString('hex')} ${w.flag ?? 'any'}`,
  );
}

/** The kernel's device number (major << 20 | minor) from a stat() st_dev (glibc's encoding). */
export function kernelDev(stDev: bigint | number): number {
  const d = BigInt(stDev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn & 0xfffffn));
  return ((major << 20) | minor) >>> 0;
}
