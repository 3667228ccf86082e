// Shared by the cluster subcommands: the --kubeconfig/--namespace options, and errors that say what to do.
import type { Command } from 'commander';
import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig, PahlevanObjects, statusCode, errorMessage } from '../agent/cluster/kube.js';

export interface KubeOptions {
  kubeconfig?: string;
  namespace?: string;
}

export function addKubeOptions(cmd: Command, withNamespace = true): Command {
  cmd.option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)');
  if (withNamespace) cmd.option('-n, --namespace <ns>', 'namespace (default: the current context namespace)');
  return cmd;
}

export function connect(opts: KubeOptions): { kc: KubeConfig; objects: PahlevanObjects; namespace: string } {
  let kc: KubeConfig;
  try {
    kc = loadKubeConfig(opts.kubeconfig);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const namespace = opts.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  return { kc, objects: new PahlevanObjects(kc), namespace };
}

/** An error for people: what went wrong and the next thing to try. */
export class CliError extends Error {}

export function explain(err: unknown, what: string, kc?: KubeConfig): CliError {
  if (err instanceof CliError) return err;
  const code = statusCode(err);
  const server = kc?.getCurrentCluster()?.server;
  if (code === undefined) {
    const msg = errorMessage(err);
    if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|socket hang up|fetch failed/i.test(msg))
      return new CliError(
        `cannot reach the Kubernetes API server${server ? ` at ${server}` : ''} while ${what} (${msg}). ` +
          'Check --kubeconfig / KUBECONFIG and that the cluster is up.',
      );
    return new CliError(`${what}: ${msg}`);
  }
  if (code === 401 || code === 403)
    return new CliError(
      `${what}: not allowed (${code}: ${errorMessage(err)}). Use a kubeconfig whose user may do this, ` +
        'or ask a cluster admin for the pahlevan RBAC roles.',
    );
  return new CliError(`${what}: ${errorMessage(err)} (HTTP ${code})`);
}

/** 404 on a list of our kind means the CRD is missing. */
export function crdMissing(err: unknown, kind: string): CliError | undefined {
  if (statusCode(err) !== 404) return undefined;
  return new CliError(`the ${kind} API is not installed in this cluster: run \`pahlevan install\` first.`);
}

/** Runs a command action, printing CliErrors as one line and exiting 1. */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const message = err instanceof CliError ? err.message : explain(err, 'failed').message;
      process.stderr.write(`pahlevan: ${message}\n`);
      process.exitCode = 1;
    }
  };
}
