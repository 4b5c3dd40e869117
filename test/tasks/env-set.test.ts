import { describe, expect, it } from 'vitest';
import { quoteEnvValue, setEnvKey } from '../../src/tasks/env-file.js';
import { loadFixtures } from '../helpers/fixtures.js';

type Case = { key: string; value: string; before: string; after?: string; status: 'changed' | 'unchanged' | 'refused'; reason?: string };

describe('setEnvKey', () => {
  it.each(loadFixtures<Case>('env-set'))('$name', (c) => {
    const result = setEnvKey(c.before, c.key, c.value);
    expect(result.status).toBe(c.status);
    if (c.reason !== undefined) expect(result.reason).toContain(c.reason);
    if (result.status === 'changed') {
      expect(result.after).toBe(c.after);
      // What was written reads back as the value: a second run changes nothing.
      expect(setEnvKey(result.after, c.key, c.value)).toEqual({ status: 'unchanged', reason: `${c.key} already has this value` });
    }
  });

  it('never puts the value in its reason (it may be a secret)', () => {
    for (const before of ['', 'K=old\n', 'K=s3cr3t-value\n', 'K=1\nK=s3cr3t-value\n']) {
      expect(setEnvKey(before, 'K', 's3cr3t-value').reason).not.toContain('s3cr3t');
    }
  });
});

describe('quoteEnvValue', () => {
  it.each([
    ['4', '4'],
    ['/etc/greeter/config.yaml', '/etc/greeter/config.yaml'],
    ['a=b,c:d', 'a=b,c:d'],
    ['', ''],
    ['two words', '"two words"'],
    ['tab\there', '"tab\there"'],
    [' lead', '" lead"'],
    ['#x', '"#x"'],
    ['$HOME', '"\\$HOME"'],
    ['back\\slash', '"back\\\\slash"'],
    ['"q"', '"\\"q\\""'],
  ])('%j -> %s', (value, written) => {
    expect(quoteEnvValue(value)).toBe(written);
  });
});
