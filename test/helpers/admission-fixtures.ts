// AdmissionReview fixtures shaped like the examples in the Kubernetes documentation
// (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request).
import type { PahlevanPolicyInput, PahlevanPolicy } from '../../api/policy.js';
import { parsePolicy } from '../../api/policy.js';

type Json = Record<string, unknown>;

export const PROFILE_HASH_WEB = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
export const PROFILE_HASH_INIT = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';
export const PROFILE_HASH_DEBUG = '99887766554433221100ffeeddccbbaa99887766554433221100ffeeddccbbaa';
export const PATH_WEB = `pahlevan/shop/web/web-${PROFILE_HASH_WEB.slice(0, 16)}.json`;
export const PATH_INIT = `pahlevan/shop/web/migrate-${PROFILE_HASH_INIT.slice(0, 16)}.json`;
export const PATH_DEBUG = `pahlevan/shop/web/debugger-${PROFILE_HASH_DEBUG.slice(0, 16)}.json`;

export function policy(overrides: Partial<PahlevanPolicyInput> & { name?: string } = {}): PahlevanPolicy {
  const { name = 'web', ...rest } = overrides;
  const input: PahlevanPolicyInput = {
    apiVersion: 'pahlevan.io/v1alpha1',
    kind: 'PahlevanPolicy',
    metadata: { name, namespace: 'shop', creationTimestamp: '2026-11-01T10:00:00Z' },
    spec: { selector: { matchLabels: { app: 'web' } } },
    status: {
      phase: 'Enforcing',
      profiles: [
        profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, { image: 'registry.example.com/shop/web:1.4.2' }),
        profileEntry('migrate', PROFILE_HASH_INIT, PATH_INIT),
        profileEntry('debugger', PROFILE_HASH_DEBUG, PATH_DEBUG),
      ],
    },
    ...rest,
  };
  const parsed = parsePolicy(input);
  if (!parsed.ok) throw new Error(`fixture policy invalid: ${parsed.errors.join('; ')}`);
  return parsed.policy;
}

export function profileEntry(
  container: string,
  hash: string,
  localhostProfile: string,
  extra: Json = {},
): NonNullable<NonNullable<PahlevanPolicyInput['status']>['profiles']>[number] {
  return {
    container,
    hash,
    localhostProfile,
    profileName: `web-${container}-${hash.slice(0, 10)}`,
    syscalls: 61,
    nodesInstalled: 3,
    nodesReady: 3,
    usable: true,
    ...extra,
  };
}

/** A realistic Deployment-made pod as the API server sends it on CREATE (no name yet, labels from the template). */
export function webPod(
  overrides: { labels?: Json | null; annotations?: Json | null; spec?: Json } = {},
): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-7c9d8f6b5-',
      namespace: 'shop',
      creationTimestamp: null,
      labels:
        overrides.labels === undefined ? { app: 'web', 'pod-template-hash': '7c9d8f6b5' } : overrides.labels,
      annotations: overrides.annotations === undefined ? null : overrides.annotations,
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'web-7c9d8f6b5',
          uid: '4f0a7a7e-1a4c-4d0e-9c43-2f4b8f3a1d11',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      volumes: [
        {
          name: 'kube-api-access-x7k2p',
          projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] },
        },
      ],
      initContainers: [
        {
          name: 'migrate',
          image: 'registry.example.com/shop/migrate:1.4.2',
          command: ['/migrate', '--up'],
          resources: {},
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      containers: [
        {
          name: 'web',
          image: 'registry.example.com/shop/web:1.4.2',
          ports: [{ containerPort: 8080, protocol: 'TCP' }],
          resources: { requests: { cpu: '100m', memory: '128Mi' } },
          volumeMounts: [
            {
              name: 'kube-api-access-x7k2p',
              readOnly: true,
              mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            },
          ],
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        },
        {
          name: 'metrics-sidecar',
          image: 'registry.example.com/tools/exporter:0.9',
          resources: {},
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      securityContext: {},
      schedulerName: 'default-scheduler',
      tolerations: [
        {
          key: 'node.kubernetes.io/not-ready',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
      ...overrides.spec,
    },
    status: {},
  };
}

export function review(
  object: unknown,
  request: Json = {},
  apiVersion: string = 'admission.k8s.io/v1',
): { apiVersion: string; kind: string; request: Json } {
  return {
    apiVersion,
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: '',
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: '014fbff9a07c',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
      ...request,
    },
  };
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
