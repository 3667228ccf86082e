// From request bytes (already JSON-parsed) to the HTTP status and reply body, for both webhooks. Any
// exception inside a decision becomes an admission answer (mutation fails open, validation fails closed),
// never a 5xx.
import type { PahlevanPolicy } from '../api/policy.js';
import { parseAdmissionReview, reviewReply } from './admission.js';
import type { AdmissionResponse, AdmissionReviewReply } from './admission.js';
import { mutatePodRequest } from './mutate.js';
import { validatePolicyRequest } from './validate.js';

export type WebhookName = 'mutate-pods' | 'validate-policies';

export interface HandledReview {
  statusCode: 200 | 400;
  body: AdmissionReviewReply | { message: string };
  operation: string;
  outcome: string;
  patchOperations: number;
  error?: unknown;
}

export interface HandlerOptions {
  excludedNamespaces?: readonly string[];
}

export function badRequest(message: string): HandledReview {
  return {
    statusCode: 400,
    body: { message },
    operation: 'unknown',
    outcome: 'bad_request',
    patchOperations: 0,
  };
}

const KNOWN_OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

export function handleReview(
  webhook: WebhookName,
  body: unknown,
  policies: readonly PahlevanPolicy[],
  options: HandlerOptions = {},
): HandledReview {
  const parsed = parseAdmissionReview(body);
  if (!parsed.ok) return badRequest(parsed.message);
  const { apiVersion, request } = parsed.review;
  const operation = KNOWN_OPERATIONS.has(request.operation ?? '') ? request.operation! : 'unknown';
  let response: AdmissionResponse;
  let outcome: string;
  let patchOperations = 0;
  let error: unknown;
  try {
    if (webhook === 'mutate-pods') {
      const result = mutatePodRequest(request, policies, options);
      outcome = result.outcome;
      response = { uid: request.uid, allowed: true };
      if (result.patch.length > 0) {
        patchOperations = result.patch.length;
        response.patchType = 'JSONPatch';
        response.patch = Buffer.from(JSON.stringify(result.patch)).toString('base64');
      }
      if (result.warnings.length > 0) response.warnings = result.warnings;
    } else {
      const result = validatePolicyRequest(request, options);
      const { outcome: o, ...rest } = result;
      outcome = o;
      response = { uid: request.uid, ...rest };
    }
  } catch (err) {
    error = err;
    outcome = 'error';
    const message = `pahlevan ${webhook} failed: ${err instanceof Error ? err.message : String(err)}`;
    response =
      webhook === 'mutate-pods'
        ? { uid: request.uid, allowed: true, warnings: [`${message}; pod admitted unchanged`] }
        : { uid: request.uid, allowed: false, status: { code: 500, reason: 'InternalError', message } };
  }
  return {
    statusCode: 200,
    body: reviewReply(apiVersion, response),
    operation,
    outcome,
    patchOperations,
    error,
  };
}
