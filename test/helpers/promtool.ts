// Runs `promtool check metrics` (Debian package `prometheus`) on an exposition text.
import { spawnSync } from 'node:child_process';

/** Problems promtool reports (empty when clean). Throws, naming the package, when promtool is missing. */
export function promtoolProblems(exposition: string): string[] {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT')
    throw new Error('promtool not found: install the Debian package `prometheus` (setup.sh does)');
  if (result.error) throw result.error;
  const output = `${result.stdout}${result.stderr}`.trim();
  if (result.status !== 0 && output === '') return [`promtool exited with ${result.status}`];
  return output === '' ? [] : output.split('\n');
}
