// `pahlevan run`: run a command in the same kind of container as `record`, under a recorded profile.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { OciSeccompProfile } from '../api/seccomp.js';
import { checkPrerequisites, startContainer, type ContainerOptions } from '../agent/container.js';
import { parseNet, parseRuntime } from './record.js';
import { runEnforcedCli } from './enforce-run.js';

export function loadProfile(dir: string): OciSeccompProfile {
  const file = join(dir, 'seccomp.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read the profile ${file}: ${(err as Error).message}`);
  }
  const parsed = OciSeccompProfile.safeParse(raw);
  if (!parsed.success) throw new Error(`${file} is not an OCI seccomp profile: ${parsed.error.message}`);
  return parsed.data;
}

interface RunFlags {
  profile: string;
  runtime: string;
  rootfs?: string;
  net: string;
  mode?: string;
  layers?: string;
}

/** Builds the container options of `pahlevan run` (the enforcer extends them with its layers). */
export function runOptions(command: string[], flags: RunFlags): ContainerOptions {
  const runtime = parseRuntime(flags.runtime);
  checkPrerequisites(runtime, command, flags.rootfs);
  return {
    runtime,
    command,
    net: parseNet(flags.net),
    seccomp: loadProfile(flags.profile),
    stdio: 'inherit',
    ...(flags.rootfs ? { rootfs: flags.rootfs } : {}),
  };
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run a command in a container under a profile recorded by `pahlevan record`')
    .requiredOption('--profile <dir>', 'directory written by `pahlevan record -o`')
    .option('--runtime <runtime>', 'container runtime: runc or crun', 'runc')
    .option('--rootfs <dir>', "container root filesystem (default: the host's /, read-only)")
    .option(
      '--net <mode>',
      'host (default), none, or veth (own namespace joined to the host by a veth pair)',
      'host',
    )
    .option('--mode <mode>', 'enforcement mode: Monitor, Enforce (default) or Alert', 'Enforce')
    .option(
      '--layers <list>',
      'layers to enforce: syscalls,files,execs,network, all (default) or none',
      'all',
    )
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(async (command: string[], flags: RunFlags) => {
      try {
        if (flags.layers !== 'none') {
          checkPrerequisites(parseRuntime(flags.runtime), command, flags.rootfs);
          process.exitCode = await runEnforcedCli(command, flags);
          return;
        }
        const container = await startContainer(runOptions(command, flags));
        const forward = (sig: NodeJS.Signals): void => container.kill(sig);
        process.on('SIGINT', forward);
        process.on('SIGTERM', forward);
        const exit = await container.exited;
        process.off('SIGINT', forward);
        process.off('SIGTERM', forward);
        await container.cleanup();
        process.exitCode = exit.code ?? 128 + 15;
      } catch (err) {
        process.stderr.write(`pahlevan run: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
