// The PahlevanPolicy API (pahlevan.io/v1alpha1), written once: the TypeScript types, the validating
// webhook and the CRD's openAPIV3Schema (api/crd.ts) all derive from these zod schemas.
import { z } from 'zod';

export const GROUP = 'pahlevan.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const POLICY_KIND = 'PahlevanPolicy';
export const POLICY_PLURAL = 'pahlevanpolicies';

/** Kubernetes-style duration: one or more <number><unit> groups, e.g. `90s`, `10m`, `1h30m`. */
const DURATION_PATTERN = /^([0-9]+(ms|s|m|h))+$/;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDurationMs(text: string): number {
  if (!DURATION_PATTERN.test(text))
    throw new Error(`expected a duration like 10m, got ${JSON.stringify(text)}`);
  let totalMs = 0;
  for (const m of text.matchAll(/([0-9]+)(ms|s|m|h)/g)) totalMs += Number(m[1]) * DURATION_UNIT_MS[m[2]!]!;
  return totalMs;
}

export const Duration = z
  .string()
  .regex(DURATION_PATTERN, {
    error: (iss) => `expected a duration like 10m, got ${JSON.stringify(iss.input)}`,
  })
  .describe('A duration such as 30s, 10m or 1h30m.');

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const LabelKey = z
  .string()
  .max(316)
  .regex(LABEL_NAME, {
    error: (iss) => `expected a label key like app or example.com/app, got ${JSON.stringify(iss.input)}`,
  });
const LabelValue = z
  .string()
  .max(63)
  .regex(LABEL_VALUE, {
    error: (iss) => `expected a label value (alphanumerics, -, _, .), got ${JSON.stringify(iss.input)}`,
  });

export const LabelSelectorRequirement = z
  .object({
    key: LabelKey,
    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
    values: z.array(LabelValue).optional(),
  })
  .superRefine((req, ctx) => {
    const needsValues = req.operator === 'In' || req.operator === 'NotIn';
    const count = req.values?.length ?? 0;
    if (needsValues && count === 0)
      ctx.addIssue({
        code: 'custom',
        path: ['values'],
        message: `operator ${req.operator} needs at least one value`,
      });
    if (!needsValues && count > 0)
      ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${req.operator} takes no values` });
  });

export const LabelSelector = z
  .object({
    matchLabels: z.record(LabelKey, LabelValue).optional(),
    matchExpressions: z.array(LabelSelectorRequirement).optional(),
  })
  .describe('Selects pods in the policy namespace, as a Kubernetes LabelSelector.');

export const LAYERS = ['syscalls', 'files', 'execs', 'network'] as const;
export const Layer = z.enum(LAYERS);
export const MODES = ['Monitor', 'Enforce', 'Alert'] as const;
export const Mode = z.enum(MODES);

export const Learning = z.object({
  duration: Duration.default('10m').describe('Minimum learning time before a profile may be published.'),
  window: Duration.default('1m').describe('Length of one stability window.'),
  stableWindows: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(3)
    .describe('Publish only after this many consecutive windows with no new behaviour.'),
  autoEnforce: z
    .boolean()
    .default(false)
    .describe('Switch to the enforcement mode by itself once published.'),
});

export const Enforcement = z.object({
  mode: Mode.default('Monitor'),
  layers: z
    .array(Layer)
    .default([...LAYERS])
    .refine((layers) => new Set(layers).size === layers.length, { error: 'layers must not repeat' }),
  layerModes: z
    .object({
      syscalls: Mode.optional(),
      files: Mode.optional(),
      execs: Mode.optional(),
      network: Mode.optional(),
    })
    .optional()
    .describe('Per-layer mode overriding `mode`.'),
});

const SYSCALL_NAME = /^[a-z_][a-z0-9_]*$/;
const SyscallName = z
  .string()
  .max(64)
  .regex(SYSCALL_NAME, {
    error: (iss) => `expected a syscall name like openat, got ${JSON.stringify(iss.input)}`,
  });

export const SyscallRules = z.object({
  allow: z.array(SyscallName).optional(),
  deny: z.array(SyscallName).optional(),
});

const PathGlob = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith('/'), {
    error: (iss) => `expected an absolute path or glob, got ${JSON.stringify(iss.input)}`,
  })
  .refine((p) => !p.split('/').includes('..'), { error: 'paths must not contain ".."' });

export const PathRules = z.object({
  allow: z.array(PathGlob).optional(),
  deny: z.array(PathGlob).optional(),
});

const CIDR_PATTERN =
  /^(([0-9]{1,3}\.){3}[0-9]{1,3}\/([0-9]|[12][0-9]|3[0-2])|[0-9a-fA-F:]+:[0-9a-fA-F:.]*\/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))$/;

export const PortRule = z
  .object({
    protocol: z.enum(['TCP', 'UDP']).default('TCP'),
    port: z.number().int().min(1).max(65535),
    endPort: z.number().int().min(1).max(65535).optional(),
    cidr: z
      .string()
      .regex(CIDR_PATTERN, {
        error: (iss) => `expected a CIDR like 10.0.0.0/8 or fd00::/8, got ${JSON.stringify(iss.input)}`,
      })
      .refine(
        (c) =>
          !c.includes('.') ||
          c
            .split('/')[0]!
            .split('.')
            .every((o) => Number(o) <= 255),
        {
          error: (iss) => `expected a CIDR with octets 0-255, got ${JSON.stringify(iss.input)}`,
        },
      )
      .optional(),
  })
  .refine((r) => r.endPort === undefined || r.endPort >= r.port, {
    path: ['endPort'],
    error: 'endPort must be greater than or equal to port',
  });

export const NetworkRules = z.object({
  egress: z.array(PortRule).optional().describe('Extra allowed outbound destinations.'),
  ingress: z
    .array(PortRule)
    .optional()
    .describe('Extra allowed listening/inbound ports (cidr = allowed sources).'),
  allowDNS: z.boolean().default(true),
  allowLoopback: z.boolean().default(true),
});

export const SelfHealing = z.object({
  enabled: z.boolean().default(true),
  threshold: z.number().int().min(1).default(10).describe('Violations per window that trigger the strategy.'),
  window: Duration.default('1m'),
  strategy: z.enum(['Rollback', 'Relax', 'Relearn']).default('Rollback'),
  cooldown: Duration.default('5m').describe('Minimum time between two self-healing actions (hysteresis).'),
});

export const PolicySpec = z.object({
  selector: LabelSelector,
  learning: Learning.prefault({}),
  enforcement: Enforcement.prefault({}),
  syscalls: SyscallRules.optional(),
  files: PathRules.optional(),
  execs: PathRules.optional(),
  network: NetworkRules.prefault({}),
  selfHealing: SelfHealing.prefault({}),
});

export const PHASES = ['Learning', 'Enforcing', 'Monitoring', 'RolledBack', 'Failed'] as const;
export const Phase = z.enum(PHASES);

export const Condition = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string(),
  message: z.string(),
  lastTransitionTime: z.string(),
  observedGeneration: z.number().int().optional(),
});

export const PublishedProfile = z.object({
  container: z.string(),
  hash: z.string().describe('Content hash of the seccomp profile (sha256, hex).'),
  localhostProfile: z.string().describe('Path relative to the kubelet seccomp root.'),
  profileName: z.string().describe('Name of the immutable PahlevanProfile object holding the content.'),
  image: z
    .string()
    .optional()
    .describe('Comma-separated images the profile was learned from; the webhook attaches it only to these.'),
  syscalls: z.number().int(),
  nodesInstalled: z.number().int(),
  nodesReady: z.number().int(),
  usable: z.boolean().describe('Installed on every ready node: the webhook may attach it.'),
  stale: z.boolean().optional().describe('The container image changed since it was learned.'),
  withinRuntimeDefault: z
    .boolean()
    .optional()
    .describe(
      'Every syscall the profile allows is also allowed by the runtime default profile, so it may replace RuntimeDefault without weakening it.',
    ),
});

export const LearningProgress = z.object({
  startedAt: z.string().optional(),
  podsObserved: z.number().int().default(0),
  nodesReporting: z.number().int().default(0),
  syscalls: z.number().int().default(0),
  files: z.number().int().default(0),
  execs: z.number().int().default(0),
  ports: z.number().int().default(0),
  stableWindows: z.number().int().default(0),
  lastNewBehaviourAt: z.string().optional(),
});

export const ViolationSummary = z.object({
  total: z.number().int().default(0),
  byLayer: z.record(z.string(), z.number().int()).optional(),
  lastAt: z.string().optional(),
  recent: z
    .array(z.object({ layer: z.string(), container: z.string(), what: z.string(), count: z.number().int() }))
    .optional(),
});

export const AttackSurface = z.object({
  container: z.string(),
  syscallsAllowed: z.number().int(),
  runtimeDefaultSyscalls: z.number().int(),
  dangerousAllowed: z.array(z.string()),
  listeningPorts: z.array(z.string()),
  egressPorts: z.array(z.string()),
  writablePaths: z.array(z.string()),
  executables: z.array(z.string()),
  riskScore: z.number(),
});

export const NodeLayers = z.object({
  node: z.string(),
  active: z.array(z.string()),
  missing: z.array(z.object({ layer: z.string(), reason: z.string() })),
});

export const PolicyStatus = z.object({
  phase: Phase.optional(),
  observedGeneration: z.number().int().optional(),
  conditions: z.array(Condition).optional(),
  learning: LearningProgress.optional(),
  profiles: z.array(PublishedProfile).optional(),
  violations: ViolationSummary.optional(),
  attackSurface: z.array(AttackSurface).optional(),
  nodes: z.array(NodeLayers).optional(),
  selfHealing: z
    .object({
      lastAction: z.string().optional(),
      lastActionAt: z.string().optional(),
      reason: z.string().optional(),
    })
    .optional(),
});

export const ObjectMeta = z
  .object({
    name: z
      .string()
      .max(63)
      .regex(DNS_LABEL, {
        error: (iss) =>
          `expected a DNS-1123 label (lowercase alphanumerics and -), got ${JSON.stringify(iss.input)}`,
      })
      .optional(),
    generateName: z.string().optional(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    generation: z.number().int().optional(),
    labels: z.record(z.string(), z.string()).nullish(),
    annotations: z.record(z.string(), z.string()).nullish(),
    creationTimestamp: z.string().nullish(),
  })
  .loose();

/**
 * Metadata of the agent- and controller-written kinds: their names join validated parts with dots
 * (`<policy>.<node>`, `<policy>.<container>.<hash>`), so they are DNS-1123 subdomains, as Kubernetes allows.
 */
export const SubdomainObjectMeta = ObjectMeta.extend({
  name: z
    .string()
    .max(253)
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
      error: (iss) => `expected a DNS-1123 subdomain, got ${JSON.stringify(iss.input)}`,
    })
    .optional(),
});

export const PahlevanPolicy = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(POLICY_KIND),
  metadata: ObjectMeta,
  spec: PolicySpec,
  status: PolicyStatus.optional(),
});

export type Duration = z.infer<typeof Duration>;
export type LabelSelector = z.infer<typeof LabelSelector>;
export type Layer = z.infer<typeof Layer>;
export type Mode = z.infer<typeof Mode>;
export type Phase = z.infer<typeof Phase>;
export type PortRule = z.infer<typeof PortRule>;
export type PolicySpec = z.infer<typeof PolicySpec>;
export type PolicyStatus = z.infer<typeof PolicyStatus>;
export type Condition = z.infer<typeof Condition>;
export type PublishedProfile = z.infer<typeof PublishedProfile>;
export type AttackSurface = z.infer<typeof AttackSurface>;
export type PahlevanPolicy = z.infer<typeof PahlevanPolicy>;
/** A policy as written by a user, before defaults. */
export type PahlevanPolicyInput = z.input<typeof PahlevanPolicy>;

/** Validates and applies defaults; returns `field: message` strings on failure. */
export function parsePolicy(
  input: unknown,
): { ok: true; policy: PahlevanPolicy } | { ok: false; errors: string[] } {
  const result = PahlevanPolicy.safeParse(input);
  if (result.success) return { ok: true, policy: result.data };
  return { ok: false, errors: result.error.issues.map(formatIssue) };
}

export function formatIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
  return `${path || '(root)'}: ${issue.message}`;
}

/** Mode in force for one layer of a policy. */
export function layerMode(spec: PolicySpec, layer: Layer): Mode | 'Off' {
  if (!spec.enforcement.layers.includes(layer)) return 'Off';
  return spec.enforcement.layerModes?.[layer] ?? spec.enforcement.mode;
}
