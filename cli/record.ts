// `pahlevan record`: learn a command in a container, write DIR/seccomp.json and DIR/behaviour.json.
import type { Command } from 'commander';
import { checkPrerequisites, type NetMode, type Runtime } from '../agent/container.js';
import { DEFAULT_PIN_DIR, Learner } from '../agent/learner.js';
import { startRecording, summary, writeRecording } from '../agent/recorder.js';

export function parseRuntime(value: string): Runtime {
  if (value !== 'runc' && value !== 'crun') throw new Error(`--runtime must be runc or crun, not ${value}`);
  return value;
}

export function parseNet(value: string): NetMode {
  if (value !== 'host' && value !== 'none') throw new Error(`--net must be host or none, not ${value}`);
  return value;
}

interface RecordFlags {
  runtime: string;
  rootfs?: string;
  net: string;
  output: string;
  arm64?: boolean;
  pinDir: string;
  portable: boolean;
}

export function register(program: Command): void {
  program
    .command('record')
    .description('run a command in a container and learn what it does (syscalls, execs, files, ports)')
    .option('--runtime <runtime>', 'container runtime: runc or crun', 'runc')
    .option('--rootfs <dir>', "container root filesystem (default: the host's /, read-only)")
    .option('--net <mode>', 'host (default) or none (an empty network namespace)', 'host')
    .requiredOption('-o, --output <dir>', 'directory for seccomp.json and behaviour.json')
    .option('--arm64', 'also list the arm64 names of the learned syscalls')
    .option(
      '--no-portable',
      'profile for the recording runtime only (default: also for the other installed runtime)',
    )
    .option(
      '--pin-dir <dir>',
      'bpffs directory of the learner maps',
      `${DEFAULT_PIN_DIR}-record-${process.pid}`,
    )
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(async (command: string[], flags: RecordFlags) => {
      try {
        const runtime = parseRuntime(flags.runtime);
        const net = parseNet(flags.net);
        checkPrerequisites(runtime, command, flags.rootfs);
        const recording = await startRecording({
          runtime,
          command,
          net,
          stdio: 'inherit',
          pinDir: flags.pinDir,
          includeArm64: flags.arm64 ?? false,
          ...(flags.portable ? {} : { portableTo: [] }),
          ...(flags.rootfs ? { rootfs: flags.rootfs } : {}),
        });
        const stop = (): void => void recording.stop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const result = await recording.done;
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        Learner.removePins(flags.pinDir);
        writeRecording(flags.output, result);
        const how = result.exit.signal ? `signal ${result.exit.signal}` : `exit code ${result.exit.code}`;
        process.stderr.write(`pahlevan record: ${command.join(' ')} ended with ${how}\n${summary(result)}\n`);
        process.stderr.write(`wrote ${flags.output}/seccomp.json and ${flags.output}/behaviour.json\n`);
      } catch (err) {
        process.stderr.write(`pahlevan record: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
