// What kube-apiserver does with our webhook configurations, for tests on the stand-in API server (which
// has no admission chain): send an AdmissionReview over HTTPS, trusting only the caBundle, apply the
// JSONPatch of a mutating reply, refuse the object when a validating webhook says no.
import { request } from 'node:https';
import { randomUUID } from 'node:crypto';
import jsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

export interface AdmissionTarget {
  url: string; // https://127.0.0.1:<port>
  caPem: string;
  /** Name the API server would use to reach the service (the certificate must carry it). */
  serverName: string;
}

interface Reply {
  response: {
    uid: string;
    allowed: boolean;
    patch?: string;
    patchType?: string;
    status?: { message?: string };
  };
}

function post(target: AdmissionTarget, path: string, body: unknown): Promise<Reply> {
  const data = Buffer.from(JSON.stringify(body));
  const url = new URL(path, target.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        ca: target.caPem,
        servername: target.serverName,
        headers: { 'content-type': 'application/json', 'content-length': data.length },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200)
            return reject(new Error(`webhook ${path} answered ${res.statusCode}: ${text}`));
          resolve(JSON.parse(text) as Reply);
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

function review(
  kind: { group: string; version: string; kind: string },
  resource: string,
  namespace: string,
  object: unknown,
) {
  const uid = randomUUID();
  return {
    uid,
    body: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind,
        resource: { group: kind.group, version: kind.version, resource },
        requestKind: kind,
        requestResource: { group: kind.group, version: kind.version, resource },
        namespace,
        operation: 'CREATE',
        userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
        object,
        oldObject: null,
        dryRun: false,
        options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      },
    },
  };
}

/** Runs a pod CREATE through /mutate-pods; returns the pod as it would be stored. */
export async function admitPod<T extends { metadata?: { namespace?: string } }>(
  target: AdmissionTarget,
  pod: T,
): Promise<T> {
  const { uid, body } = review(
    { group: '', version: 'v1', kind: 'Pod' },
    'pods',
    pod.metadata?.namespace ?? 'default',
    pod,
  );
  const reply = await post(target, '/mutate-pods', body);
  if (reply.response.uid !== uid) throw new Error('webhook answered another request uid');
  if (!reply.response.allowed) throw new Error(`pod refused: ${reply.response.status?.message}`);
  if (!reply.response.patch) return pod;
  const ops = JSON.parse(Buffer.from(reply.response.patch, 'base64').toString('utf8')) as Operation[];
  return jsonPatch.applyPatch(structuredClone(pod), ops, true, false).newDocument;
}

/** Runs a PahlevanPolicy CREATE through /validate-policies; throws with the webhook's message if refused. */
export async function validatePolicy(
  target: AdmissionTarget,
  policy: { metadata?: { namespace?: string } },
): Promise<void> {
  const { body } = review(
    { group: 'pahlevan.io', version: 'v1alpha1', kind: 'PahlevanPolicy' },
    'pahlevanpolicies',
    policy.metadata?.namespace ?? 'default',
    policy,
  );
  const reply = await post(target, '/validate-policies', body);
  if (!reply.response.allowed) throw new Error(`policy refused: ${reply.response.status?.message}`);
}
