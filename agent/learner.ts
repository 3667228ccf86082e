// The learner's user-space half: loads bpf/learner.bpf.c through the native helper at agent start,
// pins its maps and links under a configurable pin dir (a restarted agent keeps what was learned, and
// the programs stay attached while it is down), watches cgroups, decodes first-seen events and reads
// the in-kernel aggregates (syscall bitmaps, exec/file/network objects with counts).
import { EventEmitter } from 'node:events';
import { existsSync, rmSync, statSync } from 'node:fs';
import { BpfdClient, bpfObjectPath } from './bpfd-client.js';
import { nodeArch, syscallName, type Arch } from './syscall-table.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/pahlevan';
const OBJ = 'learner';
const PROGS = ['learn_sys_enter', 'learn_exec', 'learn_accept'] as const;

// Layout of bpf/learner.bpf.c (little-endian).
const SYSCALL_BITMAP_WORDS = 8;
/** struct watch_state: cgid, flags, bits[8]. */
const WATCH_VALUE_SIZE = 16 + SYSCALL_BITMAP_WORDS * 8;
const WATCH_SLOTS = 8192;
const EVENT_HEADER_SIZE = 48;
const PATH_SIZE = 256;
export const WATCH_REQUIRE_SECCOMP = 1n;

export type FileIntent = 'read' | 'write' | 'read-write';
export type NetOp = 'connect' | 'bind' | 'listen' | 'accept' | 'sendto';

export interface SyscallEvent {
  kind: 'syscall';
  cgroupId: bigint;
  pid: number;
  nr: number;
  name: string;
}
export interface ExecEvent {
  kind: 'exec';
  cgroupId: bigint;
  pid: number;
  path: string;
}
export interface FileEvent {
  kind: 'file';
  cgroupId: bigint;
  pid: number;
  path: string;
  read: boolean;
  write: boolean;
}
export interface NetEvent {
  kind: 'net';
  cgroupId: bigint;
  pid: number;
  op: NetOp;
  protocol: 'tcp' | 'udp' | `ip-${number}`;
  family: 'ipv4' | 'ipv6';
  address: string;
  port: number;
}
export type LearnerEvent = SyscallEvent | ExecEvent | FileEvent | NetEvent;
export type Observation = (ExecEvent | FileEvent | NetEvent) & { count: number };

const NET_OPS: Record<number, NetOp> = { 1: 'connect', 2: 'bind', 3: 'listen', 4: 'accept', 5: 'sendto' };

function formatAddress(family: number, addr: Buffer): string {
  if (family === 2) return [...addr.subarray(0, 4)].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(addr.readUInt16BE(i).toString(16));
  // Shortest form of the longest zero run (RFC 5952).
  let best = -1,
    bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
}

/** Decodes one `struct event` (ring-buffer record or the event part of an object). */
export function decodeEvent(buf: Buffer, arch: Arch = nodeArch()): LearnerEvent | undefined {
  if (buf.length < EVENT_HEADER_SIZE) return undefined;
  const cgroupId = buf.readBigUInt64LE(0);
  const kind = buf.readUInt32LE(8);
  const pid = buf.readUInt32LE(12);
  const arg = buf.readUInt32LE(16);
  if (kind === 1)
    return { kind: 'syscall', cgroupId, pid, nr: arg, name: syscallName(arg, arch) ?? `syscall_${arg}` };
  const path =
    buf.length > EVENT_HEADER_SIZE
      ? cString(buf.subarray(EVENT_HEADER_SIZE, EVENT_HEADER_SIZE + PATH_SIZE))
      : '';
  if (kind === 2) return { kind: 'exec', cgroupId, pid, path };
  if (kind === 3) return { kind: 'file', cgroupId, pid, path, read: (arg & 1) !== 0, write: (arg & 2) !== 0 };
  if (kind === 4) {
    const family = buf.readUInt16LE(20);
    const proto = buf.readUInt8(24);
    return {
      kind: 'net',
      cgroupId,
      pid,
      op: NET_OPS[arg] ?? 'connect',
      protocol: proto === 6 ? 'tcp' : proto === 17 ? 'udp' : `ip-${proto}`,
      family: family === 10 ? 'ipv6' : 'ipv4',
      address: formatAddress(family, buf.subarray(32, 48)),
      port: buf.readUInt16LE(22),
    };
  }
  return undefined;
}

/** Syscall numbers whose bits are set in a bitmap of little-endian u64 words. */
export function bitmapToNumbers(bitmap: Buffer): number[] {
  const out: number[] = [];
  for (let w = 0; w < bitmap.length / 8; w++) {
    const word = bitmap.readBigUInt64LE(w * 8);
    if (word === 0n) continue;
    for (let b = 0; b < 64; b++) if ((word >> BigInt(b)) & 1n) out.push(w * 64 + b);
  }
  return out;
}

/** The cgroup v2 id of a cgroup directory: the inode number bpf_get_current_cgroup_id() reports. */
export function cgroupIdOf(cgroupDir: string): bigint {
  return statSync(cgroupDir, { bigint: true }).ino;
}

const u64le = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};
const u32le = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};

export interface LearnerOptions {
  /** bpffs directory for maps and links; default /sys/fs/bpf/pahlevan. Tests use their own. */
  pinDir?: string;
  helperPath?: string;
  /** Share an already running helper (e.g. with the enforcer). */
  client?: BpfdClient;
  /**
   * Pin the programs' links in the pin dir too, so the programs stay attached (and keep learning into
   * the pinned maps) while the agent is down; a restarted agent keeps a pinned link running the same
   * program. Off by default: a crashed one-shot CLI must not leave programs attached. The agent uses it.
   */
  pinLinks?: boolean;
}

export interface LearnerEvents {
  event: [LearnerEvent];
  error: [Error];
}

export class Learner extends EventEmitter<LearnerEvents> {
  readonly arch = nodeArch();
  private lock: Promise<unknown> = Promise.resolve();
  private readonly watchedIds = new Set<bigint>();

  private constructor(
    readonly client: BpfdClient,
    readonly pinDir: string,
    private readonly ownsClient: boolean,
  ) {
    super();
  }

  /** Loads and attaches the learner (reusing pinned maps and links), then streams its events. */
  static async start(options: LearnerOptions = {}): Promise<Learner> {
    const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
    if (!existsSync('/sys/kernel/btf/vmlinux'))
      throw new Error(
        'kernel feature missing: BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF) is needed by the learner',
      );
    const client =
      options.client ??
      (await BpfdClient.start(options.helperPath ? { helperPath: options.helperPath } : {}));
    const learner = new Learner(client, pinDir, !options.client);
    try {
      await client.open(OBJ, bpfObjectPath('learner'), pinDir).catch((err: Error) => {
        if (/reuse pinned map|parameter mismatch/i.test(err.message))
          throw new Error(
            `the maps pinned in ${pinDir} come from an incompatible learner version; remove ${pinDir} (this drops what was learned there): ${err.message}`,
          );
        throw err;
      });
      for (const prog of PROGS) {
        const attach = options.pinLinks
          ? client.request(`attach ${OBJ} ${prog} ${pinDir}/link_${prog}`)
          : client.attach(OBJ, prog);
        await attach.catch((err: Error) => {
          throw new Error(
            `kernel feature missing: cannot attach the learner's ${prog} (tp_btf programs need BPF tracing with BTF): ${err.message}`,
          );
        });
      }
      client.on('event', (label, data) => {
        if (label !== `${OBJ}/events`) return;
        const ev = decodeEvent(data, learner.arch);
        if (ev) learner.emit('event', ev);
      });
      for (const [, v] of await client.mapDump(OBJ, 'watch_slots')) {
        const id = v.readBigUInt64LE(0);
        if (id !== 0n) learner.watchedIds.add(id);
      }
      for (const [k] of await client.mapDump(OBJ, 'watched')) learner.watchedIds.add(k.readBigUInt64LE(0));
      await client.ringbuf(OBJ, 'events');
    } catch (err) {
      if (learner.ownsClient) await client.stop();
      throw err;
    }
    return learner;
  }

  /** Attaches the programs (after detachAll; start() already attached them). */
  async attachAll(): Promise<void> {
    for (const prog of PROGS) await this.client.attach(OBJ, prog);
  }

  /** Detaches the programs this helper attached (benchmarks toggle them; pinned links are untouched). */
  async detachAll(): Promise<void> {
    for (const prog of PROGS) await this.client.detach(OBJ, prog).catch(() => undefined);
  }

  watched(): bigint[] {
    return [...this.watchedIds];
  }

  /** Watch-set changes are read-modify-write sequences on the maps: one at a time. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private static slotKey(cgroupId: bigint): Buffer {
    return u32le(Number(cgroupId & BigInt(WATCH_SLOTS - 1)));
  }

  /** Where a watched cgroup's state lives: its direct-mapped slot, or the overflow hash. */
  private async locate(cgroupId: bigint): Promise<{ where: 'slot' | 'hash'; value: Buffer } | undefined> {
    const slot = await this.client.mapLookup(OBJ, 'watch_slots', Learner.slotKey(cgroupId));
    if (slot && slot.readBigUInt64LE(0) === cgroupId) return { where: 'slot', value: slot };
    const v = await this.client.mapLookup(OBJ, 'watched', u64le(cgroupId));
    return v ? { where: 'hash', value: v } : undefined;
  }

  private async setOverflowBit(cgroupId: bigint, on: boolean): Promise<void> {
    const slot = Number(cgroupId & BigInt(WATCH_SLOTS - 1));
    const key = u32le(Math.floor(slot / 64));
    const word = (await this.client.mapLookup(OBJ, 'slot_overflow', key))?.readBigUInt64LE(0) ?? 0n;
    const bit = 1n << BigInt(slot % 64);
    await this.client.mapUpdate(OBJ, 'slot_overflow', key, u64le(on ? word | bit : word & ~bit));
  }

  /**
   * Starts learning a cgroup. With requireSeccomp (the recorder's mode) a task counts only once it runs
   * under a seccomp filter, so the runtime's setup before it installs the filter is not learned.
   * Keeps whatever was already learned for this cgroup.
   */
  watch(cgroupId: bigint, options: { requireSeccomp?: boolean } = {}): Promise<void> {
    if (cgroupId <= 0n) return Promise.reject(new Error(`invalid cgroup id ${cgroupId}`));
    const flags = options.requireSeccomp ? WATCH_REQUIRE_SECCOMP : 0n;
    return this.serialized(async () => {
      const found = await this.locate(cgroupId);
      if (found) {
        // Flags change only between recordings; the bits are rewritten as read.
        found.value.writeBigUInt64LE(flags, 8);
        if (found.where === 'slot')
          await this.client.mapUpdate(OBJ, 'watch_slots', Learner.slotKey(cgroupId), found.value);
        else await this.client.mapUpdate(OBJ, 'watched', u64le(cgroupId), found.value, 'exist');
      } else {
        const value = Buffer.alloc(WATCH_VALUE_SIZE);
        value.writeBigUInt64LE(cgroupId, 0);
        value.writeBigUInt64LE(flags, 8);
        const slot = await this.client.mapLookup(OBJ, 'watch_slots', Learner.slotKey(cgroupId));
        if (!slot || slot.readBigUInt64LE(0) === 0n) {
          await this.client.mapUpdate(OBJ, 'watch_slots', Learner.slotKey(cgroupId), value);
        } else {
          await this.client.mapUpdate(OBJ, 'watched', u64le(cgroupId), value, 'noexist');
          await this.setOverflowBit(cgroupId, true);
        }
      }
      this.watchedIds.add(cgroupId);
    });
  }

  /** Stops learning a cgroup and drops its syscall bitmap; returns the syscall numbers it had learned. */
  unwatch(cgroupId: bigint): Promise<number[]> {
    return this.serialized(async () => {
      const found = await this.locate(cgroupId);
      this.watchedIds.delete(cgroupId);
      if (!found) return [];
      if (found.where === 'slot') {
        await this.client.mapUpdate(
          OBJ,
          'watch_slots',
          Learner.slotKey(cgroupId),
          Buffer.alloc(WATCH_VALUE_SIZE),
        );
      } else {
        await this.client.mapDelete(OBJ, 'watched', u64le(cgroupId));
        const slotMask = BigInt(WATCH_SLOTS - 1);
        const others = [...this.watchedIds].some((id) => (id & slotMask) === (cgroupId & slotMask));
        // Others sharing the slot may sit in the slot itself; only hash residents need the bit, but a
        // spare bit costs one hash miss, so keep it while any other cgroup maps to this slot.
        if (!others) await this.setOverflowBit(cgroupId, false);
      }
      return bitmapToNumbers(found.value.subarray(16));
    });
  }

  /** Drops everything learned for a cgroup (bitmap and exec/file/network objects). */
  async forget(cgroupId: bigint): Promise<void> {
    await this.unwatch(cgroupId);
    for (const [k] of await this.client.mapDump(OBJ, 'objects'))
      if (k.readBigUInt64LE(0) === cgroupId) await this.client.mapDelete(OBJ, 'objects', k);
  }

  /** Syscall numbers learned for a cgroup (from the in-kernel bitmap). */
  async syscallNumbers(cgroupId: bigint): Promise<number[]> {
    const found = await this.locate(cgroupId);
    return found ? bitmapToNumbers(found.value.subarray(16)) : [];
  }

  async syscallNames(cgroupId: bigint): Promise<string[]> {
    return (await this.syscallNumbers(cgroupId)).map((nr) => syscallName(nr, this.arch) ?? `syscall_${nr}`);
  }

  /** Execs, files and network tuples learned for a cgroup, with the kernel's counts. */
  async observations(cgroupId: bigint): Promise<Observation[]> {
    const out: Observation[] = [];
    for (const [k, v] of await this.client.mapDump(OBJ, 'objects')) {
      if (k.readBigUInt64LE(0) !== cgroupId) continue;
      const ev = decodeEvent(v.subarray(8), this.arch);
      if (ev && ev.kind !== 'syscall') out.push({ ...ev, count: Number(v.readBigUInt64LE(0)) });
    }
    return out;
  }

  /** [events lost because the ring buffer was full, objects not stored because the map was full]. */
  async lossCounters(): Promise<{ eventsLost: number; objectsDropped: number }> {
    const sum = async (idx: number): Promise<number> => {
      const v = await this.client.mapLookup(OBJ, 'learner_stats', u32le(idx));
      let total = 0n;
      for (let off = 0; v && off + 8 <= v.length; off += 8) total += v.readBigUInt64LE(off);
      return Number(total);
    };
    return { eventsLost: await sum(0), objectsDropped: await sum(1) };
  }

  /** Closes the learner: unpinned links detach; pinned maps (and pinned links) stay for the next agent. */
  async stop(): Promise<void> {
    if (this.ownsClient) await this.client.stop();
    else await this.client.close(OBJ);
  }

  /** Removes a pin dir (maps and links): everything learned there is gone. */
  static removePins(pinDir: string): void {
    rmSync(pinDir, { recursive: true, force: true });
  }
}
