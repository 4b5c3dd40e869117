import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** Every `*.yaml` fixture of a folder, parsed, with its file name as `name` (pyinfra-style tables). */
export function loadFixtures<T>(folder: string): Array<T & { name: string }> {
  const dir = path.join(root, folder);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ name: f.replace(/\.yaml$/, ''), ...(parse(readFileSync(path.join(dir, f), 'utf8')) as T) }));
}
