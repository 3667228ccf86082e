// Property-based fuzzing of both webhooks: >= 10,000 malformed or hostile reviews through the pure handler
// and >= 10,000 through the real HTTPS server. Zero crashes, zero 5xx, every reply a well-formed
// AdmissionReview (patches that apply cleanly and are idempotent) or a 4xx with a message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import fastJsonPatch from 'fast-json-patch';
import { ensureCerts } from '../../certs/certs.js';
import { startWebhookServer } from '../../webhook/server.js';
import type { WebhookServer } from '../../webhook/server.js';
import { StaticPolicySource } from '../../webhook/policy-cache.js';
import { handleReview } from '../../webhook/handler.js';
import type { WebhookName } from '../../webhook/handler.js';
import type { AdmissionReviewReply } from '../../webhook/admission.js';
import { httpsRequest, keepAliveAgent } from '../helpers/https-client.js';
import {
  PATH_WEB,
  PROFILE_HASH_WEB,
  policy,
  profileEntry,
  review,
  webPod,
} from '../helpers/admission-fixtures.js';

const RUNS = 10_000;

const policies = [
  policy({ spec: { selector: {} } }),
  policy({
    name: 'second',
    spec: { selector: { matchExpressions: [{ key: 'app', operator: 'Exists' }] } },
    status: {
      profiles: [
        profileEntry('web', PROFILE_HASH_WEB, PATH_WEB, { withinRuntimeDefault: true }),
        profileEntry('a', PROFILE_HASH_WEB, PATH_WEB),
        profileEntry('', PROFILE_HASH_WEB, PATH_WEB),
      ],
    },
  }),
];

// --- arbitraries -------------------------------------------------------------------------------------
const hostileKey = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'a/b',
    'x~y',
    '~1',
    '~0',
    '/',
    '',
    'app',
    'pahlevan.io/policy',
  ),
  fc.string({ maxLength: 12 }),
);
const hostileString = fc.oneof(
  fc.constantFrom(
    '',
    'web',
    'a',
    'shop',
    'kube-system',
    'pahlevan-system',
    '../../etc/passwd',
    'x'.repeat(300),
    '\u0000',
    '💥',
  ),
  fc.string({ maxLength: 20 }),
);
const anyValue = fc.anything({ maxDepth: 3, withObjectString: true, withNullPrototype: true });
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.oneof(arb, fc.constant(null), fc.constant(undefined), anyValue);
const seccomp = maybe(
  fc.record(
    {
      type: maybe(fc.constantFrom('Unconfined', 'RuntimeDefault', 'Localhost', 'Bogus')),
      localhostProfile: maybe(fc.oneof(fc.constant(PATH_WEB), hostileString)),
    },
    { requiredKeys: [] },
  ),
);
const container = maybe(
  fc.record(
    {
      name: maybe(fc.oneof(fc.constantFrom('web', 'a', 'migrate', 'debugger', ''), hostileString)),
      image: maybe(hostileString),
      securityContext: maybe(
        fc.record({ seccompProfile: seccomp, runAsNonRoot: maybe(fc.boolean()) }, { requiredKeys: [] }),
      ),
    },
    { requiredKeys: [] },
  ),
);
const stringMap = maybe(fc.dictionary(hostileKey, maybe(hostileString), { maxKeys: 5 }));
const pod = fc.oneof(
  { weight: 1, arbitrary: anyValue },
  {
    weight: 6,
    arbitrary: fc.record(
      {
        apiVersion: maybe(fc.constant('v1')),
        kind: maybe(fc.constant('Pod')),
        metadata: maybe(
          fc.record(
            {
              labels: stringMap,
              annotations: stringMap,
              namespace: maybe(hostileString),
              name: maybe(hostileString),
            },
            { requiredKeys: [] },
          ),
        ),
        spec: maybe(
          fc.record(
            {
              containers: maybe(fc.array(container, { maxLength: 4 })),
              initContainers: maybe(fc.array(container, { maxLength: 3 })),
              ephemeralContainers: maybe(fc.array(container, { maxLength: 3 })),
              securityContext: maybe(fc.record({ seccompProfile: seccomp }, { requiredKeys: [] })),
              os: maybe(
                fc.record(
                  { name: maybe(fc.constantFrom('linux', 'windows', 'Windows')) },
                  { requiredKeys: [] },
                ),
              ),
              nodeSelector: stringMap,
            },
            { requiredKeys: [] },
          ),
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 2, arbitrary: fc.constant(null).map(() => webPod()) },
);
const policyObject = fc.oneof(
  anyValue,
  fc.record(
    {
      apiVersion: maybe(fc.constant('pahlevan.io/v1alpha1')),
      kind: maybe(fc.constant('PahlevanPolicy')),
      metadata: maybe(
        fc.record(
          { name: maybe(hostileString), generateName: maybe(hostileString), namespace: maybe(hostileString) },
          { requiredKeys: [] },
        ),
      ),
      spec: maybe(
        fc.record(
          {
            selector: maybe(
              fc.record(
                { matchLabels: stringMap, matchExpressions: maybe(fc.array(anyValue, { maxLength: 2 })) },
                { requiredKeys: [] },
              ),
            ),
            learning: maybe(
              fc.record(
                {
                  duration: maybe(hostileString),
                  window: maybe(fc.constantFrom('1m', '10s', 'ten')),
                  stableWindows: maybe(fc.integer()),
                },
                { requiredKeys: [] },
              ),
            ),
            enforcement: maybe(
              fc.record(
                {
                  mode: maybe(fc.constantFrom('Monitor', 'Enforce', 'Block')),
                  layers: maybe(fc.array(hostileString, { maxLength: 5 })),
                },
                { requiredKeys: [] },
              ),
            ),
            syscalls: maybe(
              fc.record(
                { allow: maybe(fc.array(hostileString)), deny: maybe(fc.array(hostileString)) },
                { requiredKeys: [] },
              ),
            ),
            network: maybe(
              fc.record(
                {
                  egress: maybe(
                    fc.array(
                      fc.record(
                        { port: maybe(fc.integer()), cidr: maybe(hostileString) },
                        { requiredKeys: [] },
                      ),
                    ),
                  ),
                },
                { requiredKeys: [] },
              ),
            ),
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: [] },
  ),
);
const request = (object: fc.Arbitrary<unknown>) =>
  fc.record(
    {
      uid: fc.oneof({ weight: 8, arbitrary: fc.uuid() }, { weight: 1, arbitrary: maybe(hostileString) }),
      kind: maybe(
        fc.record(
          {
            group: maybe(hostileString),
            version: maybe(hostileString),
            kind: maybe(fc.constantFrom('Pod', 'PahlevanPolicy', 'Scale')),
          },
          { requiredKeys: [] },
        ),
      ),
      resource: maybe(
        fc.record(
          { resource: maybe(fc.constantFrom('pods', 'pahlevanpolicies', 'deployments')) },
          { requiredKeys: [] },
        ),
      ),
      subResource: maybe(fc.constantFrom('', 'ephemeralcontainers', 'status', 'exec')),
      namespace: maybe(fc.oneof(fc.constantFrom('shop', 'kube-system', 'pahlevan-system'), hostileString)),
      operation: maybe(fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'create', '')),
      object,
      oldObject: maybe(object),
      dryRun: maybe(fc.boolean()),
    },
    { requiredKeys: [] },
  );
const envelope = (object: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 1, arbitrary: anyValue },
    {
      weight: 9,
      arbitrary: fc.record(
        {
          apiVersion: fc.oneof(
            { weight: 8, arbitrary: fc.constantFrom('admission.k8s.io/v1', 'admission.k8s.io/v1beta1') },
            { weight: 1, arbitrary: maybe(hostileString) },
          ),
          kind: fc.oneof(
            { weight: 8, arbitrary: fc.constant('AdmissionReview') },
            { weight: 1, arbitrary: maybe(hostileString) },
          ),
          request: fc.oneof({ weight: 9, arbitrary: request(object) }, { weight: 1, arbitrary: anyValue }),
        },
        { requiredKeys: [] },
      ),
    },
  );
// Deep nesting only exists on the wire (JSON.stringify itself would overflow), so it is built as text.
const DEEP_MARK = '"__deep__"';
const deeplyNested = fc.integer({ min: 1000, max: 20000 }).map((depth) => {
  const pod = webPod();
  (pod.spec as Record<string, unknown>).deep = '__deep__';
  return JSON.stringify(review(pod)).replace(DEEP_MARK, '['.repeat(depth) + '"leaf"' + ']'.repeat(depth));
});
const webhookName = fc.constantFrom<WebhookName>('mutate-pods', 'validate-policies');
/** What goes on the wire, as JSON text (JSON drops undefined and prototypes exactly as the API server would). */
const body: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: envelope(fc.oneof(pod, policyObject)).map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 2, arbitrary: fc.constant(null).map(() => JSON.stringify(review(webPod()))) },
  { weight: 1, arbitrary: deeplyNested },
);

// --- invariants ------------------------------------------------------------------------------------------
function requestOf(sent: unknown): Record<string, unknown> | undefined {
  const r = (sent as { request?: unknown } | null)?.request;
  return typeof r === 'object' && r !== null ? (r as Record<string, unknown>) : undefined;
}

function checkReply(webhook: WebhookName, sent: unknown, status: number, reply: unknown): void {
  assert.ok(status < 500, `status ${status}`);
  if (status !== 200) {
    assert.ok(status >= 400, `status ${status}`);
    const message = (reply as { message?: unknown } | null)?.message;
    assert.ok(
      typeof message === 'string' && message.length > 0,
      `4xx without a message: ${JSON.stringify(reply)}`,
    );
    return;
  }
  const r = reply as AdmissionReviewReply;
  assert.equal(r.kind, 'AdmissionReview');
  assert.equal(r.apiVersion, (sent as { apiVersion: string }).apiVersion);
  assert.equal(r.response.uid, requestOf(sent)!.uid);
  assert.equal(typeof r.response.allowed, 'boolean');
  if (webhook === 'mutate-pods') assert.equal(r.response.allowed, true, 'pod mutation never denies');
  if (!r.response.allowed) {
    assert.ok(r.response.status && r.response.status.code >= 400 && r.response.status.message.length > 0);
  }
  if (r.response.patch !== undefined) {
    assert.equal(r.response.patchType, 'JSONPatch');
    const ops = JSON.parse(Buffer.from(r.response.patch, 'base64').toString('utf8'));
    assert.ok(Array.isArray(ops) && ops.length > 0);
    const object = requestOf(sent)!.object;
    const mutated = fastJsonPatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
    // idempotent: the mutated pod needs no further patch
    const again = handleReview(
      webhook,
      { ...(sent as object), request: { ...requestOf(sent), object: mutated } },
      policies,
    );
    assert.equal(again.statusCode, 200);
    assert.equal(
      (again.body as AdmissionReviewReply).response.patch,
      undefined,
      'second review patched again',
    );
  }
}

// --- tests ------------------------------------------------------------------------------------------------
test(`pure handler: ${RUNS} hostile reviews, no exception, every reply well-formed`, () => {
  let patched = 0;
  let badRequests = 0;
  fc.assert(
    fc.property(webhookName, body, (webhook, text) => {
      const wire: unknown = JSON.parse(text);
      const handled = handleReview(webhook, wire, policies, { excludedNamespaces: ['pahlevan-system'] });
      assert.equal(handled.error, undefined, `handler threw: ${String(handled.error)}`);
      checkReply(webhook, wire, handled.statusCode, handled.body);
      if (handled.statusCode === 400) badRequests++;
      if ((handled.body as AdmissionReviewReply).response?.patch) patched++;
    }),
    { numRuns: RUNS },
  );
  // the generators must reach both the rejecting and the patching paths
  assert.ok(patched > RUNS / 50, `only ${patched} patched`);
  assert.ok(badRequests > RUNS / 50, `only ${badRequests} bad requests`);
});

let dir: string;
let server: WebhookServer;
let ca: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), `pahlevan-fuzz-${process.pid}-`));
  ensureCerts(dir, ['127.0.0.1']);
  ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  server = await startWebhookServer({
    port: 0,
    host: '127.0.0.1',
    certDir: dir,
    policies: new StaticPolicySource(policies),
    namespace: 'pahlevan-system',
    processMetrics: false,
  });
});
after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test(`HTTPS server: ${RUNS} hostile requests (reviews, raw bytes, odd content types), zero 5xx, all well-formed`, async () => {
  const agent = keepAliveAgent(ca, 4);
  const raw = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
    fc
      .constantFrom('{', '[]', 'null', '1e999', '"x"', '{"kind":"AdmissionReview"', '\u0000')
      .map((s) => Buffer.from(s)),
  );
  const contentType = fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/x-www-form-urlencoded',
    '',
  );
  const requestArb = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ webhook: webhookName, sent: body, raw: fc.constant(undefined), contentType }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ webhook: webhookName, sent: fc.constant(undefined), raw, contentType }),
    },
  );
  let served = 0;
  await fc.assert(
    fc.asyncProperty(requestArb, async ({ webhook, sent, raw: rawBody, contentType: ct }) => {
      const wire = rawBody ?? Buffer.from(sent!);
      const r = await httpsRequest(agent, `${server.url}/${webhook}`, {
        body: wire,
        headers: ct ? { 'content-type': ct } : {},
      });
      served++;
      assert.ok(r.json !== undefined, `reply is not JSON: ${r.status} ${r.body.slice(0, 200)}`);
      if (rawBody)
        assert.ok(r.status < 500 && (r.status === 200 || (r.json as { message?: string }).message));
      else checkReply(webhook, JSON.parse(wire.toString()), r.status, r.json);
    }),
    { numRuns: RUNS },
  );
  agent.destroy();
  assert.equal(served, RUNS);
  const health = await httpsRequest(undefined, `${server.url}/healthz`, { ca });
  assert.equal(health.status, 200, 'server still healthy');
});
