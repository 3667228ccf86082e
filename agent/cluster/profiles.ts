// Installs published seccomp profiles as files under <kubelet root>/seccomp/pahlevan/, where the kubelet
// finds `localhostProfile` references. A file that is missing or half-written at container start means
// CreateContainerError, so writes are atomic (temp file, fsync, rename, fsync of the directory), and the
// agent acknowledges a hash only after its file is in place with the right content.
import {
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { localhostProfilePath, SECCOMP_SUBDIR } from '../../api/names.js';
import { PROFILE_KIND, ProfileSpec, profileContentHash } from '../../api/profile.js';
import { formatIssue } from '../../api/policy.js';

export interface ProfileFile {
  namespace: string;
  policy: string;
  container: string;
  /** Content hash (hex) the publisher computed; the file name carries its first 16 digits. */
  hash: string;
  /** Exact file content (the OCI profile JSON). */
  content: string;
}

/**
 * The file to install for a PahlevanProfile object, after checking it: the schema, the content hash
 * (recomputed: a tampered or truncated object is refused), and that its localhostProfile is the path the
 * names give (the kubelet will look there).
 */
export function profileFileFromObject(object: unknown): ProfileFile {
  const o = object as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown }; spec?: unknown };
  if (o?.kind !== PROFILE_KIND)
    throw new Error(`invalid PahlevanProfile: kind is ${JSON.stringify(o?.kind)}`);
  // Object names carry dots (<policy>.<container>.<hash>): only the spec is checked against the schema.
  const parsed = ProfileSpec.safeParse(o.spec);
  if (!parsed.success)
    throw new Error(`invalid PahlevanProfile: ${parsed.error.issues.map(formatIssue).join('; ')}`);
  const spec = parsed.data;
  const metadata = {
    name: String(o.metadata?.name ?? ''),
    namespace: o.metadata?.namespace as string | undefined,
  };
  const namespace = metadata.namespace ?? 'default';
  const hash = profileContentHash(spec);
  if (hash !== spec.hash)
    throw new Error(
      `PahlevanProfile ${metadata.name}: content hash ${hash.slice(0, 16)} does not match spec.hash ${spec.hash.slice(0, 16)}`,
    );
  const expected = localhostProfilePath(namespace, spec.policy, spec.container, spec.hash);
  if (spec.localhostProfile !== expected)
    throw new Error(
      `PahlevanProfile ${metadata.name}: localhostProfile ${JSON.stringify(spec.localhostProfile)} is not ${expected}`,
    );
  return {
    namespace,
    policy: spec.policy,
    container: spec.container,
    hash: spec.hash,
    content: JSON.stringify(spec.seccomp, null, 2) + '\n',
  };
}

export interface InstallResult {
  /** Hashes whose files are in place with the expected content. */
  installed: string[];
  /** Profiles that could not be installed, with the reason. */
  failed: { hash: string; reason: string }[];
  /** Files removed because no profile references them any more (paths relative to the seccomp root). */
  removed: string[];
}

function isInside(base: string, target: string): boolean {
  const rel = relative(base, target);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) && !rel.split(sep).includes('..');
}

export class ProfileInstaller {
  /** `<kubelet root>/seccomp` (the kubelet's seccomp profile root). */
  readonly seccompRoot: string;
  /** `<kubelet root>/seccomp/pahlevan`: everything this installer writes or deletes is inside. */
  readonly baseDir: string;
  /** Files installed with installFixed: never removed as unreferenced. */
  private readonly fixed = new Set<string>();

  /** `seccompRoot` overrides `<kubeletRoot>/seccomp` (a kubelet with --seccomp-profile-root, old versions). */
  constructor(kubeletRoot: string, seccompRoot?: string) {
    this.seccompRoot = seccompRoot ? resolve(seccompRoot) : resolve(kubeletRoot, 'seccomp');
    this.baseDir = join(this.seccompRoot, SECCOMP_SUBDIR);
  }

  /**
   * The absolute path of a profile's file. Throws when any part is not a valid name (localhostProfilePath
   * rejects them) or when the resolved path, after following symlinks of directories that already exist,
   * would leave baseDir.
   */
  pathFor(p: Pick<ProfileFile, 'namespace' | 'policy' | 'container' | 'hash'>): string {
    const rel = localhostProfilePath(p.namespace, p.policy, p.container, p.hash);
    const target = resolve(this.seccompRoot, rel);
    if (!isInside(this.baseDir, target))
      throw new Error(`profile path ${rel} resolves outside ${this.baseDir}`);
    return target;
  }

  /** Writes one profile file atomically; returns its absolute path. Existing identical files are kept. */
  install(profile: ProfileFile): string {
    const target = this.pathFor(profile);
    this.writeAtomic(target, profile.content);
    return target;
  }

  /**
   * Installs a file of fixed name (a path relative to the seccomp root, inside baseDir, e.g. the learning
   * profile) atomically and keeps it through every reconcile; returns its absolute path.
   */
  installFixed(rel: string, content: string): string {
    const target = resolve(this.seccompRoot, rel);
    if (!isInside(this.baseDir, target))
      throw new Error(`profile path ${rel} resolves outside ${this.baseDir}`);
    this.writeAtomic(target, content);
    this.fixed.add(target);
    return target;
  }

  /** Temp file, fsync, rename, fsync of the directory: the kubelet never sees a half-written file. */
  private writeAtomic(target: string, content: string): void {
    mkdirSync(this.baseDir, { recursive: true, mode: 0o755 });
    const realBase = realpathSync(this.baseDir);
    const dir = dirname(target);
    this.makeDirsInside(dir);
    const realDir = realpathSync(dir);
    if (realDir !== realBase && !isInside(realBase, realDir))
      throw new Error(`profile directory ${dir} resolves outside ${realBase}`);
    const realTarget = join(realDir, target.slice(dir.length + 1));
    try {
      const st = lstatSync(realTarget);
      if (st.isFile() && readFileSync(realTarget, 'utf8') === content) return;
    } catch {
      // not there yet
    }
    const temp = join(realDir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const fd = openSync(temp, 'wx', 0o644);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(temp, realTarget);
    } catch (err) {
      unlinkSync(temp);
      throw err;
    }
    const dirFd = openSync(realDir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  /**
   * Creates dir's missing components below baseDir one at a time, refusing any component that exists
   * and is not a real directory: a symlink planted inside the profile root must not carry a write (or a
   * mkdir) elsewhere.
   */
  private makeDirsInside(dir: string): void {
    const parts = relative(this.baseDir, dir).split(sep);
    let current = this.baseDir;
    for (const part of parts) {
      current = join(current, part);
      try {
        const st = lstatSync(current);
        if (!st.isDirectory())
          throw new Error(`${current} is not a directory (a symlink?): refusing to write through it`);
        continue;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      mkdirSync(current, { mode: 0o755 });
    }
  }

  /**
   * Makes the directory hold exactly `wanted` (plus `alsoKeep`, paths relative to the seccomp root):
   * installs what is missing, removes files (and empty directories, and leftover temp files) that nothing
   * references any more.
   */
  reconcile(wanted: ProfileFile[], alsoKeep: string[] = []): InstallResult {
    const result: InstallResult = { installed: [], failed: [], removed: [] };
    const keep = new Set<string>(this.fixed);
    // Files that pods on this node still reference (a container restart re-reads them) stay, even when
    // their profile object is gone.
    for (const rel of alsoKeep) {
      const path = resolve(this.seccompRoot, rel);
      if (isInside(this.baseDir, path)) keep.add(path);
    }
    for (const profile of wanted) {
      try {
        keep.add(this.install(profile));
        result.installed.push(profile.hash);
      } catch (err) {
        result.failed.push({ hash: profile.hash, reason: (err as Error).message });
      }
    }
    result.removed = this.removeUnreferenced(keep);
    result.installed = [...new Set(result.installed)].sort();
    return result;
  }

  /** Hash prefixes of the profile files present (first 16 hex digits, as in the file names). */
  listInstalled(): string[] {
    const out: string[] = [];
    this.walk(this.baseDir, (file) => {
      const m = /-([0-9a-f]{16})\.json$/.exec(file);
      if (m) out.push(m[1]!);
    });
    return out.sort();
  }

  private removeUnreferenced(keep: Set<string>): string[] {
    const removed: string[] = [];
    this.walk(this.baseDir, (file) => {
      if (keep.has(file)) return;
      try {
        unlinkSync(file);
        removed.push(relative(this.seccompRoot, file));
      } catch {
        // someone else removed it
      }
    });
    this.removeEmptyDirs(this.baseDir, true);
    return removed.sort();
  }

  /** Calls `onFile` for regular files under dir; never follows symlinks. */
  private walk(dir: string, onFile: (path: string) => void): void {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) this.walk(path, onFile);
      else if (e.isFile()) onFile(path);
      else if (e.isSymbolicLink()) {
        try {
          unlinkSync(path); // nothing of ours is a symlink
        } catch {
          // ignore
        }
      }
    }
  }

  private removeEmptyDirs(dir: string, isBase: boolean): boolean {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return false;
    }
    let empty = true;
    for (const e of entries) {
      if (e.isDirectory() && this.removeEmptyDirs(join(dir, e.name), false)) continue;
      empty = false;
    }
    if (empty && !isBase) {
      try {
        rmdirSync(dir);
        return true;
      } catch {
        return false;
      }
    }
    return false;
  }
}
