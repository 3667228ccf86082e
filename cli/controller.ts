// `pahlevan controller`: runs the leader-elected policy controller. The webhook process can run it in-process
// through runController().
import type { Command } from 'commander';
import { KubeConfig } from '@kubernetes/client-node';
import { Controller, type ControllerOptions } from '../webhook/controller/controller.js';
import { ControllerMetrics } from '../webhook/controller/metrics.js';
import { serveMetrics } from '../api/metrics.js';

export async function runController(
  options: Omit<ControllerOptions, 'kubeConfig'> & { kubeConfig?: KubeConfig },
): Promise<Controller> {
  const kubeConfig = options.kubeConfig ?? loadKubeConfig();
  const controller = new Controller({ ...options, kubeConfig });
  await controller.start();
  return controller;
}

function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault(); // in-cluster service account, $KUBECONFIG or ~/.kube/config
  return kc;
}

export function register(program: Command): void {
  program
    .command('controller')
    .description(
      'Run the policy controller: merge observations, publish profiles, drive phases, self-heal (leader-elected).',
    )
    .option('--kubeconfig <file>', 'kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)')
    .option('--namespace <ns>', 'only watch policies in this namespace (default: all)')
    .option(
      '--lease-namespace <ns>',
      'namespace of the leader-election Lease',
      process.env.POD_NAMESPACE ?? 'pahlevan-system',
    )
    .option('--lease-name <name>', 'name of the leader-election Lease', 'pahlevan-controller')
    .option(
      '--identity <id>',
      'this replica in the Lease (default: pod name or host-pid)',
      process.env.POD_NAME,
    )
    .option('--resync <ms>', 'reconcile every policy at least this often', '5000')
    .option('--metrics-port <port>', 'serve Prometheus metrics on :PORT/metrics (0: off)', '9465')
    .action(
      async (
        opts: {
          kubeconfig?: string;
          namespace?: string;
          leaseNamespace: string;
          leaseName: string;
          identity?: string;
          resync: string;
          metricsPort: string;
        },
        command: Command,
      ) => {
        const resyncMs = Number(opts.resync);
        if (!Number.isInteger(resyncMs) || resyncMs < 100)
          command.error(
            `error: --resync: expected milliseconds (an integer >= 100), got ${JSON.stringify(opts.resync)}`,
          );
        const metricsPort = Number(opts.metricsPort);
        if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)
          command.error(`error: --metrics-port ${opts.metricsPort}: expected a port (0 turns it off)`);
        let kubeConfig: KubeConfig;
        try {
          kubeConfig = loadKubeConfig(opts.kubeconfig);
        } catch (err) {
          command.error(`error: cannot load the kubeconfig: ${(err as Error).message}`);
        }
        const metrics = new ControllerMetrics({ processMetrics: true });
        const metricsServer = metricsPort > 0 ? await serveMetrics(metrics.registry, metricsPort) : undefined;
        const controller = await runController({
          metrics,
          kubeConfig,
          namespace: opts.namespace,
          leaseNamespace: opts.leaseNamespace,
          leaseName: opts.leaseName,
          identity: opts.identity,
          resyncMs,
        });
        const shutdown = () => {
          metricsServer?.close();
          void controller.stop(true).then(() => process.exit(0));
        };
        process.once('SIGTERM', shutdown);
        process.once('SIGINT', shutdown);
      },
    );
}
