// Client for the native libbpf helper (bpf/.output/pahlevan-bpfd, protocol in agent/native/PROTOCOL.md).
// The helper is a child process so a libbpf or kernel failure can never crash the agent's event loop;
// requests carry ids and resolve on the matching reply, ring-buffer records arrive as 'event's.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** bpf/.output/ of this checkout (dist/agent/x.js and agent/x.ts both sit two levels below the root). */
export const BPF_OUTPUT_DIR = fileURLToPath(new URL('../../bpf/.output/', import.meta.url));
export const DEFAULT_HELPER_PATH = `${BPF_OUTPUT_DIR}pahlevan-bpfd`;

export function bpfObjectPath(name: string): string {
  return `${BPF_OUTPUT_DIR}${name}.bpf.o`;
}

/** A command the helper answered with `err`: errno and the helper's message (with libbpf's first warning). */
export class BpfdError extends Error {
  constructor(
    readonly command: string,
    readonly errno: number,
    readonly detail: string,
  ) {
    super(`pahlevan-bpfd ${command}: ${detail} [errno ${errno}]`);
    this.name = 'BpfdError';
  }
}

export const ENOENT = 2;
export const EPERM = 1;

export type MapUpdateFlag = 'any' | 'noexist' | 'exist';

export interface MapInfo {
  type: string;
  keySizeBytes: number;
  valueSizeBytes: number;
  maxEntries: number;
  memlockBytes: number;
  id: number;
}

interface Pending {
  command: string;
  resolve: (payload: string) => void;
  reject: (err: Error) => void;
}

export interface BpfdClientEvents {
  /** A ring-buffer record: label is `<obj>/<map>`. */
  event: [label: string, data: Buffer];
  /** Any other asynchronous line (without the leading `* `), e.g. from fanotify.c. */
  async: [line: string];
  exit: [code: number | null, signal: NodeJS.Signals | null];
}

const hex = (b: Buffer | Uint8Array): string => Buffer.from(b).toString('hex');

function checkName(what: string, value: string): string {
  if (!/^[^\s]+$/.test(value))
    throw new Error(`${what} ${JSON.stringify(value)} must be non-empty and without spaces`);
  return value;
}

export class BpfdClient extends EventEmitter<BpfdClientEvents> {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private stderrTail = '';
  private exited = false;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    super();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Spawns the helper and waits for its `* ready` line. */
  static async start(options: { helperPath?: string; echoStderr?: boolean } = {}): Promise<BpfdClient> {
    const helperPath = options.helperPath ?? DEFAULT_HELPER_PATH;
    if (!existsSync(helperPath))
      throw new Error(`native helper ${helperPath} is missing: run \`npm run build\` (make -C bpf) first`);
    const child = spawn(helperPath, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const client = new BpfdClient(child);
    const ready = new Promise<void>((resolve, reject) => {
      client.once('async', (line) => (line.startsWith('ready') ? resolve() : undefined));
      child.once('error', reject);
      child.once('exit', (code) =>
        reject(new Error(`pahlevan-bpfd exited (${code}) before it was ready: ${client.stderrTail.trim()}`)),
      );
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      client.stderrTail = (client.stderrTail + chunk).slice(-4000);
      if (options.echoStderr) process.stderr.write(chunk);
    });
    const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => client.onLine(line));
    child.on('exit', (code, signal) => {
      client.exited = true;
      const err = new Error(
        `pahlevan-bpfd exited (${signal ?? code}) with requests pending: ${client.stderrTail.trim().slice(-500)}`,
      );
      for (const p of client.pending.values()) p.reject(err);
      client.pending.clear();
      client.emit('exit', code, signal);
    });
    // Keep writes to a dead helper from throwing EPIPE asynchronously.
    child.stdin.on('error', () => undefined);
    await ready;
    return client;
  }

  private onLine(line: string): void {
    if (line.startsWith('* ')) {
      const rest = line.slice(2);
      if (rest.startsWith('ev ')) {
        const sp = rest.indexOf(' ', 3);
        this.emit('event', rest.slice(3, sp), Buffer.from(rest.slice(sp + 1), 'hex'));
      } else {
        this.emit('async', rest);
      }
      return;
    }
    const m = /^(\S+) (ok|err)(?: (.*))?$/.exec(line);
    if (!m) return;
    const p = this.pending.get(m[1]!);
    if (!p) return;
    this.pending.delete(m[1]!);
    if (m[2] === 'ok') p.resolve(m[3] ?? '');
    else {
      const em = /^(\d+) (.*)$/.exec(m[3] ?? '');
      p.reject(new BpfdError(p.command, em ? Number(em[1]) : 0, em ? em[2]! : (m[3] ?? 'error')));
    }
  }

  /** Sends `<id> <command>` and resolves with the reply's payload (rejects with BpfdError on `err`). */
  request(command: string): Promise<string> {
    if (command.includes('\n')) return Promise.reject(new Error('a request cannot contain a newline'));
    if (this.exited) return Promise.reject(new Error(`pahlevan-bpfd has exited: ${this.stderrTail.trim()}`));
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command: command.split(' ', 1)[0]!, resolve, reject });
      this.child.stdin.write(`${id} ${command}\n`);
    });
  }

  async ping(): Promise<void> {
    await this.request('ping');
  }

  /** Loads an object; maps marked for pinning are reused from / pinned into pinDir. */
  async open(obj: string, file: string, pinDir?: string): Promise<{ progs: string[]; maps: string[] }> {
    if (!existsSync(file)) throw new Error(`BPF object ${file} is missing: run \`npm run build\` first`);
    const payload = await this.request(
      `open ${checkName('object name', obj)} ${checkName('file', file)}${pinDir ? ` ${checkName('pin dir', pinDir)}` : ''}`,
    );
    const progs = /progs=(\S*)/.exec(payload)?.[1] ?? '';
    const maps = /maps=(\S*)/.exec(payload)?.[1] ?? '';
    return { progs: progs ? progs.split(',') : [], maps: maps ? maps.split(',') : [] };
  }

  async attach(obj: string, prog: string): Promise<void> {
    await this.request(`attach ${checkName('object', obj)} ${checkName('program', prog)}`);
  }

  async attachCgroup(obj: string, prog: string, cgroupDir: string): Promise<void> {
    await this.request(
      `attach_cgroup ${checkName('object', obj)} ${checkName('program', prog)} ${checkName('cgroup', cgroupDir)}`,
    );
  }

  /** Returns how it attached: 'tcx' or 'clsact'. */
  async attachTc(
    obj: string,
    prog: string,
    ifname: string | number,
    direction: 'ingress' | 'egress',
  ): Promise<string> {
    return this.request(
      `attach_tc ${checkName('object', obj)} ${checkName('program', prog)} ${checkName('interface', String(ifname))} ${direction}`,
    );
  }

  async detach(obj: string, prog: string): Promise<void> {
    await this.request(`detach ${checkName('object', obj)} ${checkName('program', prog)}`);
  }

  async mapUpdate(
    obj: string,
    map: string,
    key: Uint8Array,
    value: Uint8Array,
    flag: MapUpdateFlag = 'any',
  ): Promise<void> {
    await this.request(
      `map_update ${checkName('object', obj)} ${checkName('map', map)} ${hex(key)} ${hex(value)} ${flag}`,
    );
  }

  /** The value, or undefined when the key is absent. */
  async mapLookup(obj: string, map: string, key: Uint8Array): Promise<Buffer | undefined> {
    try {
      return Buffer.from(
        await this.request(`map_lookup ${checkName('object', obj)} ${checkName('map', map)} ${hex(key)}`),
        'hex',
      );
    } catch (err) {
      if (err instanceof BpfdError && err.errno === ENOENT) return undefined;
      throw err;
    }
  }

  /** Deletes a key; resolves false when it was absent. */
  async mapDelete(obj: string, map: string, key: Uint8Array): Promise<boolean> {
    try {
      await this.request(`map_delete ${checkName('object', obj)} ${checkName('map', map)} ${hex(key)}`);
      return true;
    } catch (err) {
      if (err instanceof BpfdError && err.errno === ENOENT) return false;
      throw err;
    }
  }

  async mapDump(obj: string, map: string): Promise<Array<[Buffer, Buffer]>> {
    const payload = await this.request(`map_dump ${checkName('object', obj)} ${checkName('map', map)}`);
    const [, ...entries] = payload.split(' ');
    return entries.map((kv) => {
      const [k, v] = kv.split(':');
      return [Buffer.from(k ?? '', 'hex'), Buffer.from(v ?? '', 'hex')];
    });
  }

  async mapInfo(obj: string, map: string): Promise<MapInfo> {
    const payload = await this.request(`map_info ${checkName('object', obj)} ${checkName('map', map)}`);
    const field = (name: string): string => new RegExp(`${name}=(\\S+)`).exec(payload)?.[1] ?? '';
    return {
      type: field('type'),
      keySizeBytes: Number(field('key')),
      valueSizeBytes: Number(field('value')),
      maxEntries: Number(field('max')),
      memlockBytes: Number(field('memlock')),
      id: Number(field('id')),
    };
  }

  /** Program id, tag and the kernel's run statistics (counted while stats are on). */
  async progInfo(
    obj: string,
    prog: string,
  ): Promise<{ id: number; tag: string; runTimeNs: number; runCount: number }> {
    const payload = await this.request(`prog_info ${checkName('object', obj)} ${checkName('program', prog)}`);
    const field = (name: string): string => new RegExp(`${name}=(\\S+)`).exec(payload)?.[1] ?? '';
    return {
      id: Number(field('id')),
      tag: field('tag'),
      runTimeNs: Number(field('run_time_ns')),
      runCount: Number(field('run_cnt')),
    };
  }

  /** Kernel BPF run-time statistics on or off (they cost a little on every program run while on). */
  async stats(on: boolean): Promise<void> {
    await this.request(`stats ${on ? 'on' : 'off'}`);
  }

  /** Starts streaming a ring buffer's records as 'event' (label `<obj>/<map>`). */
  async ringbuf(obj: string, map: string): Promise<void> {
    await this.request(`ringbuf ${checkName('object', obj)} ${checkName('map', map)}`);
  }

  async close(obj: string): Promise<void> {
    await this.request(`close ${checkName('object', obj)}`);
  }

  /** A `fan_*` command handled by agent/native/fanotify.c. */
  fan(command: string, args: string[] = []): Promise<string> {
    if (!command.startsWith('fan_')) throw new Error(`${command} is not a fan_ command`);
    return this.request([command, ...args.map((a) => checkName('argument', a))].join(' '));
  }

  /** Closes stdin (the helper detaches everything and exits) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(timer);
  }

  /** Kills the helper abruptly (tests: an agent crash). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill(signal);
    await done;
  }
}
