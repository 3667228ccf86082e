// Proves bpf/lsm.bpf.c in a kernel that has BPF-LSM (this VM refuses LSM programs at load): boots
// Debian's cloud kernel under qemu (TCG) with a small initramfs holding busybox, the statically linked
// helper, the very lsm.bpf.o the agent ships, and a command script produced by agent/enforce-maps.ts
// (planLsm, the code the agent uses to fill the maps). The guest cannot know its inode numbers in
// advance, so the plan is built with sentinel numbers that the guest replaces by what it stats.
// The guest prints one `PAHLEVAN-LSM-RESULT <json>` line; the caller judges it (qemu exits 0 regardless).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import {
  LSM_OBJ,
  lsmConfigValue,
  planLsm,
  protocolLines,
  type InodeAllow,
  type MapWrite,
} from '../../agent/enforce-maps.js';
import { generalisePaths } from '../../agent/paths.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/dist\/$/, '/');
export const KERNEL_DIR = process.env.PAHLEVAN_LSM_KERNEL_DIR ?? `${REPO_ROOT}.cache/lsm-kernel`;
export const KERNEL_IMAGE = `${KERNEL_DIR}/vmlinuz`;
export const LSM_OBJECT = `${REPO_ROOT}bpf/.output/lsm.bpf.o`;
export const STATIC_HELPER = `${REPO_ROOT}bpf/.output/pahlevan-bpfd-static`;
export const OPEN_LOOP = `${REPO_ROOT}bpf/.output/enforce-loop-static`;
const OPEN_LOOP_SOURCE = `${REPO_ROOT}bench/enforce-loop.c`;

/** Builds bench/enforce-loop.c statically (it runs in the guest and in containers); returns its path. */
export function ensureEnforceLoop(): string {
  const fresh = existsSync(OPEN_LOOP) && statSync(OPEN_LOOP).mtimeMs >= statSync(OPEN_LOOP_SOURCE).mtimeMs;
  if (!fresh) {
    const r = spawnSync('gcc', ['-O2', '-Wall', '-static', '-o', OPEN_LOOP, OPEN_LOOP_SOURCE], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`building ${OPEN_LOOP} failed: ${r.stderr || r.error?.message}`);
  }
  return OPEN_LOOP;
}
const QEMU = 'qemu-system-x86_64';
const BUSYBOX = '/bin/busybox';

// ---------- newc cpio ----------

interface CpioEntry {
  path: string; // without leading slash
  mode: number; // full st_mode
  data?: Buffer;
  target?: string; // symlink
}

function cpioNewc(entries: CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  const push = (e: CpioEntry): void => {
    const body = e.target !== undefined ? Buffer.from(e.target) : (e.data ?? Buffer.alloc(0));
    const name = Buffer.from(e.path + '\0');
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    const header =
      '070701' + [ino++, e.mode, 0, 0, 1, 0, body.length, 0, 0, 0, 0, name.length, 0].map(hex).join('');
    chunks.push(Buffer.from(header), name, pad4(110 + name.length), body, pad4(body.length));
  };
  for (const e of entries) push(e);
  push({ path: 'TRAILER!!!', mode: 0 });
  return Buffer.concat(chunks);
}

const DIR = 0o040755;
const FILE = 0o100644;
const EXEC = 0o100755;
const LINK = 0o120777;

// ---------- the plan ----------

/** What the guest enforces: learned paths as the learner would report them, generalised like the agent does. */
export const GUEST_LEARNED_FILES = ['/data/allowed.txt', '/data/tree/a', '/data/tree/b', '/data/tree/c'];
// busybox picks its applet from the file name: /tools/*/true run `true`.
export const GUEST_LEARNED_EXECS = ['/bin/busybox', '/tools/allowed/true', '/open-loop'];
const SENTINEL_CGID = 0x7e57_0000_0000_0001n;

interface Sentinel {
  hex: string; // little-endian hex in the plan
  width: number; // bytes
  what: 'cgid' | 'dev' | 'ino';
  path: string;
}

function leHex(value: bigint, width: number): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return b.subarray(0, width).toString('hex');
}

export interface GuestPlan {
  setup: string[];
  toMonitor: string[];
  toEnforce: string[];
  sentinels: Sentinel[];
  allow: Array<{ path: string; subtree: boolean; kind: 'file' | 'exec' }>;
}

/** Builds the guest's commands with agent/enforce-maps.ts; inode/device/cgroup ids are sentinels. */
export function guestPlan(fanOutThreshold = 3): GuestPlan {
  const sentinels: Sentinel[] = [
    { hex: leHex(SENTINEL_CGID, 8), width: 8, what: 'cgid', path: '/sys/fs/cgroup/enforced' },
  ];
  const allow: InodeAllow[] = [];
  const listed: GuestPlan['allow'] = [];
  const add = (kind: 'file' | 'exec', paths: string[]): void => {
    for (const e of generalisePaths(paths, { fanOutThreshold })) {
      const i = sentinels.length;
      const dev = 0x7e50_0000 + i;
      const ino = 0x7e57_0000_0001_0000n + BigInt(i);
      sentinels.push({ hex: leHex(BigInt(dev), 4), width: 4, what: 'dev', path: e.path });
      sentinels.push({ hex: leHex(ino, 8), width: 8, what: 'ino', path: e.path });
      allow.push({ kind, dev, ino, subtree: e.subtree });
      listed.push({ path: e.path, subtree: e.subtree, kind });
    }
  };
  add('file', GUEST_LEARNED_FILES);
  add('exec', GUEST_LEARNED_EXECS);
  const writes = planLsm({ cgid: SENTINEL_CGID, fileMode: 'Enforce', execMode: 'Enforce', allow });
  const modeWrite = (mode: 'Monitor' | 'Enforce'): MapWrite[] => [
    {
      obj: LSM_OBJ,
      map: 'lsm_config',
      key: Buffer.from(leHex(SENTINEL_CGID, 8), 'hex'),
      value: lsmConfigValue({ fileMode: mode, execMode: mode }),
    },
  ];
  const setup = [
    `1 open ${LSM_OBJ} /lsm.bpf.o`,
    `2 attach ${LSM_OBJ} pv_file_open`,
    `3 attach ${LSM_OBJ} pv_bprm_check`,
    `4 ringbuf ${LSM_OBJ} lsm_events`,
    ...protocolLines(writes, 5),
  ];
  const next = 5 + writes.length;
  return {
    setup,
    toMonitor: protocolLines(modeWrite('Monitor'), next),
    toEnforce: protocolLines(modeWrite('Enforce'), next + 1),
    sentinels,
    allow: listed,
  };
}

// ---------- the guest ----------

/** The guest's /init (busybox sh), kept as a plain file beside this module. */
export const GUEST_INIT = `${REPO_ROOT}test/lsm-qemu/init.sh`;

export interface GuestResult {
  lsms?: string;
  error?: string;
  enforce?: Record<string, number>;
  monitor?: Record<string, number>;
  enforceAgain?: Record<string, number>;
  counters?: string;
  events?: number;
  openLoop?: { iterations: number; baselineNs: number[]; enforcedNs: number[] };
}

/** Everything the harness needs, or a list of what is missing (the test fails with it, never skips). */
export function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (spawnSync('sh', ['-c', `command -v ${QEMU}`]).status !== 0)
    missing.push(`${QEMU} not found (Debian package qemu-system-x86)`);
  if (!existsSync(KERNEL_IMAGE))
    missing.push(`kernel image ${KERNEL_IMAGE} missing: run scripts/fetch-lsm-kernel.sh (setup.sh does)`);
  if (!existsSync(LSM_OBJECT)) missing.push(`${LSM_OBJECT} missing: run npm run build`);
  if (!existsSync(STATIC_HELPER)) missing.push(`${STATIC_HELPER} missing: run make -C bpf static`);
  if (!existsSync(BUSYBOX)) missing.push(`${BUSYBOX} missing (Debian package busybox-static)`);
  return missing;
}

export function buildInitramfs(plan: GuestPlan): Buffer {
  const busybox = readFileSync(BUSYBOX);
  const text = (s: string): Buffer => Buffer.from(s);
  const entries: CpioEntry[] = [
    ...[
      'bin',
      'proc',
      'sys',
      'dev',
      'tmp',
      'data',
      'data/tree',
      'tools',
      'tools/allowed',
      'tools/denied',
      'plan',
    ].map((p) => ({ path: p, mode: DIR })),
    { path: 'bin/busybox', mode: EXEC, data: busybox },
    { path: 'bin/sh', mode: LINK, target: 'busybox' },
    { path: 'init', mode: EXEC, data: readFileSync(GUEST_INIT) },
    { path: 'pahlevan-bpfd', mode: EXEC, data: readFileSync(STATIC_HELPER) },
    { path: 'lsm.bpf.o', mode: FILE, data: readFileSync(LSM_OBJECT) },
    { path: 'data/allowed.txt', mode: FILE, data: text('allowed\n') },
    { path: 'data/secret.txt', mode: FILE, data: text('secret\n') },
    ...['a', 'b', 'c', 'new-file'].map((n) => ({ path: `data/tree/${n}`, mode: FILE, data: text(n + '\n') })),
    { path: 'tools/allowed/true', mode: EXEC, data: busybox },
    { path: 'tools/denied/true', mode: EXEC, data: busybox },
    { path: 'plan/setup.txt', mode: FILE, data: text(plan.setup.join('\n') + '\n') },
    { path: 'plan/monitor.txt', mode: FILE, data: text(plan.toMonitor.join('\n') + '\n') },
    { path: 'plan/enforce.txt', mode: FILE, data: text(plan.toEnforce.join('\n') + '\n') },
    {
      path: 'plan/sentinels.txt',
      mode: FILE,
      data: text(plan.sentinels.map((s) => `${s.hex} ${s.width} ${s.what} ${s.path}`).join('\n') + '\n'),
    },
  ];
  entries.push({ path: 'open-loop', mode: EXEC, data: readFileSync(ensureEnforceLoop()) });
  return gzipSync(cpioNewc(entries), { level: 1 });
}

/** Boots the guest and returns its result line (parsed) and the console log. */
export async function runGuest(
  initramfsPath: string,
  options: { timeoutMs?: number; cmdline?: string } = {},
): Promise<{ result: GuestResult; console: string }> {
  const args = [
    '-accel',
    'tcg',
    '-m',
    '1024',
    '-smp',
    '1',
    '-kernel',
    KERNEL_IMAGE,
    '-initrd',
    initramfsPath,
    '-append',
    // loglevel=0: kernel messages would otherwise interleave with the guest's result lines on the console.
    `console=ttyS0 loglevel=0 panic=-1 rdinit=/init ${options.cmdline ?? ''}`.trim(),
    '-nographic',
    '-no-reboot',
    '-nic',
    'none',
  ];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const timeoutMs = options.timeoutMs ?? 120_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await new Promise<void>((resolve) => child.on('exit', () => resolve()));
  clearTimeout(timer);
  const lsms = /PAHLEVAN-LSM-LSMS (.*)/.exec(out)?.[1]?.trim();
  const line = /PAHLEVAN-LSM-RESULT (\{.*\})/.exec(out)?.[1];
  if (!line)
    return {
      result: {
        lsms,
        error: `no result line from the guest within ${timeoutMs} ms; console tail:\n${out.slice(-3000)}`,
      },
      console: out,
    };
  try {
    return { result: { lsms, ...(JSON.parse(line) as GuestResult) }, console: out };
  } catch {
    return { result: { lsms, error: `unparsable result line: ${line}` }, console: out };
  }
}
