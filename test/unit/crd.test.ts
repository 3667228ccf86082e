import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { CRDS, policyCrd } from '../../api/crds.js';
import { buildCrd, renderCrdFiles, structuralNode } from '../../api/crd.js';

const CRD_DIR = fileURLToPath(new URL('../../../manifests/crds/', import.meta.url));

test('committed manifests/crds match what the zod schemas generate (run `npm run gen:crd`)', () => {
  const expected = renderCrdFiles(CRDS);
  const committed = readdirSync(CRD_DIR).filter((f) => f.endsWith('.yaml'));
  assert.deepEqual(
    committed.sort(),
    [...expected.keys()].sort(),
    'set of CRD files differs: run `npm run gen:crd`',
  );
  for (const [name, content] of expected)
    assert.equal(
      readFileSync(CRD_DIR + name, 'utf8'),
      content,
      `${name} is out of date: run \`npm run gen:crd\``,
    );
});

type Node = Record<string, unknown>;

function walk(node: Node, path: string, visit: (n: Node, p: string) => void): void {
  visit(node, path);
  for (const [name, child] of Object.entries((node.properties as Record<string, Node>) ?? {}))
    walk(child, `${path}.${name}`, visit);
  if (node.items) walk(node.items as Node, `${path}[]`, visit);
  if (typeof node.additionalProperties === 'object')
    walk(node.additionalProperties as Node, `${path}.*`, visit);
}

test('the PahlevanPolicy CRD schema is structural', () => {
  const crd = buildCrd(policyCrd) as Node;
  const version = (crd.spec as Node).versions as Node[];
  const schema = ((version[0]!.schema as Node).openAPIV3Schema as Node) ?? {};
  let nodes = 0;
  walk(schema, '', (n, p) => {
    nodes++;
    assert.ok(
      n.type !== undefined || n['x-kubernetes-preserve-unknown-fields'] === true,
      `${p}: untyped node`,
    );
    for (const k of [
      '$schema',
      '$ref',
      'anyOf',
      'oneOf',
      'allOf',
      'propertyNames',
      'const',
      'patternProperties',
    ])
      assert.ok(!(k in n), `${p}: ${k} is not allowed in a structural schema`);
    assert.ok(
      !(n.properties && n.additionalProperties),
      `${p}: properties and additionalProperties together`,
    );
    if (n.minimum !== undefined)
      assert.ok(Math.abs(n.minimum as number) < Number.MAX_SAFE_INTEGER, `${p}: min`);
  });
  assert.ok(nodes > 100);
  assert.deepEqual(schema.required, ['spec']);
  const spec = (schema.properties as Record<string, Node>).spec!;
  const learning = (spec.properties as Record<string, Node>).learning!;
  assert.deepEqual(learning.default, {});
  assert.equal((learning.properties as Record<string, Node>).duration!.default, '10m');
  assert.equal((learning.properties as Record<string, Node>).duration!.pattern, '^([0-9]+(ms|s|m|h))+$');
});

test('the committed CRD has the names, status subresource and printer columns kubectl shows', () => {
  const crd = parse(readFileSync(CRD_DIR + 'pahlevanpolicies.pahlevan.io.yaml', 'utf8'));
  assert.equal(crd.metadata.name, 'pahlevanpolicies.pahlevan.io');
  assert.deepEqual(crd.spec.names.shortNames, ['pp']);
  assert.equal(crd.spec.scope, 'Namespaced');
  const v = crd.spec.versions[0];
  assert.deepEqual(v.subresources, { status: {} });
  const columns = v.additionalPrinterColumns.filter((c: Node) => !c.priority).map((c: Node) => c.name);
  assert.deepEqual(columns, ['Phase', 'Mode', 'Syscalls', 'Age']);
  const wide = v.additionalPrinterColumns.filter((c: Node) => c.priority === 1).map((c: Node) => c.name);
  assert.ok(wide.length >= 2, 'wide columns present');
  // every printer column points at a field that exists in the schema
  for (const c of v.additionalPrinterColumns as Node[]) {
    if (c.jsonPath === '.metadata.creationTimestamp') continue;
    let node: Node = v.schema.openAPIV3Schema;
    for (const part of (c.jsonPath as string).slice(1).split('.'))
      node = (node.properties as Record<string, Node>)[part]!;
    assert.ok(node, `${c.name}: ${c.jsonPath} not in schema`);
  }
});

test('the generator refuses schemas that cannot be structural, naming the path', () => {
  const union = z.toJSONSchema(z.object({ x: z.union([z.string(), z.number()]) }), { target: 'openapi-3.0' });
  assert.throws(() => structuralNode(union as never, ''), /\.x: "anyOf" cannot be expressed/);
  const unknown = structuralNode(z.toJSONSchema(z.object({ blob: z.unknown() })) as never, '');
  assert.equal(
    (unknown.properties as Record<string, Node>).blob!['x-kubernetes-preserve-unknown-fields'],
    true,
  );
});
