// The custom resources Pahlevan serves, described once: the CRD generator and the test API server read this list.
import type { z } from 'zod';
import { GROUP, VERSION, POLICY_KIND, POLICY_PLURAL, PahlevanPolicy } from './policy.js';
import { OBSERVATION_KIND, OBSERVATION_PLURAL, PahlevanNodeObservation } from './observation.js';
import { PROFILE_KIND, PROFILE_PLURAL, PahlevanProfile } from './profile.js';

export interface CrdDefinition {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: 'Namespaced' | 'Cluster';
  statusSubresource: boolean;
  schema: z.ZodType;
}

export const POLICY_CRD: CrdDefinition = {
  group: GROUP,
  version: VERSION,
  kind: POLICY_KIND,
  plural: POLICY_PLURAL,
  singular: 'pahlevanpolicy',
  shortNames: ['pp'],
  scope: 'Namespaced',
  statusSubresource: true,
  schema: PahlevanPolicy,
};

export const OBSERVATION_CRD: CrdDefinition = {
  group: GROUP,
  version: VERSION,
  kind: OBSERVATION_KIND,
  plural: OBSERVATION_PLURAL,
  singular: 'pahlevannodeobservation',
  shortNames: ['pno'],
  scope: 'Namespaced',
  statusSubresource: false,
  schema: PahlevanNodeObservation,
};

export const PROFILE_CRD: CrdDefinition = {
  group: GROUP,
  version: VERSION,
  kind: PROFILE_KIND,
  plural: PROFILE_PLURAL,
  singular: 'pahlevanprofile',
  shortNames: ['ppr'],
  scope: 'Namespaced',
  statusSubresource: false,
  schema: PahlevanProfile,
};

export const CRDS: CrdDefinition[] = [POLICY_CRD, OBSERVATION_CRD, PROFILE_CRD];
