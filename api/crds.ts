// Every CustomResourceDefinition Pahlevan installs. `npm run gen:crd` renders this list into manifests/crds/;
// other parts add their own kinds (e.g. PahlevanProfile, PahlevanNodeObservation) by appending an entry.
import type { z } from 'zod';
import { GROUP, VERSION, PahlevanPolicy, POLICY_KIND, POLICY_PLURAL } from './policy.js';
import { OBSERVATION_KIND, OBSERVATION_PLURAL, PahlevanNodeObservation } from './observation.js';
import { PROFILE_KIND, PROFILE_PLURAL, PahlevanProfile } from './profile.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  /** 0 = shown by `kubectl get`, 1 = only with `-o wide`. */
  priority?: 0 | 1;
}

export interface CrdDefinition {
  group: string;
  version: string;
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
  group: GROUP,
  version: VERSION,
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

export const observationCrd: CrdDefinition = {
  group: GROUP,
  version: VERSION,
  kind: OBSERVATION_KIND,
  plural: OBSERVATION_PLURAL,
  singular: 'pahlevannodeobservation',
  shortNames: ['pno'],
  categories: ['pahlevan'],
  scope: 'Namespaced',
  description: "One node's observations for one policy, written only by that node's agent.",
  schema: PahlevanNodeObservation,
  statusSubresource: false,
  printerColumns: [
    { name: 'Node', type: 'string', jsonPath: '.spec.node' },
    { name: 'Policy', type: 'string', jsonPath: '.spec.policy' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};

export const profileCrd: CrdDefinition = {
  group: GROUP,
  version: VERSION,
  kind: PROFILE_KIND,
  plural: PROFILE_PLURAL,
  singular: 'pahlevanprofile',
  shortNames: ['ppr'],
  categories: ['pahlevan'],
  scope: 'Namespaced',
  description: 'An immutable, content-addressed profile published for one container of a policy.',
  schema: PahlevanProfile,
  statusSubresource: false,
  printerColumns: [
    { name: 'Policy', type: 'string', jsonPath: '.spec.policy' },
    { name: 'Container', type: 'string', jsonPath: '.spec.container' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};

export const CRDS: CrdDefinition[] = [policyCrd, observationCrd, profileCrd];
/** Aliases used by the controller and the test API server. */
export const POLICY_CRD = policyCrd;
export const OBSERVATION_CRD = observationCrd;
export const PROFILE_CRD = profileCrd;
