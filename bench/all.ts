// `npm run bench`: every benchmark in turn, each in its own process (they load BPF programs, start servers
// and measure their own baselines in the same run), printing each one's ratios as it goes.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BENCHES = ['learner', 'enforce', 'webhook', 'merge'];
let failed = 0;
for (const name of BENCHES) {
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  console.log(`\n=== bench:${name} ===`);
  const r = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench:${name} exited with ${r.status ?? r.signal}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
