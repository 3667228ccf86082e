#!/usr/bin/env node
// The CLI is TypeScript compiled to dist/ by `npm run build`; say so instead of a stack trace when it is missing.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error(
    'pahlevan: not built yet. Run `npm run build` (or ./setup.sh) in the project directory first.',
  );
  process.exit(1);
}
await import(main);
