// Every error class lives in src/errors.ts, so the CLI's one catch can map them all
// and a reader finds every failure rollout anticipates in one file.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

describe('error classes', () => {
  it('are all declared in src/errors.ts', () => {
    const elsewhere = sourceFiles(SRC)
      .filter((f) => path.relative(SRC, f) !== 'errors.ts')
      .flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/\bclass\s+(\w+)\s+extends\s+(\w*Error)\b/g)].map((m) => `src/${path.relative(SRC, f)}: ${m[1]} extends ${m[2]}`));
    expect(elsewhere, `move these to src/errors.ts:\n${elsewhere.join('\n')}`).toEqual([]);
  });
});
