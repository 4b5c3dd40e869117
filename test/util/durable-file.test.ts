import { lstatSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileDurably } from '../../src/util/durable-file.js';

describe('writeFileDurably', () => {
  it('never writes through a link planted where the temp file of an older, predictable scheme would be', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rollout-durable-'));
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    // Links at every name this process could have used for its temp file before.
    for (const name of [`.plan.json.${process.pid}.tmp`, '.plan.json.tmp']) symlinkSync(victim, path.join(dir, name));
    await writeFileDurably(path.join(dir, 'plan.json'), '{"ok":true}\n');
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(readFileSync(path.join(dir, 'plan.json'), 'utf8')).toBe('{"ok":true}\n');
    expect(statSync(path.join(dir, 'plan.json')).mode & 0o777).toBe(0o600);
    // No temp file is left beside it.
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp') && !lstatSync(path.join(dir, f)).isSymbolicLink())).toEqual([]);
  });

  it('replaces a link standing at the target itself, never the file it points to', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rollout-durable-'));
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, path.join(dir, 'state.json'));
    await writeFileDurably(path.join(dir, 'state.json'), 'new\n');
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(path.join(dir, 'state.json')).isSymbolicLink()).toBe(false);
  });
});
