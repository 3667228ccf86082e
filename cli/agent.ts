// `pahlevan agent --node NAME`: the DaemonSet agent in cluster mode.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { AgentMetrics } from '../agent/metrics.js';
import { instrumentPorts } from '../agent/metrics-wiring.js';
import { pino } from 'pino';
import { ClusterAgent } from '../agent/cluster/agent.js';
import type { NodePorts } from '../agent/cluster/adapters.js';
import { CgroupScanner } from '../agent/cluster/attribution.js';
import { loadKubeConfig } from '../agent/cluster/kube.js';
import { action, CliError } from './kube-context.js';

interface AgentOptions {
  node?: string;
  kubeletRoot: string;
  seccompRoot?: string;
  metricsPort: string;
  stateDir: string;
  kubeconfig?: string;
  cgroupRoot?: string;
  pinDir: string;
  logLevel: string;
}

/**
 * Builds the learner and enforcer for this node. They live in their own modules (agent/learner.ts,
 * agent/enforcer.ts); `adapters.ts` maps them onto the small ports the cluster agent needs.
 */
async function loadPorts(
  log: pino.Logger,
  pinDir: string,
  cgroupRoot: string | undefined,
): Promise<NodePorts> {
  try {
    const { createNodePorts } = await import('../agent/cluster/adapters.js');
    return await createNodePorts(log, { pinDir, ...(cgroupRoot ? { cgroupRoot } : {}) });
  } catch (err) {
    log.error(
      { err: (err as Error).message },
      'learner/enforcer unavailable: attributing and installing profiles only',
    );
    return { close: async () => {} };
  }
}

export function register(program: Command): void {
  program
    .command('agent')
    .description('Run the node agent (the DaemonSet): learn, report observations, install profiles, enforce')
    .option('--node <name>', 'this node (default: $NODE_NAME)')
    .option(
      '--kubelet-root <dir>',
      'kubelet root directory (profiles go to <dir>/seccomp/pahlevan/)',
      '/var/lib/kubelet',
    )
    .option(
      '--state-dir <dir>',
      'local state (pending observations survive restarts and API outages)',
      '/var/lib/pahlevan',
    )
    .option('--seccomp-root <dir>', 'the kubelet seccomp profile root (default: <kubelet-root>/seccomp)')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port (0: off)', '9464')
    .option('--cgroup-root <dir>', 'cgroup v2 mount (default: detected)')
    .option('--pin-dir <dir>', 'bpffs directory for pinned maps and links', '/sys/fs/bpf/pahlevan')
    .option('--kubeconfig <file>', 'kubeconfig file (default: in-cluster)')
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .action(
      action(async (opts: AgentOptions) => {
        const node = opts.node ?? process.env.NODE_NAME;
        if (!node)
          throw new CliError(
            'which node is this? pass --node NAME (the DaemonSet sets NODE_NAME from spec.nodeName).',
          );
        const log = pino({ level: opts.logLevel, base: { node } });
        const stateDir = resolve(opts.stateDir);
        try {
          mkdirSync(stateDir, { recursive: true, mode: 0o700 });
          accessSync(stateDir, constants.W_OK);
        } catch (err) {
          throw new CliError(
            `state directory ${stateDir} is not writable (${(err as Error).message}): pending observations must ` +
              'survive restarts; mount a hostPath volume there or pass --state-dir.',
          );
        }
        const metrics = new AgentMetrics({ processMetrics: true });
        const metricsPort = Number(opts.metricsPort);
        const metricsServer =
          metricsPort > 0
            ? createServer((req, res) => {
                if (req.url?.split('?')[0] !== '/metrics') {
                  res.writeHead(404).end('only /metrics here\n');
                  return;
                }
                void metrics.registry.metrics().then(
                  (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
                  (err: Error) => res.writeHead(500).end(err.message),
                );
              })
            : undefined;
        if (metricsServer)
          await new Promise<void>((ok, fail) => {
            metricsServer.once('error', (err) =>
              fail(new CliError(`cannot serve metrics on port ${metricsPort}: ${err.message}`)),
            );
            metricsServer.listen(metricsPort, ok);
          });
        const kubeConfig = loadKubeConfig(opts.kubeconfig);
        const loaded = await loadPorts(log, opts.pinDir, opts.cgroupRoot);
        // Kernel loss counters, read at each scrape: ring-buffer drops and violations lost per layer.
        if (loaded.learnerLosses) metrics.trackLosses(loaded.learnerLosses);
        if (loaded.violationsLost) metrics.trackViolationsLost(loaded.violationsLost);
        // Learned behaviours are counted at the learner port (once per container and behaviour); the
        // ClusterAgent counts the rest (watched containers, first-seen events, violations, layers, profiles).
        const ports = { ...loaded, ...instrumentPorts(loaded, metrics, node) };
        const agent = new ClusterAgent({
          node,
          kubeConfig,
          kubeletRoot: resolve(opts.kubeletRoot),
          ...(opts.seccompRoot ? { seccompRoot: resolve(opts.seccompRoot) } : {}),
          stateDir,
          metrics,
          scanner: new CgroupScanner(opts.cgroupRoot),
          logger: log,
          ...(ports.learner ? { learner: ports.learner } : {}),
          ...(ports.enforcer ? { enforcer: ports.enforcer } : {}),
        });
        await agent.start();
        log.info({ kubeletRoot: opts.kubeletRoot, stateDir, metricsPort }, 'agent started');
        await new Promise<void>((done) => {
          const stop = (signal: string): void => {
            log.info({ signal }, 'stopping');
            void agent
              .stop()
              .then(() => agent.flush())
              .finally(() => {
                metricsServer?.close();
                void ports.close().finally(done);
              });
          };
          process.once('SIGTERM', () => stop('SIGTERM'));
          process.once('SIGINT', () => stop('SIGINT'));
        });
      }),
    );
}
