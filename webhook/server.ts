// The HTTPS shell around the pure webhook functions: fastify with TLS, hot certificate reload, health,
// readiness and metrics. Every admission reply is an AdmissionReview or a 4xx with a message; never a 5xx.
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Server as HttpsServer } from 'node:https';
import { ensureCerts } from '../certs/certs.js';
import { CertWatcher, isCertValidAt, loadServingCert } from '../certs/reload.js';
import type { ServingCert } from '../certs/reload.js';
import { handleReview, badRequest } from './handler.js';
import type { HandledReview, WebhookName } from './handler.js';
import { createMetrics } from './metrics.js';
import type { WebhookMetrics } from './metrics.js';
import type { PolicySource } from './policy-cache.js';

export const BODY_LIMIT_BYTES = 7 * 1024 * 1024;

export interface WebhookServerOptions {
  port: number;
  host?: string;
  certDir: string;
  policies: PolicySource;
  /** The webhook's own namespace: never matched (kube-system never is either). */
  namespace?: string;
  certPollMs?: number;
  logger?: boolean;
  processMetrics?: boolean;
  /**
   * Local/single-replica mode: the server creates the certificates in certDir itself and re-checks them every
   * `checkMs` (rotation before expiry, CA overlap; the watcher then reloads). In a cluster the Secret is
   * read-only and rotated by whoever owns it; leave this unset there.
   */
  selfManagedCerts?: { dnsNames: string[]; checkMs?: number };
}

export interface WebhookServer {
  app: FastifyInstance;
  url: string;
  port: number;
  metrics: WebhookMetrics;
  servedCert(): ServingCert;
  /** Re-read the certificate files now (the watcher also does it on change). */
  reloadCert(): boolean;
  close(): Promise<void>;
}

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const selfManaged = options.selfManagedCerts;
  if (selfManaged) ensureCerts(options.certDir, selfManaged.dnsNames);
  const initial = loadServingCert(options.certDir);
  const metrics = createMetrics({ processMetrics: options.processMetrics ?? true });
  metrics.certExpiry.set(initial.notAfter.getTime() / 1000);
  const excludedNamespaces = options.namespace ? [options.namespace] : [];

  const app = Fastify({
    https: { key: initial.keyPem, cert: initial.certPem, minVersion: 'TLSv1.2' },
    bodyLimit: BODY_LIMIT_BYTES,
    logger: options.logger ?? false,
    // the API server reuses connections; keep them longer than its idle timeout
    keepAliveTimeout: 75_000,
    requestTimeout: 30_000,
    return503OnClosing: false,
  });

  const watcher = new CertWatcher(options.certDir, initial, {
    pollMs: options.certPollMs ?? 1000,
    onReload: (cert) => {
      // new handshakes get the new certificate; established connections keep going
      (app.server as HttpsServer).setSecureContext({
        key: cert.keyPem,
        cert: cert.certPem,
        minVersion: 'TLSv1.2',
      });
      metrics.certExpiry.set(cert.notAfter.getTime() / 1000);
      metrics.certReloads.inc({ result: 'success' });
      app.log.info({ serial: cert.serialNumber, notAfter: cert.notAfter }, 'serving certificate reloaded');
    },
    onError: (err) => {
      metrics.certReloads.inc({ result: 'error' });
      app.log.warn(`certificate reload skipped: ${err.message}`);
    },
  });

  // Bodies are taken as bytes and parsed by us, so every content type and every parse error gets the same
  // clear 400 instead of fastify's 415/500 variants.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES }, (_req, body, done) =>
    done(null, body),
  );

  app.setErrorHandler((err: { statusCode?: number; message?: string; code?: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
    const message =
      err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? `request body is larger than ${BODY_LIMIT_BYTES} bytes`
        : (err.message ?? 'bad request');
    void reply.code(status).send({ message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });

  // label children bound once: the per-request path skips prom-client's label hashing
  const webhooks: WebhookName[] = ['mutate-pods', 'validate-policies'];
  const patchCounter = Object.fromEntries(
    webhooks.map((w) => [w, metrics.patchOperations.labels({ webhook: w })]),
  ) as Record<WebhookName, ReturnType<typeof metrics.patchOperations.labels>>;
  const durationHistogram = Object.fromEntries(
    webhooks.map((w) => [w, metrics.duration.labels({ webhook: w })]),
  ) as Record<WebhookName, ReturnType<typeof metrics.duration.labels>>;
  const requestCounters = new Map<string, ReturnType<typeof metrics.requests.labels>>();
  const requestCounter = (webhook: WebhookName, operation: string, outcome: string) => {
    const key = `${webhook}|${operation}|${outcome}`;
    let counter = requestCounters.get(key);
    if (!counter)
      requestCounters.set(key, (counter = metrics.requests.labels({ webhook, operation, outcome })));
    return counter;
  };
  const admission = (webhook: WebhookName) => async (req: { body: unknown }, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    let handled: HandledReview;
    const raw = req.body;
    if (!Buffer.isBuffer(raw) || raw.length === 0)
      handled = badRequest('request body is empty; expected an AdmissionReview');
    else {
      let parsed: unknown;
      let parseError: string | undefined;
      try {
        parsed = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        parseError = `request body is not JSON: ${(err as Error).message}`;
      }
      handled =
        parseError !== undefined
          ? badRequest(parseError)
          : handleReview(webhook, parsed, options.policies.policies(), { excludedNamespaces });
    }
    if (handled.error)
      app.log.error({ err: handled.error }, `${webhook} failed; answered ${handled.outcome}`);
    requestCounter(webhook, handled.operation, handled.outcome).inc();
    if (handled.patchOperations > 0) patchCounter[webhook].inc(handled.patchOperations);
    durationHistogram[webhook].observe(Number(process.hrtime.bigint() - start) / 1e9);
    void reply.code(handled.statusCode);
    return handled.body;
  };
  app.post('/mutate-pods', admission('mutate-pods'));
  app.post('/validate-policies', admission('validate-policies'));

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const certValid = isCertValidAt(watcher.current);
    const cacheReady = options.policies.ready();
    const body = {
      ready: certValid && cacheReady,
      certificate: {
        valid: certValid,
        serialNumber: watcher.current.serialNumber,
        notAfter: watcher.current.notAfter.toISOString(),
      },
      policyCache: { ready: cacheReady, policies: options.policies.policies().length },
    };
    return reply.code(body.ready ? 200 : 503).send(body);
  });
  app.get('/metrics', async (_req, reply) => {
    metrics.cachedPolicies.set(options.policies.policies().length);
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  await app.listen({ port: options.port, host: options.host ?? '0.0.0.0' });
  watcher.start();
  const rotationTimer = selfManaged
    ? setInterval(() => {
        try {
          const { changed, plan } = ensureCerts(options.certDir, selfManaged.dnsNames);
          if (changed) app.log.info(`certificates rotated: ${plan.reasons.join('; ')}`);
        } catch (err) {
          app.log.error(`certificate rotation failed: ${(err as Error).message}`);
        }
      }, selfManaged.checkMs ?? 3_600_000)
    : undefined;
  rotationTimer?.unref();
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const host = options.host && options.host !== '0.0.0.0' ? options.host : '127.0.0.1';
  return {
    app,
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    metrics,
    servedCert: () => watcher.current,
    reloadCert: () => watcher.check(),
    close: async () => {
      if (rotationTimer) clearInterval(rotationTimer);
      watcher.stop();
      await app.close();
    },
  };
}
