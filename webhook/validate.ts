// PahlevanPolicy validation as a pure function over an AdmissionReview request: the zod schema in
// api/policy.ts decides; denials name every wrong field and why, as Kubernetes shows them to the user.
import { LAYERS, parseDurationMs, parsePolicy, POLICY_KIND } from '../api/policy.js';
import type { PahlevanPolicy } from '../api/policy.js';
import type { AdmissionRequest, AdmissionResponse, StatusCause } from './admission.js';
import { ALWAYS_EXCLUDED_NAMESPACES } from './mutate.js';

export interface ValidationOptions {
  excludedNamespaces?: readonly string[];
}

export type ValidationResult = Omit<AdmissionResponse, 'uid'> & { outcome: 'allowed' | 'denied' | 'ignored' };

const GENERATE_NAME = /^[a-z0-9]([-a-z0-9]*)?$/;

function deny(messages: string[], code = 422): ValidationResult {
  const causes: StatusCause[] = messages.map((m) => {
    const colon = m.indexOf(': ');
    return colon > 0
      ? { field: m.slice(0, colon), message: m.slice(colon + 2), reason: 'FieldValueInvalid' }
      : { message: m, reason: 'FieldValueInvalid' };
  });
  return {
    outcome: 'denied',
    allowed: false,
    status: {
      code,
      reason: 'Invalid',
      message: `PahlevanPolicy is invalid: ${messages.join('; ')}`,
      details: { causes },
    },
  };
}

/** Things that are legal but probably not what the author meant. */
export function policyWarnings(
  policy: PahlevanPolicy,
  namespace: string,
  old: PahlevanPolicy | undefined,
  options: ValidationOptions,
): string[] {
  const warnings: string[] = [];
  const spec = policy.spec;
  const excluded = new Set([...ALWAYS_EXCLUDED_NAMESPACES, ...(options.excludedNamespaces ?? [])]);
  if (excluded.has(namespace))
    warnings.push(`namespace ${namespace} is never matched by the webhook: this policy will select no pods`);
  if (!spec.selector.matchLabels && !spec.selector.matchExpressions?.length)
    warnings.push('spec.selector is empty: it selects every pod in the namespace');
  const denied = new Set(spec.syscalls?.deny ?? []);
  const both = (spec.syscalls?.allow ?? []).filter((s) => denied.has(s));
  if (both.length > 0) warnings.push(`spec.syscalls: ${both.join(', ')} both allowed and denied; deny wins`);
  if (parseDurationMs(spec.learning.window) > parseDurationMs(spec.learning.duration))
    warnings.push('spec.learning.window is longer than spec.learning.duration');
  if (spec.enforcement.layers.length === 0)
    warnings.push(`spec.enforcement.layers is empty: nothing is enforced (layers: ${LAYERS.join(', ')})`);
  if (old && JSON.stringify(old.spec.selector) !== JSON.stringify(spec.selector))
    warnings.push(
      'spec.selector changed: pods admitted earlier keep their labels and profiles until recreated',
    );
  return warnings;
}

export function validatePolicyRequest(
  request: AdmissionRequest,
  options: ValidationOptions = {},
): ValidationResult {
  const operation = request.operation;
  if (operation !== 'CREATE' && operation !== 'UPDATE') return { outcome: 'ignored', allowed: true };
  if ((request.subResource ?? '') !== '') return { outcome: 'ignored', allowed: true };
  const kind = request.kind?.kind;
  if (kind !== undefined && kind !== POLICY_KIND)
    return deny([`(root): expected a ${POLICY_KIND}, got ${kind}`]);

  const parsed = parsePolicy(request.object);
  if (!parsed.ok) return deny(parsed.errors);
  const policy = parsed.policy;
  const errors: string[] = [];
  const generateName = policy.metadata.generateName;
  if (!policy.metadata.name) {
    if (!generateName) errors.push('metadata.name: a name or generateName is required');
    else if (!GENERATE_NAME.test(generateName) || generateName.length > 58)
      errors.push(
        `metadata.generateName: expected a prefix of a DNS-1123 label (at most 58 characters), got ${JSON.stringify(generateName)}`,
      );
  }
  if (errors.length > 0) return deny(errors);

  const namespace = request.namespace || policy.metadata.namespace || '';
  const oldParsed = operation === 'UPDATE' ? parsePolicy(request.oldObject) : undefined;
  const warnings = policyWarnings(policy, namespace, oldParsed?.ok ? oldParsed.policy : undefined, options);
  return warnings.length > 0
    ? { outcome: 'allowed', allowed: true, warnings }
    : { outcome: 'allowed', allowed: true };
}
