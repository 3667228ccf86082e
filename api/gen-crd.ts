// `npm run gen:crd`: writes manifests/crds/ from api/crds.ts, removing generated files of CRDs no longer listed.
import { readdirSync, writeFileSync, unlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRDS } from './crds.js';
import { renderCrdFiles } from './crd.js';

// dist/api/gen-crd.js -> repository root
export const CRD_DIR = fileURLToPath(new URL('../../manifests/crds/', import.meta.url));

export function writeCrds(dir: string = CRD_DIR): string[] {
  mkdirSync(dir, { recursive: true });
  const files = renderCrdFiles(CRDS);
  for (const name of readdirSync(dir))
    if (name.endsWith('.yaml') && !files.has(name)) unlinkSync(join(dir, name));
  for (const [name, content] of files) writeFileSync(join(dir, name), content);
  return [...files.keys()];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const name of writeCrds()) console.log(`wrote manifests/crds/${name}`);
}
