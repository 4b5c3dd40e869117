import { describe, expect, it } from 'vitest';
import { detectIndent, setYamlPath, type YamlSetOptions } from '../../src/tasks/yaml-set.js';
import { loadFixtures } from '../helpers/fixtures.js';

type Case = { path: string; value: unknown; before: string; after?: string; unchanged?: boolean; conflict?: string; error?: string; update?: boolean; opts?: YamlSetOptions };

describe('setYamlPath', () => {
  it.each(loadFixtures<Case>('yaml-set'))('$name', (c) => {
    const run = () => setYamlPath(c.before, c.path.split('.'), c.value, c.opts);
    if (c.error) {
      expect(run).toThrow(c.error);
      return;
    }
    const result = run();
    if (c.after !== undefined) {
      expect(result).toEqual({ status: 'changed', after: c.after });
      // A new block only appends: the old text is a byte-exact prefix (bar a final newline).
      if (!c.update) expect(c.after.startsWith(c.before.endsWith('\n') ? c.before : c.before.replace(/$/, ''))).toBe(true);
      // Setting it again changes nothing.
      expect(setYamlPath(c.after, c.path.split('.'), c.value, c.opts).status).toBe('unchanged');
    } else if (c.unchanged) {
      expect(result.status).toBe('unchanged');
    } else {
      expect(result.status).toBe('conflict');
      expect(result.status === 'conflict' && result.reason).toContain(c.conflict);
    }
  });
});

describe('detectIndent', () => {
  it.each([
    ['a:\n  b: 1\n', 2],
    ['a:\n    b: 1\n      # deeper comment\n', 4],
    ['a: 1\n', 2],
    ['a:\r\n   b: 1\r\n', 3],
  ])('%j -> %i', (text, indent) => {
    expect(detectIndent(text)).toBe(indent);
  });
});
