// `pahlevan install [--dry-run]`: renders manifests/ (kustomize), puts fresh webhook certificates in
// (the TLS Secret and every webhook configuration's caBundle), and applies the result server-side, or
// prints it.
import type { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { createCa, issueServingCert, CERT_FILES } from '../certs/certs.js';
import { loadKubeConfig, statusCode, errorMessage } from '../agent/cluster/kube.js';
import { action, CliError } from './kube-context.js';

type Obj = KubernetesObject & Record<string, unknown>;

export const DEFAULT_MANIFESTS_DIR = fileURLToPath(new URL('../../manifests/', import.meta.url));
const TLS_SECRET_DEFAULT = 'pahlevan-webhook-tls';
const FIELD_MANAGER = 'pahlevan-install';

function yamlObjects(text: string, source: string): Obj[] {
  const out: Obj[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new CliError(`${source}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as Obj | null;
    if (!value) continue;
    if (value.kind === 'List' && Array.isArray(value.items)) out.push(...(value.items as Obj[]));
    else out.push(value);
  }
  return out;
}

/**
 * The subset of kustomize our manifests use: `resources` (files and directories with their own
 * kustomization), `namespace`, and `labels` pairs (metadata only). Used when kubectl is not installed.
 */
export function readKustomization(dir: string): Obj[] {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization']
    .map((f) => join(dir, f))
    .find((f) => existsSync(f));
  if (!file)
    throw new CliError(`${dir} has no kustomization.yaml: point --manifests at Pahlevan's manifests/`);
  const k = parseYaml(readFileSync(file, 'utf8')) as {
    resources?: string[];
    namespace?: string;
    labels?: { pairs?: Record<string, string>; includeSelectors?: boolean }[];
  };
  const objects: Obj[] = [];
  for (const r of k.resources ?? []) {
    const path = resolve(dir, r);
    if (!existsSync(path)) throw new CliError(`${file}: resource ${r} does not exist`);
    if (statSync(path).isDirectory()) objects.push(...readKustomization(path));
    else objects.push(...yamlObjects(readFileSync(path, 'utf8'), path));
  }
  for (const o of objects) {
    o.metadata ??= {};
    for (const l of k.labels ?? []) o.metadata.labels = { ...(o.metadata.labels ?? {}), ...(l.pairs ?? {}) };
    if (k.namespace && o.kind !== 'Namespace' && o.kind !== 'CustomResourceDefinition' && !isClusterScoped(o))
      o.metadata.namespace = k.namespace;
  }
  return objects;
}

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleBinding',
  'MutatingWebhookConfiguration',
  'ValidatingWebhookConfiguration',
  'PriorityClass',
]);
function isClusterScoped(o: Obj): boolean {
  return CLUSTER_SCOPED.has(o.kind ?? '');
}

/** Renders the manifests: `kubectl kustomize` when available, else our reader of the same files. */
export function renderManifests(dir: string, useKubectl = true): Obj[] {
  if (!existsSync(dir)) throw new CliError(`manifests directory ${dir} not found: pass --manifests DIR`);
  if (useKubectl) {
    const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    if (!r.error && r.status === 0) return yamlObjects(r.stdout, `kubectl kustomize ${dir}`);
    if (!r.error) throw new CliError(`kubectl kustomize ${dir} failed: ${r.stderr.trim()}`);
  }
  return readKustomization(dir);
}

interface WebhookService {
  name: string;
  namespace: string;
}

/** The Services the webhook configurations call (their certificates must name them). */
export function webhookServices(objects: Obj[]): WebhookService[] {
  const seen = new Map<string, WebhookService>();
  for (const o of objects) {
    if (o.kind !== 'MutatingWebhookConfiguration' && o.kind !== 'ValidatingWebhookConfiguration') continue;
    for (const w of (o.webhooks as { clientConfig?: { service?: WebhookService } }[] | undefined) ?? []) {
      const s = w.clientConfig?.service;
      if (s?.name && s.namespace)
        seen.set(`${s.namespace}/${s.name}`, { name: s.name, namespace: s.namespace });
    }
  }
  return [...seen.values()];
}

/** The TLS Secret the webhook Deployment mounts (by its volume), in the Service's namespace. */
function tlsSecretName(objects: Obj[], namespace: string): string {
  for (const o of objects) {
    if (o.kind !== 'Deployment' || (o.metadata?.namespace ?? namespace) !== namespace) continue;
    const volumes =
      (o as { spec?: { template?: { spec?: { volumes?: { secret?: { secretName?: string } }[] } } } }).spec
        ?.template?.spec?.volumes ?? [];
    const secret = volumes.find((v) => v.secret?.secretName)?.secret?.secretName;
    if (secret) return secret;
  }
  return TLS_SECRET_DEFAULT;
}

export interface InjectedCerts {
  objects: Obj[];
  caPem: string;
  secret: { namespace: string; name: string };
  dnsNames: string[];
}

/**
 * Adds a fresh CA and serving certificate: the TLS Secret (ca.crt, tls.crt, tls.key: what the webhook
 * reads from its cert dir) and the caBundle of every webhook configuration.
 */
export function injectCertificates(objects: Obj[], now = new Date(), validityDays = 365): InjectedCerts {
  const services = webhookServices(objects);
  if (services.length === 0)
    throw new CliError(
      'the manifests have no webhook configuration with a service: nothing to issue a certificate for',
    );
  const dnsNames = services.flatMap((s) => [
    `${s.name}.${s.namespace}.svc`,
    s.name,
    `${s.name}.${s.namespace}`,
    `${s.name}.${s.namespace}.svc.cluster.local`,
  ]);
  const ca = createCa('pahlevan-webhook-ca', now, validityDays * 2);
  const leaf = issueServingCert(ca, dnsNames, now, validityDays);
  const namespace = services[0]!.namespace;
  const secretName = tlsSecretName(objects, namespace);
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const out = objects
    .filter(
      (o) => !(o.kind === 'Secret' && o.metadata?.name === secretName && o.metadata?.namespace === namespace),
    )
    .map((o) => {
      if (o.kind !== 'MutatingWebhookConfiguration' && o.kind !== 'ValidatingWebhookConfiguration') return o;
      const copy = structuredClone(o);
      for (const w of (copy.webhooks as { clientConfig?: { caBundle?: string } }[] | undefined) ?? [])
        w.clientConfig = { ...(w.clientConfig ?? {}), caBundle: b64(ca.certPem) };
      return copy;
    });
  const secret: Obj = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secretName, namespace, labels: { 'app.kubernetes.io/part-of': 'pahlevan' } },
    type: 'kubernetes.io/tls',
    data: {
      [CERT_FILES.caBundle]: b64(ca.certPem),
      [CERT_FILES.cert]: b64(leaf.certPem),
      [CERT_FILES.key]: b64(leaf.keyPem),
    },
  };
  // The Secret goes right after its namespace exists and before the Deployment that mounts it.
  const nsIndex = out.findIndex((o) => o.kind === 'Namespace' && o.metadata?.name === namespace);
  out.splice(nsIndex + 1, 0, secret);
  return { objects: out, caPem: ca.certPem, secret: { namespace, name: secretName }, dnsNames };
}

/** Namespaces and CRDs first (everything else may live in or depend on them), otherwise in file order. */
export function applyOrder(objects: Obj[]): Obj[] {
  const rank = (o: Obj): number =>
    o.kind === 'Namespace' ? 0 : o.kind === 'CustomResourceDefinition' ? 1 : 2;
  return objects
    .map((o, i) => ({ o, i }))
    .sort((a, b) => rank(a.o) - rank(b.o) || a.i - b.i)
    .map(({ o }) => o);
}

/** Applies objects server-side (idempotent; creates what is missing), stopping at the first error. */
export async function applyObjects(
  client: KubernetesObjectApi,
  objects: Obj[],
  log: (line: string) => void = () => {},
): Promise<void> {
  for (const o of applyOrder(objects)) {
    const what = `${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;
    try {
      await client.patch(o, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
      log(`applied ${what}`);
    } catch (err) {
      const code = statusCode(err);
      throw new CliError(
        `applying ${what} failed: ${errorMessage(err)}${code ? ` (HTTP ${code})` : ''}. ` +
          (code === 403
            ? 'Installing needs cluster-admin rights (CRDs, webhooks, RBAC).'
            : 'Fix the cause and run `pahlevan install` again: applying is idempotent.'),
      );
    }
  }
}

export function register(program: Command): void {
  program
    .command('install')
    .description('Install Pahlevan: CRDs, webhook (with fresh certificates), controller, agents')
    .option('--dry-run', 'print the manifests instead of applying them')
    .option('--manifests <dir>', 'manifests directory', DEFAULT_MANIFESTS_DIR)
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)')
    .option('--cert-validity-days <n>', 'serving certificate lifetime', '365')
    .action(
      action(
        async (opts: {
          dryRun?: boolean;
          manifests: string;
          kubeconfig?: string;
          certValidityDays: string;
        }) => {
          const rendered = renderManifests(resolve(opts.manifests));
          const { objects, secret, dnsNames } = injectCertificates(
            rendered,
            new Date(),
            Number(opts.certValidityDays),
          );
          if (opts.dryRun) {
            process.stdout.write(
              applyOrder(objects)
                .map((o) => stringify(o))
                .join('---\n'),
            );
            return;
          }
          let kc;
          try {
            kc = loadKubeConfig(opts.kubeconfig);
          } catch (err) {
            throw new CliError((err as Error).message);
          }
          await applyObjects(KubernetesObjectApi.makeApiClient(kc), objects, (line) =>
            process.stdout.write(`${line}\n`),
          );
          process.stdout.write(
            `Installed. Webhook certificate for ${dnsNames[0]} is in Secret ${secret.namespace}/${secret.name}.\n` +
              'Opt a namespace in:  kubectl label namespace NS pahlevan.io/enabled=true\n' +
              'Learn a workload:    pahlevan trace start -n NS --selector app=NAME\n',
          );
        },
      ),
    );
}
