// The `pahlevan` command line: one subcommand per job; each lives in its own module under cli/.
import { Command } from 'commander';
import { register as registerController } from './controller.js';

const program = new Command('pahlevan').description(
  'Learn what each workload does, then let it do only that.',
);
registerController(program);
await program.parseAsync(process.argv);
