// The `pahlevan` command line: one subcommand per job; each lives in its own module under cli/.
import { Command } from 'commander';
import { register as registerCerts } from './certs.js';
import { register as registerDemo } from './demo.js';
import { register as registerRecord } from './record.js';
import { register as registerRun } from './run.js';
import { register as registerSurface } from './surface.js';
import { register as registerWebhook } from './webhook.js';

const program = new Command('pahlevan').description(
  'Learn what each workload does, then let it do only that.',
);
registerCerts(program);
registerWebhook(program);
registerRecord(program);
registerRun(program);
registerSurface(program);
registerDemo(program);
await program.parseAsync(process.argv);
