// The AdmissionReview envelope: parse and check what the API server sent, build the reply in the same
// apiVersion. Pure functions; the HTTP server only moves bytes.

export const ADMISSION_API_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
export type AdmissionApiVersion = (typeof ADMISSION_API_VERSIONS)[number];

export interface GroupVersionKind {
  group?: string;
  version?: string;
  kind?: string;
}
export interface GroupVersionResource {
  group?: string;
  version?: string;
  resource?: string;
}

export interface AdmissionRequest {
  uid: string;
  kind?: GroupVersionKind;
  resource?: GroupVersionResource;
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: string;
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
  [key: string]: unknown;
}

export interface AdmissionReview {
  apiVersion: AdmissionApiVersion;
  kind: 'AdmissionReview';
  request: AdmissionRequest;
}

export interface StatusCause {
  field?: string;
  message: string;
  reason?: string;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  /** base64 of the JSON patch */
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string; reason?: string; details?: { causes: StatusCause[] } };
}

export interface AdmissionReviewReply {
  apiVersion: AdmissionApiVersion;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

export type ParsedReview = { ok: true; review: AdmissionReview } | { ok: false; message: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const MAX_UID_LENGTH = 256;

/** Checks the envelope only; the object inside is judged by the webhook that receives it. */
export function parseAdmissionReview(body: unknown): ParsedReview {
  if (!isRecord(body)) return { ok: false, message: 'expected an AdmissionReview JSON object' };
  if (body.kind !== 'AdmissionReview')
    return { ok: false, message: `expected kind AdmissionReview, got ${describe(body.kind)}` };
  if (!ADMISSION_API_VERSIONS.includes(body.apiVersion as AdmissionApiVersion))
    return {
      ok: false,
      message: `expected apiVersion ${ADMISSION_API_VERSIONS.join(' or ')}, got ${describe(body.apiVersion)}`,
    };
  const request = body.request;
  if (!isRecord(request)) return { ok: false, message: 'AdmissionReview has no request object' };
  if (typeof request.uid !== 'string' || request.uid.length === 0)
    return { ok: false, message: 'request.uid is missing or empty' };
  if (request.uid.length > MAX_UID_LENGTH)
    return { ok: false, message: `request.uid is longer than ${MAX_UID_LENGTH} characters` };
  for (const field of ['operation', 'namespace', 'subResource', 'name'] as const)
    if (request[field] !== undefined && request[field] !== null && typeof request[field] !== 'string')
      return { ok: false, message: `request.${field} must be a string, got ${describe(request[field])}` };
  for (const field of ['kind', 'resource'] as const)
    if (request[field] !== undefined && request[field] !== null && !isRecord(request[field]))
      return { ok: false, message: `request.${field} must be an object, got ${describe(request[field])}` };
  if (request.dryRun !== undefined && request.dryRun !== null && typeof request.dryRun !== 'boolean')
    return { ok: false, message: `request.dryRun must be a boolean, got ${describe(request.dryRun)}` };
  return { ok: true, review: body as unknown as AdmissionReview };
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

export function reviewReply(
  apiVersion: AdmissionApiVersion,
  response: AdmissionResponse,
): AdmissionReviewReply {
  return { apiVersion, kind: 'AdmissionReview', response };
}
