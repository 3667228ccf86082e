// `pahlevan certs --out DIR --dns NAME[,NAME...]`: create the webhook CA and serving certificate, or rotate
// them when they are close to expiry (idempotent: run it again at any time).
import type { Command } from 'commander';
import { action, CliError } from './kube-context.js';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_ROTATION, ensureCerts } from '../certs/certs.js';
import { writeInstallOverlay } from '../certs/kustomize.js';

// dist/cli/certs.js -> <package>/manifests
const PACKAGE_MANIFESTS = fileURLToPath(new URL('../../manifests/', import.meta.url));

export function register(program: Command): void {
  program
    .command('certs')
    .description('Write ca.crt, tls.crt and tls.key for the webhook (creates, or rotates before expiry)')
    .requiredOption('--out <dir>', 'directory for ca.crt, ca.key, tls.crt, tls.key')
    .requiredOption(
      '--dns <names>',
      'comma-separated DNS names (SANs), e.g. pahlevan-webhook.pahlevan-system.svc,localhost',
    )
    .option(
      '--cert-days <n>',
      'serving certificate validity in days',
      String(DEFAULT_ROTATION.certValidityDays),
    )
    .option('--ca-days <n>', 'CA validity in days', String(DEFAULT_ROTATION.caValidityDays))
    .option(
      '--kustomize',
      'also write DIR/kustomization.yaml: manifests/ + the TLS Secret + caBundle (then `kubectl apply -k DIR`)',
    )
    .option('--manifests <dir>', 'manifests directory the overlay builds on', PACKAGE_MANIFESTS)
    .action(
      action(
        async (opts: {
          out: string;
          dns: string;
          certDays: string;
          caDays: string;
          kustomize?: boolean;
          manifests: string;
        }) => {
          const dnsNames = opts.dns
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
          const certDays = Number(opts.certDays);
          const caDays = Number(opts.caDays);
          if (dnsNames.length === 0) throw new CliError('--dns needs at least one name');
          if (!Number.isInteger(certDays) || certDays < 1 || !Number.isInteger(caDays) || caDays < certDays)
            throw new CliError('--cert-days and --ca-days must be whole days, with --ca-days >= --cert-days');
          const dir = resolve(opts.out);
          const { plan, changed } = ensureCerts(dir, dnsNames, new Date(), {
            ...DEFAULT_ROTATION,
            certValidityDays: certDays,
            caValidityDays: caDays,
            certRenewBeforeDays: Math.min(DEFAULT_ROTATION.certRenewBeforeDays, Math.floor(certDays / 3)),
            caRenewBeforeDays: Math.min(DEFAULT_ROTATION.caRenewBeforeDays, Math.floor(caDays / 3)),
          });
          if (!changed) console.log(`certs: ${dir} is up to date (SANs ${dnsNames.join(', ')})`);
          else console.log(`certs: wrote ${dir}: ${plan.reasons.join('; ') || 'created'}`);
          if (opts.kustomize)
            console.log(
              `certs: wrote ${writeInstallOverlay(dir, resolve(opts.manifests))} (kubectl apply -k ${dir})`,
            );
        },
      ),
    );
}
