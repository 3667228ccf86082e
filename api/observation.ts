// PahlevanNodeObservation (pahlevan.io/v1alpha1): what one node's agent saw for one policy. One object per
// (node, policy), written only by that node's agent, so N agents never contend for one object; the controller
// merges them. Everything learned lives here, in the API, so a controller restart or failover loses nothing.
import { z } from 'zod';
import { API_VERSION, Layer, SubdomainObjectMeta } from './policy.js';
import { sha256Hex } from './names.js';

export const OBSERVATION_KIND = 'PahlevanNodeObservation';
export const OBSERVATION_PLURAL = 'pahlevannodeobservations';
/** Label on observations: the node that wrote it (label values are limited to 63 characters: see below). */
export const LABEL_NODE = 'pahlevan.io/node';

const SYSCALL_NAME = /^[a-z_][a-z0-9_]*$/;
const Count = z.number().int().min(0);
const Timestamp = z.string().describe('RFC 3339 time.');

/** How often something was seen on this node and by how many distinct pods of the container. */
export const Seen = z.object({
  count: Count.describe('Times seen (first-seen events, not every call).'),
  pods: Count.describe('Distinct pods on this node that showed it.'),
});

export const FileSeen = Seen.extend({
  write: z.boolean().describe('Opened for writing (or created) at least once.'),
});

export const PortSeen = Seen.extend({
  direction: z.enum(['listen', 'egress']),
  protocol: z.enum(['TCP', 'UDP']),
  port: z.number().int().min(0).max(65535),
  address: z.string().optional().describe('Egress destination address or CIDR, when known.'),
});

export const ContainerObservation = z.object({
  name: z
    .string()
    .min(1)
    .max(63)
    .describe('Container name in the pod spec (profiles are per container name).'),
  images: z.array(z.string()).describe('Images this container ran with on this node, sorted.'),
  pods: z.array(z.string()).describe('Names of the pods (in the policy namespace) it was seen in, sorted.'),
  firstSeenAt: Timestamp.optional(),
  lastSeenAt: Timestamp.optional(),
  syscalls: z.record(z.string().regex(SYSCALL_NAME), Seen),
  execs: z.record(z.string(), Seen).describe('Executed paths.'),
  files: z.record(z.string(), FileSeen).describe('Opened paths (generalised by the agent).'),
  ports: z.array(PortSeen),
});

export const DeniedBehaviour = z.object({
  container: z.string(),
  layer: Layer,
  what: z
    .string()
    .describe('What was denied: a syscall name, a path, or a port (`tcp bind :8080`, `tcp 1.2.3.4:443`).'),
  count: Count,
  lastAt: Timestamp.optional(),
});

export const NodeViolations = z.object({
  total: Count.describe('Monotonic since agent.startedAt (a restart resets it).'),
  byLayer: z.record(z.string(), Count).default({}),
  denied: z.array(DeniedBehaviour).default([]).describe('What was denied, most frequent first, bounded.'),
});

export const InstalledProfile = z.object({
  hash: z.string().regex(/^[0-9a-f]{12,64}$/),
  profileName: z.string().optional(),
  installedAt: Timestamp.optional(),
});

export const ObservationSpec = z.object({
  policy: z.string().describe('Name of the PahlevanPolicy (same namespace).'),
  node: z.string(),
  agent: z
    .object({ startedAt: Timestamp, version: z.string().optional() })
    .optional()
    .describe('Identifies one agent run: counters restart from zero when startedAt changes.'),
  updatedAt: Timestamp.optional(),
  containers: z.array(ContainerObservation).default([]),
  violations: NodeViolations.prefault({ total: 0 }),
  layers: z
    .object({
      active: z.array(Layer).default([]),
      missing: z.array(z.object({ layer: Layer, reason: z.string() })).default([]),
    })
    .prefault({}),
  installed: z
    .array(InstalledProfile)
    .default([])
    .describe('Profile hashes installed on this node (the acks).'),
});

export const PahlevanNodeObservation = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(OBSERVATION_KIND),
  metadata: SubdomainObjectMeta,
  spec: ObservationSpec,
});

export type Seen = z.infer<typeof Seen>;
export type FileSeen = z.infer<typeof FileSeen>;
export type PortSeen = z.infer<typeof PortSeen>;
export type ContainerObservation = z.infer<typeof ContainerObservation>;
export type DeniedBehaviour = z.infer<typeof DeniedBehaviour>;
export type ObservationSpec = z.infer<typeof ObservationSpec>;
export type PahlevanNodeObservation = z.infer<typeof PahlevanNodeObservation>;

/**
 * The object name for (policy, node): `<policy>.<node>`. Policy names are DNS labels (no dots), so the first
 * dot separates the two without ambiguity; a name that would pass 253 characters uses a hash of the node.
 */
export function observationName(policy: string, node: string): string {
  const name = `${policy}.${node}`;
  return name.length <= 253 ? name : `${policy}.${sha256Hex(node).slice(0, 32)}`;
}

/** Label value for a node name (label values are at most 63 characters). */
export function nodeLabelValue(node: string): string {
  return node.length <= 63 ? node : sha256Hex(node).slice(0, 63);
}
