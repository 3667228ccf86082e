// `pahlevan agent --node NAME`: the DaemonSet agent in cluster mode.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { ClusterAgent, type EnforcerPort, type LearnerPort } from '../agent/cluster/agent.js';
import { CgroupScanner } from '../agent/cluster/attribution.js';
import { loadKubeConfig } from '../agent/cluster/kube.js';
import { action, CliError } from './kube-context.js';
import { AgentMetrics } from '../agent/metrics.js';
import { instrumentPorts } from '../agent/metrics-wiring.js';
import { serveMetrics } from '../api/metrics.js';

interface AgentOptions {
  node?: string;
  kubeletRoot: string;
  stateDir: string;
  kubeconfig?: string;
  cgroupRoot?: string;
  pinDir: string;
  logLevel: string;
  metricsPort: string;
}

/**
 * Builds the learner and enforcer for this node. They live in their own modules (agent/learner.ts,
 * agent/enforcer.ts); `adapters.ts` maps them onto the small ports the cluster agent needs.
 */
async function loadPorts(
  log: pino.Logger,
  pinDir: string,
): Promise<{ learner?: LearnerPort; enforcer?: EnforcerPort; close: () => Promise<void> }> {
  try {
    const { createNodePorts } = await import('../agent/cluster/adapters.js');
    return await createNodePorts(log, { pinDir });
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
    .option('--cgroup-root <dir>', 'cgroup v2 mount (default: detected)')
    .option('--pin-dir <dir>', 'bpffs directory for pinned maps and links', '/sys/fs/bpf/pahlevan')
    .option('--kubeconfig <file>', 'kubeconfig file (default: in-cluster)')
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .option('--metrics-port <port>', 'serve Prometheus metrics on :PORT/metrics (0: off)', '9464')
    .action(
      action(async (opts: AgentOptions) => {
        const node = opts.node ?? process.env.NODE_NAME;
        if (!node)
          throw new CliError(
            'which node is this? pass --node NAME (the DaemonSet sets NODE_NAME from spec.nodeName).',
          );
        const log = pino({ level: opts.logLevel, base: { node } });
        const kubeConfig = loadKubeConfig(opts.kubeconfig);
        const metrics = new AgentMetrics({ processMetrics: true });
        const loaded = await loadPorts(log, opts.pinDir);
        const ports = { ...loaded, ...instrumentPorts(loaded, metrics, node) };
        const metricsPort = Number(opts.metricsPort);
        if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)
          throw new CliError(
            `--metrics-port ${opts.metricsPort}: expected a port number (0 turns metrics off)`,
          );
        const metricsServer = metricsPort > 0 ? await serveMetrics(metrics.registry, metricsPort) : undefined;
        const agent = new ClusterAgent({
          node,
          kubeConfig,
          kubeletRoot: resolve(opts.kubeletRoot),
          stateDir: resolve(opts.stateDir),
          scanner: new CgroupScanner(opts.cgroupRoot),
          logger: log,
          ...(ports.learner ? { learner: ports.learner } : {}),
          ...(ports.enforcer ? { enforcer: ports.enforcer } : {}),
        });
        metrics.trackProfiles(() => agent.installer.listInstalled().length);
        await agent.start();
        log.info({ kubeletRoot: opts.kubeletRoot, stateDir: opts.stateDir }, 'agent started');
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
