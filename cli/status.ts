// `pahlevan status [NAME]`: phases, learning progress, profiles and their per-node installs, violations.
import type { Command } from 'commander';
import { Watch } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, POLICY_PLURAL, VERSION, parseDurationMs } from '../api/policy.js';
import type { PahlevanPolicy } from '../api/policy.js';
import {
  action,
  addKubeOptions,
  CliError,
  connect,
  crdMissing,
  explain,
  type KubeOptions,
} from './kube-context.js';
import { formatSurfaceStatusLines } from '../api/attack-surface.js';

export type OutputFormat = 'table' | 'json' | 'yaml';

export function age(from: string | null | undefined, now: Date): string {
  if (!from) return '-';
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   ')).join('\n') +
    '\n'
  );
}

/** Learning progress as `2/3 stable, 8m left` (or `ready`). */
export function progress(policy: PahlevanPolicy, now: Date): string {
  const l = policy.status?.learning;
  if (policy.status?.phase && policy.status.phase !== 'Learning') return '-';
  const want = policy.spec.learning.stableWindows;
  const stable = `${l?.stableWindows ?? 0}/${want} stable`;
  const started = l?.startedAt ?? policy.metadata.creationTimestamp;
  if (!started) return stable;
  const leftMs = Date.parse(started) + parseDurationMs(policy.spec.learning.duration) - now.getTime();
  return leftMs > 0 ? `${stable}, ${age(new Date(now.getTime() - leftMs).toISOString(), now)} left` : stable;
}

export function statusTable(policies: PahlevanPolicy[], now = new Date(), allNamespaces = false): string {
  if (policies.length === 0) return 'No PahlevanPolicies found.\n';
  const rows = [
    [
      ...(allNamespaces ? ['NAMESPACE'] : []),
      'NAME',
      'PHASE',
      'MODE',
      'PROGRESS',
      'PODS',
      'NODES',
      'SYSCALLS',
      'FILES',
      'PORTS',
      'PROFILES',
      'VIOLATIONS',
      'AGE',
    ],
  ];
  for (const p of policies) {
    const s = p.status;
    const profiles = s?.profiles ?? [];
    rows.push([
      ...(allNamespaces ? [p.metadata.namespace ?? ''] : []),
      p.metadata.name ?? '',
      s?.phase ?? 'Pending',
      p.spec.enforcement.mode,
      progress(p, now),
      String(s?.learning?.podsObserved ?? 0),
      String(s?.learning?.nodesReporting ?? 0),
      String(s?.learning?.syscalls ?? 0),
      String(s?.learning?.files ?? 0),
      String(s?.learning?.ports ?? 0),
      profiles.length ? `${profiles.filter((x) => x.usable).length}/${profiles.length} usable` : '-',
      String(s?.violations?.total ?? 0),
      age(p.metadata.creationTimestamp, now),
    ]);
  }
  return table(rows);
}

/** The detailed view of one policy. */
export function statusDetail(p: PahlevanPolicy, now = new Date()): string {
  const s = p.status;
  const out: string[] = [];
  out.push(`Name:        ${p.metadata.namespace}/${p.metadata.name}`);
  out.push(`Phase:       ${s?.phase ?? 'Pending (the controller has not seen it yet)'}`);
  out.push(`Mode:        ${p.spec.enforcement.mode} (layers: ${p.spec.enforcement.layers.join(', ')})`);
  const sel = Object.entries(p.spec.selector.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .concat(
      (p.spec.selector.matchExpressions ?? []).map(
        (e) => `${e.key} ${e.operator} ${e.values?.join(',') ?? ''}`,
      ),
    );
  out.push(`Selector:    ${sel.join(', ') || '(all pods)'}`);
  const l = s?.learning;
  out.push(
    `Learning:    ${progress(p, now)}; ${l?.podsObserved ?? 0} pods on ${l?.nodesReporting ?? 0} nodes; ` +
      `${l?.syscalls ?? 0} syscalls, ${l?.files ?? 0} files, ${l?.execs ?? 0} execs, ${l?.ports ?? 0} ports` +
      (l?.lastNewBehaviourAt ? `; last new behaviour ${age(l.lastNewBehaviourAt, now)} ago` : ''),
  );
  if (s?.profiles?.length) {
    out.push('Profiles:');
    const rows = [['CONTAINER', 'HASH', 'SYSCALLS', 'NODES', 'USABLE', 'LOCALHOST PROFILE']];
    for (const pr of s.profiles)
      rows.push([
        pr.container,
        pr.hash.slice(0, 12),
        String(pr.syscalls),
        `${pr.nodesInstalled}/${pr.nodesReady}`,
        pr.usable ? 'yes' : pr.stale ? 'stale' : 'no',
        pr.localhostProfile,
      ]);
    out.push(
      ...table(rows)
        .trimEnd()
        .split('\n')
        .map((line) => `  ${line}`),
    );
  }
  if (s?.nodes?.length) {
    out.push('Nodes:');
    for (const n of s.nodes)
      out.push(
        `  ${n.node}: active ${n.active.join(', ') || 'none'}` +
          (n.missing.length
            ? `; missing ${n.missing.map((m) => `${m.layer} (${m.reason})`).join(', ')}`
            : ''),
      );
  }
  if (s?.attackSurface?.length) out.push('Attack surface:', ...formatSurfaceStatusLines(s.attackSurface));
  const v = s?.violations;
  out.push(
    `Violations:  ${v?.total ?? 0}` +
      (v?.byLayer && Object.keys(v.byLayer).length
        ? ` (${Object.entries(v.byLayer)
            .map(([k, n]) => `${k} ${n}`)
            .join(', ')})`
        : '') +
      (v?.lastAt ? `, last ${age(v.lastAt, now)} ago` : ''),
  );
  for (const r of v?.recent ?? []) out.push(`  ${r.container}: ${r.layer} ${r.what} x${r.count}`);
  if (s?.selfHealing?.lastAction)
    out.push(
      `Self-heal:   ${s.selfHealing.lastAction}` +
        (s.selfHealing.lastActionAt ? ` ${age(s.selfHealing.lastActionAt, now)} ago` : '') +
        (s.selfHealing.reason ? ` (${s.selfHealing.reason})` : ''),
    );
  if (s?.conditions?.length) {
    out.push('Conditions:');
    const rows = [['TYPE', 'STATUS', 'REASON', 'AGE', 'MESSAGE']];
    for (const c of s.conditions)
      rows.push([c.type, c.status, c.reason, age(c.lastTransitionTime, now), c.message]);
    out.push(
      ...table(rows)
        .trimEnd()
        .split('\n')
        .map((line) => `  ${line}`),
    );
  }
  return out.join('\n') + '\n';
}

export function render(
  policies: PahlevanPolicy[],
  format: OutputFormat,
  single: boolean,
  allNamespaces = false,
  now = new Date(),
): string {
  const data = single ? policies[0] : { apiVersion: 'v1', kind: 'List', items: policies };
  if (format === 'json') return JSON.stringify(data, null, 2) + '\n';
  if (format === 'yaml') return stringify(data);
  return single ? statusDetail(policies[0]!, now) : statusTable(policies, now, allNamespaces);
}

interface StatusOptions extends KubeOptions {
  output: string;
  watch?: boolean;
  allNamespaces?: boolean;
}

export function register(program: Command): void {
  addKubeOptions(
    program
      .command('status')
      .description('Show policies: phase, learning progress, profiles per node, violations')
      .argument('[name]', 'one policy (detailed view)')
      .option('-o, --output <format>', 'table, json or yaml', 'table')
      .option('-w, --watch', 'keep printing as the status changes')
      .option('-A, --all-namespaces', 'policies of every namespace'),
  ).action(
    action(async (name: string | undefined, opts: StatusOptions) => {
      if (!['table', 'json', 'yaml'].includes(opts.output))
        throw new CliError(`-o ${opts.output}: choose table, json or yaml`);
      const format = opts.output as OutputFormat;
      const { kc, objects, namespace } = connect(opts);
      const all = !name && !!opts.allNamespaces;
      const fetchAll = async (): Promise<PahlevanPolicy[]> => {
        try {
          if (name) {
            const p = await objects.get<PahlevanPolicy>(POLICY_PLURAL, namespace, name);
            if (!p)
              throw new CliError(
                `no PahlevanPolicy ${name} in namespace ${namespace}: list them with \`pahlevan status -n ${namespace}\`, ` +
                  `or start one with \`pahlevan trace start -n ${namespace} --selector app=NAME\`.`,
              );
            return [p];
          }
          return await objects.list<PahlevanPolicy>(POLICY_PLURAL, all ? undefined : namespace);
        } catch (err) {
          throw crdMissing(err, 'PahlevanPolicy') ?? explain(err, 'reading PahlevanPolicies', kc);
        }
      };
      const print = (policies: PahlevanPolicy[]): void => {
        const sorted = [...policies].sort((a, b) =>
          `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(
            `${b.metadata.namespace}/${b.metadata.name}`,
          ),
        );
        const text = render(sorted, format, !!name, all);
        if (opts.watch && format === 'table' && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
        process.stdout.write(text);
      };
      let policies = await fetchAll();
      print(policies);
      if (!opts.watch) return;
      // Watch and reprint; re-read in full every 10 s as well, so "x left" keeps counting down.
      const path = all
        ? `/apis/${GROUP}/${VERSION}/${POLICY_PLURAL}`
        : `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${POLICY_PLURAL}`;
      const byKey = new Map(policies.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
      const watch = new Watch(kc);
      await new Promise<void>((resolve, reject) => {
        const start = (): void => {
          void watch
            .watch(
              path,
              name ? { fieldSelector: `metadata.name=${name}` } : {},
              (type, obj: PahlevanPolicy) => {
                const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
                if (type === 'DELETED') byKey.delete(key);
                else if (type === 'ADDED' || type === 'MODIFIED') byKey.set(key, obj);
                else return;
                policies = [...byKey.values()];
                if (policies.length) print(policies);
                else if (name) {
                  process.stdout.write(`PahlevanPolicy ${namespace}/${name} was deleted.\n`);
                  resolve();
                }
              },
              (err: unknown) => {
                if (err && !/aborted/i.test(String(err))) {
                  process.stderr.write(
                    `pahlevan: watch interrupted (${explain(err, 'watching', kc).message}); retrying\n`,
                  );
                  setTimeout(start, 2000);
                } else setTimeout(start, 0);
              },
            )
            .catch(reject);
        };
        start();
        setInterval(() => {
          if (format === 'table' && policies.length) print(policies);
        }, 10_000).unref();
      });
    }),
  );
}
