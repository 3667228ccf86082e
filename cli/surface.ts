// `pahlevan surface --profile DIR`: the attack surface of what `pahlevan record` wrote (seccomp.json +
// behaviour.json), against the container runtime's default profile.
import { readFileSync, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import {
  computeAttackSurface,
  formatSurfaceText,
  parseBehaviour,
  type AttackSurfaceReport,
} from '../api/attack-surface.js';
import { loadSurfaceReference } from '../api/attack-surface-data.js';
import { OciSeccompProfile } from '../api/seccomp.js';
import { parsePolicy, formatIssue, type PolicySpec } from '../api/policy.js';
import { parseOutputFormat, render } from './output.js';

function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: cannot read ${what}: ${(err as Error).message}`);
  }
}

/** Attack surface of one record output directory (seccomp.json, optional behaviour.json). */
export function surfaceOfRecordDir(
  dir: string,
  options: { container?: string; spec?: PolicySpec } = {},
): AttackSurfaceReport {
  const seccompPath = join(dir, 'seccomp.json');
  if (!existsSync(seccompPath))
    throw new Error(
      `${seccompPath} not found: point --profile at a directory written by \`pahlevan record -o DIR\``,
    );
  const parsed = OciSeccompProfile.safeParse(readJson(seccompPath, 'the seccomp profile'));
  if (!parsed.success)
    throw new Error(
      `${seccompPath} is not an OCI seccomp profile: ${parsed.error.issues.map(formatIssue).join('; ')}`,
    );
  const behaviourPath = join(dir, 'behaviour.json');
  const behaviour = existsSync(behaviourPath)
    ? parseBehaviour(readJson(behaviourPath, 'the learned behaviour'))
    : undefined;
  const ref = loadSurfaceReference();
  return computeAttackSurface({
    container: options.container ?? basename(resolve(dir)),
    profile: parsed.data,
    ...(behaviour ? { behaviour } : {}),
    ...(options.spec ? { spec: options.spec } : {}),
    runtimeDefault: ref.runtimeDefault,
    archSyscalls: ref.archSyscalls,
    arch: ref.arch,
  });
}

function readPolicySpec(file: string): PolicySpec {
  const text = readFileSync(file, 'utf8');
  const result = parsePolicy(parseYaml(text));
  if (!result.ok) throw new Error(`${file}: not a valid PahlevanPolicy:\n  ${result.errors.join('\n  ')}`);
  return result.policy.spec;
}

export function register(program: Command): void {
  program
    .command('surface')
    .description(
      'Show the attack surface of a recorded profile: syscalls allowed vs. the runtime default, dangerous syscalls, ports, writable paths, executables and a risk score.',
    )
    .requiredOption('--profile <dir...>', 'directory written by `pahlevan record -o DIR` (repeatable)')
    .option('--policy <file>', 'a PahlevanPolicy (YAML/JSON) whose explicit additions apply on top')
    .option('--container <name>', 'container name to show (default: the directory name)')
    .option('-o, --output <format>', 'table, json or yaml', 'table')
    .action((opts: { profile: string[]; policy?: string; container?: string; output: string }) => {
      try {
        const format = parseOutputFormat(opts.output);
        const spec = opts.policy ? readPolicySpec(opts.policy) : undefined;
        const reports = opts.profile.map((dir) =>
          surfaceOfRecordDir(dir, {
            ...(opts.container && opts.profile.length === 1 ? { container: opts.container } : {}),
            ...(spec ? { spec } : {}),
          }),
        );
        const ref = loadSurfaceReference();
        console.log(
          render(format, reports.length === 1 ? reports[0] : reports, () =>
            [
              `Runtime default: ${ref.runtimeDefaultName}, ${ref.runtimeDefault.size} syscalls on ${ref.arch}`,
              formatSurfaceText(reports),
            ].join('\n'),
          ),
        );
      } catch (err) {
        console.error(`pahlevan surface: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    });
}
