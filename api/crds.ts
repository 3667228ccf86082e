// Every CustomResourceDefinition Pahlevan installs. `npm run gen:crd` renders this list into manifests/crds/;
// other parts add their own kinds (e.g. PahlevanProfile, PahlevanNodeObservation) by appending an entry.
import type { z } from 'zod';
import { PahlevanPolicy, POLICY_KIND, POLICY_PLURAL } from './policy.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  /** 0 = shown by `kubectl get`, 1 = only with `-o wide`. */
  priority?: 0 | 1;
}

export interface CrdDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames?: string[];
  categories?: string[];
  scope: 'Namespaced' | 'Cluster';
  description: string;
  /** The whole object (apiVersion, kind, metadata, spec, status); only spec and status reach the CRD. */
  schema: z.ZodType;
  statusSubresource: boolean;
  printerColumns: PrinterColumn[];
}

export const policyCrd: CrdDefinition = {
  kind: POLICY_KIND,
  plural: POLICY_PLURAL,
  singular: 'pahlevanpolicy',
  shortNames: ['pp'],
  categories: ['pahlevan'],
  scope: 'Namespaced',
  description:
    'Learns what the selected pods do (syscalls, files, execs, network) and then allows only that.',
  schema: PahlevanPolicy,
  statusSubresource: true,
  printerColumns: [
    { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
    { name: 'Mode', type: 'string', jsonPath: '.spec.enforcement.mode' },
    {
      name: 'Syscalls',
      type: 'integer',
      jsonPath: '.status.learning.syscalls',
      description: 'Distinct syscalls learned',
    },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    { name: 'Pods', type: 'integer', jsonPath: '.status.learning.podsObserved', priority: 1 },
    {
      name: 'Stable',
      type: 'integer',
      jsonPath: '.status.learning.stableWindows',
      description: 'Consecutive windows without new behaviour',
      priority: 1,
    },
    { name: 'Violations', type: 'integer', jsonPath: '.status.violations.total', priority: 1 },
    { name: 'Layers', type: 'string', jsonPath: '.spec.enforcement.layers', priority: 1 },
  ],
};

export const CRDS: CrdDefinition[] = [policyCrd];
