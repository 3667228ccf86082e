import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { stringify } from 'yaml';
import { exposedNames } from '../../api/metrics.js';
import { allRegistries } from '../helpers/metric-registries.js';

const DASHBOARD = fileURLToPath(new URL('../../../manifests/grafana-dashboard.json', import.meta.url));

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos?: unknown;
  targets?: { expr?: string }[];
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  panels: Panel[];
  templating: { list: { name: string; query?: unknown }[] };
};
const panels = dashboard.panels.filter((p) => p.type !== 'row');
const exported = new Set(allRegistries().flatMap(({ registry }) => exposedNames(registry)));
const METRIC_TOKEN = /\bpahlevan_[a-z0-9_]+/g;

/** Every PromQL expression of the dashboard, with where it is. */
function expressions(): { where: string; expr: string }[] {
  const out = panels.flatMap((p) =>
    (p.targets ?? []).map((t, i) => ({ where: `panel "${p.title}" target ${i}`, expr: t.expr ?? '' })),
  );
  for (const v of dashboard.templating.list) {
    const q = v.query;
    const text = typeof q === 'string' ? q : (q as { query?: string } | undefined)?.query;
    if (text && text.includes('label_values')) out.push({ where: `variable ${v.name}`, expr: text });
  }
  return out;
}

test('every panel has a query, and every query names a Pahlevan metric', () => {
  assert.ok(panels.length >= 8);
  for (const p of panels) {
    assert.ok(p.targets && p.targets.length > 0, `panel "${p.title}" has no query`);
    for (const t of p.targets) {
      assert.ok(t.expr && t.expr.trim(), `panel "${p.title}" has an empty query`);
      assert.match(
        t.expr,
        /\bpahlevan_[a-z0-9_]+/,
        `panel "${p.title}": query names no pahlevan_ metric: ${t.expr}`,
      );
    }
    assert.ok(p.gridPos, `panel "${p.title}" has no position`);
  }
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids repeat');
});

test('every metric name in the queries is one the code exports', () => {
  const unknown: string[] = [];
  for (const { where, expr } of expressions())
    for (const name of expr.match(METRIC_TOKEN) ?? [])
      if (!exported.has(name)) unknown.push(`${where}: ${name}`);
  assert.deepEqual(unknown, [], `not exported by any registry (test/helpers/metric-registries.ts)`);
});

test('the dashboard covers violations over time, learning, attack surface', () => {
  const titled = (re: RegExp): Panel | undefined => panels.find((p) => re.test(p.title));
  assert.ok(titled(/violations over time/i));
  assert.ok(titled(/behaviours learned/i));
  assert.ok(titled(/risk score/i));
  assert.ok(titled(/syscalls allowed vs\. runtime default/i));
  assert.ok(titled(/admission latency/i));
});

test('every query is valid PromQL (promtool check rules)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pahlevan-dashboard-'));
  try {
    // Grafana's variables become what Grafana substitutes for them.
    const concrete = (expr: string): string =>
      expr
        .replaceAll('$__rate_interval', '5m')
        .replaceAll('$__range', '1h')
        .replaceAll('$namespace', '.*')
        .replaceAll('$policy', '.*');
    const rules = panels.flatMap((p) =>
      (p.targets ?? []).map((t, i) => ({
        record: `pahlevan:dashboard_check:${p.id}_${i}`,
        expr: concrete(t.expr!),
      })),
    );
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    if (r.error)
      throw new Error(`promtool not found: install the Debian package \`prometheus\` (${r.error.message})`);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
