// `pahlevan webhook --port N --cert-dir DIR [--state FILE]`: serve /mutate-pods and /validate-policies over
// HTTPS. With --state the policies come from a file (no cluster); without it, from a watch of the cluster.
import type { Command } from 'commander';
import { action, CliError } from './kube-context.js';
import { resolve } from 'node:path';
import { ClusterPolicySource, StateFilePolicySource } from '../webhook/policy-cache.js';
import type { PolicySource, SourceLogger } from '../webhook/policy-cache.js';
import { startWebhookServer } from '../webhook/server.js';

export function register(program: Command): void {
  program
    .command('webhook')
    .description('Serve the admission webhook over HTTPS')
    .option('--port <n>', 'HTTPS port', '8443')
    .option('--host <addr>', 'listen address', '0.0.0.0')
    .requiredOption('--cert-dir <dir>', 'directory with tls.crt and tls.key (reloaded on change)')
    .option(
      '--state <file>',
      'YAML/JSON list of PahlevanPolicy objects with status (no cluster); reloaded on change',
    )
    .option(
      '--dns <names>',
      'create the certificates in --cert-dir for these comma-separated names and rotate them (local, single replica)',
    )
    .option(
      '--namespace <ns>',
      'the webhook namespace, never matched',
      process.env.POD_NAMESPACE ?? 'pahlevan-system',
    )
    .action(
      action(
        async (opts: {
          port: string;
          host: string;
          certDir: string;
          state?: string;
          namespace: string;
          dns?: string;
        }) => {
          const port = Number(opts.port);
          if (!Number.isInteger(port) || port < 0 || port > 65535)
            throw new CliError(`--port: not a port: ${opts.port}`);
          const log: SourceLogger = {
            info: (m) => console.error(`webhook: ${m}`),
            warn: (m) => console.error(`webhook: warning: ${m}`),
            error: (m) => console.error(`webhook: error: ${m}`),
          };
          const policies: PolicySource = opts.state
            ? new StateFilePolicySource(resolve(opts.state), log)
            : new ClusterPolicySource(log);
          await policies.start();
          const server = await startWebhookServer({
            port,
            host: opts.host,
            certDir: resolve(opts.certDir),
            policies,
            namespace: opts.namespace,
            logger: true,
            selfManagedCerts: opts.dns
              ? {
                  dnsNames: opts.dns
                    .split(',')
                    .map((n) => n.trim())
                    .filter(Boolean),
                }
              : undefined,
          });
          console.error(
            `webhook: serving ${server.url.replace('127.0.0.1', opts.host)} (/mutate-pods, /validate-policies)`,
          );
          const shutdown = async () => {
            await server.close();
            await policies.stop();
            process.exit(0);
          };
          process.once('SIGTERM', () => void shutdown());
          process.once('SIGINT', () => void shutdown());
        },
      ),
    );
}
