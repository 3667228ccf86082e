// PahlevanProfile (pahlevan.io/v1alpha1): one immutable published profile version for one (policy, container).
// The name carries the content hash, so new content is a new object; agents install `seccomp` as the file
// `<kubelet>/seccomp/<localhostProfile>` and program the allow-lists into the enforcement layers.
import { z } from 'zod';
import { API_VERSION, SubdomainObjectMeta } from './policy.js';
import { OciSeccompProfile } from './seccomp.js';
import { localhostProfilePath, sha256Hex } from './names.js';

export const PROFILE_KIND = 'PahlevanProfile';
export const PROFILE_PLURAL = 'pahlevanprofiles';
/** Label on profiles: the container name they are for. */
export const LABEL_CONTAINER = 'pahlevan.io/container';

export const FileRule = z.object({ path: z.string().min(1), write: z.boolean() });
export const PortAllow = z.object({
  direction: z.enum(['listen', 'egress']),
  protocol: z.enum(['TCP', 'UDP']),
  port: z.number().int().min(0).max(65535),
  endPort: z.number().int().min(0).max(65535).optional(),
  cidr: z.string().optional(),
});

/** The published content: everything the hash covers. */
export const ProfileContent = z.object({
  seccomp: OciSeccompProfile,
  execs: z.array(z.string()).describe('Allowed executable paths or globs, sorted.'),
  files: z.array(FileRule).describe('Allowed file paths or globs with write intent, sorted by path.'),
  ports: z.array(PortAllow).describe('Allowed listening ports and egress destinations.'),
  images: z
    .array(z.string())
    .optional()
    .describe('Images the content was learned from, sorted: a new image makes a new version.'),
});

export const ProfileSpec = ProfileContent.extend({
  policy: z.string(),
  container: z.string(),
  hash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .describe('sha256 of the canonical JSON of the content.'),
  localhostProfile: z.string().describe('Path relative to the kubelet seccomp root.'),
  image: z.string().optional().describe('The image the profile was learned from.'),
  learnedFrom: z.object({ nodes: z.number().int(), pods: z.number().int() }).optional(),
  coverage: z
    .record(z.string(), z.object({ nodes: z.number().int(), pods: z.number().int() }))
    .optional()
    .describe('Per syscall: how many nodes and pods showed it.'),
});

export const PahlevanProfile = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(PROFILE_KIND),
  metadata: SubdomainObjectMeta,
  spec: ProfileSpec,
});

export type FileRule = z.infer<typeof FileRule>;
export type PortAllow = z.infer<typeof PortAllow>;
export type ProfileContent = z.infer<typeof ProfileContent>;
export type ProfileSpec = z.infer<typeof ProfileSpec>;
export type PahlevanProfile = z.infer<typeof PahlevanProfile>;

/** JSON with object keys sorted at every level: equal content, equal bytes, equal hash. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

export function profileContentHash(content: ProfileContent): string {
  return sha256Hex(
    canonicalJson({
      seccomp: content.seccomp,
      execs: content.execs,
      files: content.files,
      ports: content.ports,
      ...(content.images ? { images: content.images } : {}),
    }),
  );
}

/** `<policy>.<container>.<hash16>`: policy and container names are DNS labels (no dots), so it never collides. */
export function profileObjectName(policy: string, container: string, hash: string): string {
  return `${policy}.${container}.${hash.slice(0, 16)}`;
}

/** Builds the full spec (hash, path) from content; throws on names that could escape the seccomp root. */
export function buildProfileSpec(
  namespace: string,
  policy: string,
  container: string,
  content: ProfileContent,
  extra: Pick<ProfileSpec, 'image' | 'learnedFrom' | 'coverage'> = {},
): ProfileSpec {
  const hash = profileContentHash(content);
  return {
    policy,
    container,
    hash,
    localhostProfile: localhostProfilePath(namespace, policy, container, hash),
    ...content,
    ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)),
  };
}
