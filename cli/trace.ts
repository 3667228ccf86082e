// `pahlevan trace start|stop`: begin learning a workload (creates a PahlevanPolicy), end learning now.
import type { Command } from 'commander';
import { API_VERSION, POLICY_KIND, POLICY_PLURAL, parseDurationMs, parsePolicy } from '../api/policy.js';
import type { PahlevanPolicy, PahlevanPolicyInput } from '../api/policy.js';
import { statusCode } from '../agent/cluster/kube.js';
import {
  action,
  addKubeOptions,
  CliError,
  connect,
  crdMissing,
  explain,
  type KubeOptions,
} from './kube-context.js';

import { ANNOTATION_END_LEARNING } from '../webhook/controller/lifecycle.js';

/** `app=web,tier=front` -> matchLabels. */
export function parseSelector(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of text.split(',')) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0)
      throw new CliError(`--selector: expected key=value[,key=value], got ${JSON.stringify(part)}`);
    const key = trimmed.slice(0, eq).trim();
    const value = trimmed
      .slice(eq + 1)
      .replace(/^=/, '')
      .trim(); // accept k==v too
    labels[key] = value;
  }
  if (Object.keys(labels).length === 0)
    throw new CliError('--selector: give at least one key=value (an empty selector would learn every pod)');
  return labels;
}

/** A DNS-label name for the policy from the selector: `trace-app-web`. */
export function defaultTraceName(labels: Record<string, string>): string {
  const raw = Object.entries(labels)
    .map(([k, v]) => `${k.split('/').at(-1)}-${v}`)
    .join('-');
  const cleaned = `trace-${raw}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .slice(0, 63)
    .replace(/-+$/, '');
  return cleaned || 'trace';
}

export interface TraceStartOptions {
  selector: string;
  duration: string;
  name?: string;
  window?: string;
  stableWindows?: string;
  autoEnforce?: boolean;
  mode?: string;
}

/** The policy `trace start` creates (validated with the same schema as the webhook). */
export function tracePolicy(namespace: string, opts: TraceStartOptions): PahlevanPolicy {
  const matchLabels = parseSelector(opts.selector);
  const input: PahlevanPolicyInput = {
    apiVersion: API_VERSION,
    kind: POLICY_KIND,
    metadata: { name: opts.name ?? defaultTraceName(matchLabels), namespace },
    spec: {
      selector: { matchLabels },
      learning: {
        duration: opts.duration,
        ...(opts.window ? { window: opts.window } : {}),
        ...(opts.stableWindows ? { stableWindows: Number(opts.stableWindows) } : {}),
        autoEnforce: !!opts.autoEnforce,
      },
      ...(opts.mode ? { enforcement: { mode: opts.mode as 'Monitor' } } : {}),
    },
  };
  const parsed = parsePolicy(input);
  if (!parsed.ok) throw new CliError(`invalid trace options:\n  ${parsed.errors.join('\n  ')}`);
  return parsed.policy;
}

export function register(program: Command): void {
  const trace = program
    .command('trace')
    .description('Learn what a workload does (creates a learning policy)');

  addKubeOptions(
    trace
      .command('start')
      .description('Start learning the pods a selector matches')
      .requiredOption('--selector <k=v,...>', 'pod labels to learn, e.g. app=web')
      .option('--duration <d>', 'minimum learning time', '10m')
      .option('--name <name>', 'policy name (default: trace-<selector>)')
      .option('--window <d>', 'stability window length')
      .option('--stable-windows <n>', 'windows without new behaviour before publishing')
      .option('--auto-enforce', 'enforce by itself once published')
      .option('--mode <mode>', 'enforcement mode once published: Monitor, Enforce or Alert'),
  ).action(
    action(async (opts: TraceStartOptions & KubeOptions) => {
      const { kc, objects, namespace } = connect(opts);
      const policy = tracePolicy(namespace, opts);
      const name = policy.metadata.name!;
      try {
        await objects.create(POLICY_PLURAL, { ...policy, status: undefined } as never);
      } catch (err) {
        if (statusCode(err) === 409)
          throw new CliError(
            `a PahlevanPolicy ${namespace}/${name} already exists: watch it with \`pahlevan status ${name} -n ${namespace} --watch\`, ` +
              `or pick another --name.`,
          );
        throw (
          crdMissing(err, 'PahlevanPolicy') ??
          explain(err, `creating PahlevanPolicy ${namespace}/${name}`, kc)
        );
      }
      const minutes = Math.round(parseDurationMs(opts.duration) / 60_000);
      process.stdout.write(
        `Learning started: PahlevanPolicy ${namespace}/${name} (at least ${minutes >= 1 ? `${minutes}m` : opts.duration}).\n` +
          `Follow it:   pahlevan status ${name} -n ${namespace} --watch\n` +
          `End it now:  pahlevan trace stop ${name} -n ${namespace}\n`,
      );
    }),
  );

  addKubeOptions(
    trace
      .command('stop')
      .description('End learning now: the controller merges what was learned and publishes the profiles')
      .argument('<name>', 'the learning policy'),
  ).action(
    action(async (name: string, opts: KubeOptions) => {
      const { kc, objects, namespace } = connect(opts);
      const current = await objects
        .get<PahlevanPolicy>(POLICY_PLURAL, namespace, name)
        .catch((err: unknown) => {
          throw (
            crdMissing(err, 'PahlevanPolicy') ??
            explain(err, `reading PahlevanPolicy ${namespace}/${name}`, kc)
          );
        });
      if (!current)
        throw new CliError(
          `no PahlevanPolicy ${name} in namespace ${namespace}: list them with \`pahlevan status -n ${namespace}\`.`,
        );
      const phase = current.status?.phase;
      if (phase && phase !== 'Learning')
        throw new CliError(
          `PahlevanPolicy ${namespace}/${name} is not learning (phase ${phase}): nothing to stop.`,
        );
      try {
        await objects.mergePatch(POLICY_PLURAL, namespace, name, {
          metadata: { annotations: { [ANNOTATION_END_LEARNING]: new Date().toISOString() } },
        });
      } catch (err) {
        throw explain(err, `marking PahlevanPolicy ${namespace}/${name} to stop learning`, kc);
      }
      process.stdout.write(
        `Learning of ${namespace}/${name} ends now; the controller merges and publishes the profiles.\n` +
          `Follow it:   pahlevan status ${name} -n ${namespace} --watch\n`,
      );
    }),
  );
}
