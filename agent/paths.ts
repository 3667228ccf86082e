// Generalises learned file and exec paths into allow-lists that real applications survive: a workload
// that opened 40 modules under one directory will open a 41st, temporary names differ on every run, and
// files it writes get new inodes when recreated. Pure functions over data; the enforcer resolves the
// result to (device, inode) keys for the LSM and fanotify layers.

export interface LearnedPath {
  path: string;
  /** Opened for writing (or created): the file may be replaced, so its directory is allowed. */
  write?: boolean;
}

export interface AllowEntry {
  /** Absolute, normalised path. */
  path: string;
  /** Everything below this directory is allowed, not only the path itself. */
  subtree: boolean;
  /** Why the entry has this shape (for `pahlevan` output and tests). */
  reason: 'learned' | 'fan-out' | 'random-segment' | 'written' | 'rule';
}

export interface GeneraliseOptions {
  /** A directory with at least this many distinct learned children is allowed as a whole. */
  fanOutThreshold?: number;
  /** Directories never widened to a subtree (allowing all of `/` or `/etc` would allow everything). */
  neverSubtree?: string[];
}

export const DEFAULT_FAN_OUT_THRESHOLD = 8;
export const DEFAULT_NEVER_SUBTREE = [
  '/',
  '/etc',
  '/root',
  '/home',
  '/var',
  '/usr',
  '/run',
  '/proc/sys',
  '/sys',
];

/** Normalises an absolute path; throws on relative paths and `..` (never guessed around). */
export function normalisePath(path: string): string {
  if (!path.startsWith('/')) throw new Error(`expected an absolute path, got ${JSON.stringify(path)}`);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new Error(`path ${JSON.stringify(path)} contains ".."`);
  return '/' + parts.join('/');
}

export function parentDir(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** True when `path` is `dir` or lies below it. */
export function isUnder(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(dir + '/');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONG_HEX = /^[0-9a-f]{12,}$/i;
const DIGITS = /^[0-9]+$/;
const TEMP_NAME = /^(tmp|temp)[._-]?[A-Za-z0-9_]{6,}$/;

/**
 * A segment that differs from run to run: process ids and other numbers, UUIDs, long hex (container ids,
 * hashes), mkstemp-style names (mixed case and digits), `tmpXXXXXX`.
 */
export function looksRandom(segment: string): boolean {
  if (DIGITS.test(segment) || UUID.test(segment) || LONG_HEX.test(segment) || TEMP_NAME.test(segment))
    return true;
  const stem = segment.replace(/\.[A-Za-z0-9]{1,5}$/, '');
  for (const token of stem.split(/[._-]/)) {
    if (token.length < 6) continue;
    const digits = (token.match(/[0-9]/g) ?? []).length;
    const upper = /[A-Z]/.test(token);
    const lower = /[a-z]/.test(token);
    // mkstemp alphabet: upper, lower and digits all present in one short token.
    if (upper && lower && digits > 0) return true;
    // long hex-like tokens inside a name: build-id-a1b2c3d4e5f6.
    if (token.length >= 12 && /^[0-9a-f]+$/i.test(token) && digits >= 4) return true;
  }
  return false;
}

/** The directory above the first random-looking segment, or undefined. */
function randomCut(path: string): string | undefined {
  const parts = path.split('/').slice(1);
  for (let i = 0; i < parts.length; i++) {
    if (looksRandom(parts[i]!)) return i === 0 ? '/' : '/' + parts.slice(0, i).join('/');
  }
  return undefined;
}

/**
 * Turns learned paths into allow entries: random segments cut the path to the directory above them,
 * written files allow their directory, directories with many learned children become subtrees, and
 * entries covered by a subtree are dropped. Deterministic; sorted by path.
 */
export function generalisePaths(
  learned: Array<string | LearnedPath>,
  options: GeneraliseOptions = {},
): AllowEntry[] {
  const threshold = options.fanOutThreshold ?? DEFAULT_FAN_OUT_THRESHOLD;
  if (!Number.isInteger(threshold) || threshold < 2)
    throw new Error(`fanOutThreshold must be an integer >= 2`);
  const never = new Set((options.neverSubtree ?? DEFAULT_NEVER_SUBTREE).map(normalisePath));
  const canWiden = (dir: string): boolean => !never.has(dir);

  const exact = new Set<string>();
  const subtrees = new Map<string, AllowEntry['reason']>();
  for (const item of learned) {
    const { path: raw, write } = typeof item === 'string' ? { path: item, write: false } : item;
    const path = normalisePath(raw);
    const cut = randomCut(path);
    if (cut !== undefined && canWiden(cut)) {
      subtrees.set(cut, 'random-segment');
      continue;
    }
    if (cut !== undefined) {
      // The random segment sits right under a directory we refuse to widen: keep the path up to and
      // including the random segment's parent... which is that directory, so keep the exact path only.
      exact.add(path);
      continue;
    }
    if (write && canWiden(parentDir(path))) {
      subtrees.set(parentDir(path), 'written');
      continue;
    }
    exact.add(path);
  }

  // Fan-out, bottom-up: count distinct children (files and directories) per directory.
  let changed = true;
  while (changed) {
    changed = false;
    const children = new Map<string, Set<string>>();
    const add = (p: string): void => {
      if (p === '/') return;
      const dir = parentDir(p);
      let set = children.get(dir);
      if (!set) children.set(dir, (set = new Set()));
      set.add(p);
    };
    for (const p of exact) add(p);
    for (const p of subtrees.keys()) add(p);
    // Deepest directories first, so a widened child counts once in its parent.
    const dirs = [...children.keys()].sort(
      (a, b) => b.split('/').length - a.split('/').length || a.localeCompare(b),
    );
    for (const dir of dirs) {
      if (children.get(dir)!.size >= threshold && canWiden(dir) && !subtrees.has(dir)) {
        subtrees.set(dir, 'fan-out');
        changed = true;
        break;
      }
    }
    if (changed) prune(exact, subtrees);
  }
  prune(exact, subtrees);

  const entries: AllowEntry[] = [
    ...[...exact].map((path) => ({ path, subtree: false, reason: 'learned' as const })),
    ...[...subtrees].map(([path, reason]) => ({ path, subtree: true, reason })),
  ];
  return entries.sort((a, b) =>
    a.path < b.path ? -1 : a.path > b.path ? 1 : Number(a.subtree) - Number(b.subtree),
  );
}

/** Drops exact paths and subtrees covered by another subtree. */
function prune(exact: Set<string>, subtrees: Map<string, AllowEntry['reason']>): void {
  const roots = [...subtrees.keys()];
  for (const p of [...exact]) if (roots.some((r) => isUnder(p, r))) exact.delete(p);
  for (const s of roots) if (roots.some((r) => r !== s && isUnder(s, r))) subtrees.delete(s);
}

/** True when the entries allow `path` (exactly, or below a subtree). */
export function allows(entries: AllowEntry[], path: string): boolean {
  const p = normalisePath(path);
  return entries.some((e) => (e.subtree ? isUnder(p, e.path) : e.path === p));
}

/** Policy globs (`/data/**`, `/etc/app.conf`) as entries: a trailing `/**` or `/*` means a subtree. */
export function entriesFromGlobs(globs: string[]): AllowEntry[] {
  return globs.map((glob) => {
    const m = /^(.*?)\/\*\*?$/.exec(glob);
    if (m) return { path: normalisePath(m[1] || '/'), subtree: true, reason: 'rule' as const };
    if (/[*?[]/.test(glob))
      throw new Error(`glob ${JSON.stringify(glob)}: only a trailing /* or /** is supported for enforcement`);
    return { path: normalisePath(glob), subtree: false, reason: 'rule' as const };
  });
}
