// Turns the zod schemas into CustomResourceDefinitions whose openAPIV3Schema is structural
// (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
// every node typed, no $ref/$schema, no additionalProperties next to properties, no propertyNames,
// nullability as `nullable`, defaults kept so the API server applies them.
import { z } from 'zod';
import { stringify } from 'yaml';
import { GROUP, VERSION } from './policy.js';
import type { CrdDefinition } from './crds.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

// zod writes these bounds for every .int(); they carry no meaning in a CRD.
const SAFE_INTEGER_BOUNDS = new Set([Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]);
// Keywords the apiextensions JSONSchemaProps type has no field for, or that structural schemas forbid.
const DROPPED_KEYWORDS = new Set([
  '$schema',
  '$id',
  'propertyNames',
  'id',
  'examples',
  'readOnly',
  'writeOnly',
]);
const FORBIDDEN_KEYWORDS = [
  '$ref',
  '$defs',
  'definitions',
  'anyOf',
  'oneOf',
  'allOf',
  'not',
  'patternProperties',
];

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Rewrites one JSON-schema node (and its children) into a structural node; throws naming the path otherwise. */
export function structuralNode(node: JsonObject, path: string): JsonObject {
  for (const keyword of FORBIDDEN_KEYWORDS)
    if (keyword in node)
      throw new Error(
        `${path}: "${keyword}" cannot be expressed in a structural CRD schema; simplify the zod schema`,
      );
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROPPED_KEYWORDS.has(key)) continue;
    if (
      (key === 'minimum' || key === 'maximum') &&
      typeof value === 'number' &&
      SAFE_INTEGER_BOUNDS.has(value)
    )
      continue;
    if (key === 'const') {
      out.enum = [value];
      continue;
    }
    if (key === 'properties' && isObject(value)) {
      const props: JsonObject = {};
      for (const [name, child] of Object.entries(value))
        props[name] = structuralNode(isObject(child) ? child : {}, `${path}.${name}`);
      out.properties = props;
      continue;
    }
    if (key === 'items' && isObject(value)) {
      out.items = structuralNode(value, `${path}[]`);
      continue;
    }
    if (key === 'additionalProperties') continue; // handled below
    out[key] = value;
  }
  const additional = node.additionalProperties;
  if (out.properties !== undefined) {
    // Structural schemas forbid properties + additionalProperties; loose objects keep unknown fields instead.
    if (isObject(additional)) out['x-kubernetes-preserve-unknown-fields'] = true;
  } else if (isObject(additional)) {
    out.additionalProperties =
      Object.keys(additional).length === 0
        ? { 'x-kubernetes-preserve-unknown-fields': true }
        : structuralNode(additional, `${path}.*`);
  }
  if (out.type === undefined) {
    // An untyped node (z.unknown / z.any) is allowed only when it explicitly keeps unknown content.
    out['x-kubernetes-preserve-unknown-fields'] = true;
  }
  if (out.type === 'object' && out.properties === undefined && out.additionalProperties === undefined)
    out['x-kubernetes-preserve-unknown-fields'] = true;
  return out;
}

/** The openAPIV3Schema of a whole object: spec and status from zod; metadata, apiVersion and kind left to Kubernetes. */
export function openApiSchema(schema: z.ZodType, description: string): JsonObject {
  const raw = z.toJSONSchema(schema, {
    io: 'input',
    target: 'openapi-3.0',
    unrepresentable: 'throw',
  }) as JsonObject;
  const properties = isObject(raw.properties) ? raw.properties : {};
  const out: JsonObject = {
    description,
    type: 'object',
    properties: {
      apiVersion: { type: 'string', description: 'APIVersion of this object.' },
      kind: { type: 'string', description: 'Kind of this object.' },
      metadata: { type: 'object' },
    },
  };
  const outProps = out.properties as JsonObject;
  for (const [name, child] of Object.entries(properties)) {
    if (name === 'apiVersion' || name === 'kind' || name === 'metadata') continue;
    outProps[name] = structuralNode(isObject(child) ? child : {}, `.${name}`);
  }
  const required = Array.isArray(raw.required)
    ? raw.required.filter((r) => typeof r === 'string' && !['apiVersion', 'kind', 'metadata'].includes(r))
    : [];
  if (required.length > 0) out.required = required;
  return out;
}

export function buildCrd(def: CrdDefinition): JsonObject {
  const version: JsonObject = {
    name: VERSION,
    served: true,
    storage: true,
    schema: { openAPIV3Schema: openApiSchema(def.schema, def.description) },
    additionalPrinterColumns: def.printerColumns.map((c) => {
      const col: JsonObject = { name: c.name, type: c.type, jsonPath: c.jsonPath };
      if (c.description !== undefined) col.description = c.description;
      if (c.priority) col.priority = c.priority;
      return col;
    }),
  };
  if (def.statusSubresource) version.subresources = { status: {} };
  const names: JsonObject = {
    kind: def.kind,
    listKind: `${def.kind}List`,
    plural: def.plural,
    singular: def.singular,
  };
  if (def.shortNames?.length) names.shortNames = def.shortNames;
  if (def.categories?.length) names.categories = def.categories;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${def.plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'pahlevan' } },
    spec: { group: GROUP, scope: def.scope, names, versions: [version] },
  };
}

const HEADER = '# Generated by `npm run gen:crd` from api/crds.ts (zod schemas in api/). Do not edit.\n';

/** File name -> content for manifests/crds/: one YAML per CRD plus the kustomization listing them. */
export function renderCrdFiles(defs: readonly CrdDefinition[]): Map<string, string> {
  const files = new Map<string, string>();
  const names: string[] = [];
  for (const def of defs) {
    const fileName = `${def.plural}.${GROUP}.yaml`;
    if (files.has(fileName)) throw new Error(`two CRD definitions for ${def.plural}`);
    files.set(fileName, HEADER + stringify(buildCrd(def), { lineWidth: 0 }));
    names.push(fileName);
  }
  files.set(
    'kustomization.yaml',
    HEADER +
      stringify(
        { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: names },
        { lineWidth: 0 },
      ),
  );
  return files;
}
