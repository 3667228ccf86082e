// Label and annotation names, and the one function that turns validated names into a profile path.
import { createHash } from 'node:crypto';

export const LABEL_NAMESPACE_ENABLED = 'pahlevan.io/enabled';
export const LABEL_POLICY = 'pahlevan.io/policy';
export const LABEL_PROFILE_HASH = 'pahlevan.io/profile-hash';
/** JSON {containerName: image} recorded at admission, so the controller can see image drift. */
export const ANNOTATION_IMAGES = 'pahlevan.io/images';
export const SECCOMP_SUBDIR = 'pahlevan';

const DNS_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const HEX_HASH = /^[0-9a-f]{12,64}$/;

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The seccomp profile path relative to the kubelet seccomp root. Every part must already be a valid
 * Kubernetes name (DNS-1123) or a hex hash; anything else throws, so no input can escape
 * `<kubelet>/seccomp/pahlevan/`.
 */
export function localhostProfilePath(
  namespace: string,
  policy: string,
  container: string,
  hash: string,
): string {
  for (const [what, value] of [
    ['namespace', namespace],
    ['policy', policy],
    ['container', container],
  ] as const) {
    if (!DNS_NAME.test(value) || value.includes('..') || value.length > 253)
      throw new Error(`${what} ${JSON.stringify(value)} is not a valid Kubernetes name`);
  }
  if (!HEX_HASH.test(hash)) throw new Error(`profile hash ${JSON.stringify(hash)} is not a hex digest`);
  return `${SECCOMP_SUBDIR}/${namespace}/${policy}/${container}-${hash.slice(0, 16)}.json`;
}
