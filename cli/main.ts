// The `pahlevan` command line: one subcommand per job; each lives in its own module under cli/.
import { Command } from 'commander';
import { register as registerSurface } from './surface.js';
import { register as registerCerts } from './certs.js';
import { register as registerWebhook } from './webhook.js';
import { register as registerRecord } from './record.js';
import { register as registerRun } from './run.js';
import { register as registerAgent } from './agent.js';
import { register as registerInstall } from './install.js';
import { register as registerTrace } from './trace.js';
import { register as registerStatus } from './status.js';
import { register as registerProfile } from './profile.js';
import { register as registerDemo } from './demo.js';
import { register as registerController } from './controller.js';

const program = new Command('pahlevan').description(
  'Learn what each workload does, then let it do only that.',
);
registerSurface(program);
registerCerts(program);
registerWebhook(program);
registerRecord(program);
registerRun(program);
registerAgent(program);
registerInstall(program);
registerTrace(program);
registerStatus(program);
registerProfile(program);
registerDemo(program);
registerController(program);
await program.parseAsync(process.argv);
