// What the cluster agent's enforcer port (agent/cluster/adapters.ts) needs from the node: a published
// profile's allow-lists (execs, files, ports) as a ContainerPolicy, a pod container's cgroup and first
// process (its root and mounts are /proc/<pid>/root, so overlay root filesystems resolve correctly), its veth.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ProfileContent } from '../api/profile.js';
import { cgroup2Root } from './container.js';
import type { PortRuleSpec } from './enforce-maps.js';
import type { ContainerPolicy } from './enforcer.js';
import { entriesFromGlobs, generalisePaths } from './paths.js';

const GLOB = /[*?[]/;

/** A published profile's content as what the enforcer programs. Pure. */
export function policyFromProfile(profile: ProfileContent, modes: ContainerPolicy['modes']): ContainerPolicy {
  const port = (p: ProfileContent['ports'][number]): PortRuleSpec => ({
    protocol: p.protocol,
    port: p.port,
    ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
    ...(p.cidr ? { cidr: p.cidr } : {}),
  });
  const paths = (list: Array<{ path: string; write?: boolean }>) => [
    ...generalisePaths(list.filter((f) => !GLOB.test(f.path))),
    ...entriesFromGlobs(list.filter((f) => GLOB.test(f.path)).map((f) => f.path)),
  ];
  return {
    modes,
    network: {
      egress: profile.ports.filter((p) => p.direction === 'egress' && p.port > 0).map(port),
      ingress: profile.ports.filter((p) => p.direction === 'listen' && p.port > 0).map(port),
      allowDNS: true,
      allowLoopback: true,
    },
    files: paths(profile.files),
    execs: paths(profile.execs.map((path) => ({ path }))),
  };
}

/** The cgroup v2 directory with this id (its inode), searched a few levels deep; undefined if gone. */
export function findCgroupDir(cgroupId: bigint, root = cgroup2Root().root, depth = 8): string | undefined {
  const walk = (dir: string, left: number): string | undefined => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return undefined;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      try {
        if (statSync(p, { bigint: true }).ino === cgroupId) return p;
      } catch {
        continue;
      }
      if (left > 0) {
        const found = walk(p, left - 1);
        if (found) return found;
      }
    }
    return undefined;
  };
  return walk(root, depth);
}

/** The first process of a cgroup, or undefined when it has none (or is gone). */
export function firstPid(cgroupDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(cgroupDir, 'cgroup.procs'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The host end of a pod's veth: eth0's peer index as seen from inside the pod's network namespace, then
 * that index's name here. Undefined for host-network pods or other interface kinds.
 */
export function hostVethOf(pid: number): { ifname: string; ifindex: number } | undefined {
  try {
    if (readlinkSync(`/proc/${pid}/ns/net`) === readlinkSync('/proc/self/ns/net')) return undefined;
    const r = spawnSync('nsenter', ['-t', String(pid), '-n', 'ip', '-j', 'link', 'show', 'eth0'], {
      encoding: 'utf8',
    });
    const link = (JSON.parse(r.stdout || '[]') as Array<{ link_index?: number; link_netnsid?: number }>)[0];
    if (!link?.link_index) return undefined;
    for (const name of readdirSync('/sys/class/net'))
      if (Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8')) === link.link_index)
        return { ifname: name, ifindex: link.link_index };
  } catch {
    // gone, or no iproute2: the socket hooks still apply
  }
  return undefined;
}
