import { describe, expect, it } from 'vitest';
import { findOption, readEnvValue, unsetEnvKey } from '../../src/tasks/env-file.js';
import { loadFixtures } from '../helpers/fixtures.js';

type Case = { key: string; before: string; after: string; removed: number };

describe('unsetEnvKey', () => {
  it.each(loadFixtures<Case>('env-unset'))('$name', (c) => {
    expect(unsetEnvKey(c.before, c.key)).toEqual({ after: c.after, removed: c.removed });
  });
});

describe('readEnvValue', () => {
  it.each([
    ['double quoted', 'MINIO_KMS_OPTS="--host a:7373 --config /etc/x.yaml"\n', '--host a:7373 --config /etc/x.yaml'],
    ['single quoted, export', "export MINIO_KMS_OPTS='--config /c.yaml'\n", '--config /c.yaml'],
    ['last assignment wins', 'MINIO_KMS_OPTS=--config /a\nMINIO_KMS_OPTS=--config /b\n', '--config /b'],
    ['trailing comment', 'MINIO_KMS_OPTS=--config /a # note\n', '--config /a'],
    ['unset', 'OTHER=1\n', null],
  ])('%s', (_name, text, expected) => {
    expect(readEnvValue(text, 'MINIO_KMS_OPTS')).toBe(expected);
  });
});

describe('findOption', () => {
  it.each([
    ['--host a:7373 --config /etc/minkms/config.yaml', '/etc/minkms/config.yaml'],
    ['--config=/srv/kms.yaml --host a', '/srv/kms.yaml'],
    ['--host a --config "/path with space/c.yaml"', '/path with space/c.yaml'],
    ['--host a', null],
    ['--configx /nope', null],
    // The service's Go flag parsing: the last one wins, the next word is the value, `--` ends the options.
    ['--config /etc/a.yaml --host a --config /etc/b.yaml', '/etc/b.yaml'],
    ['--config=/etc/a.yaml --config /etc/b.yaml', '/etc/b.yaml'],
    ['--config /etc/a.yaml --config=/etc/b.yaml', '/etc/b.yaml'],
    ['--config /etc/a.yaml -- --config /etc/b.yaml', '/etc/a.yaml'],
    ['--config --host', '--host'],
  ])('%s', (words, expected) => {
    expect(findOption(words, '--config')).toBe(expected);
  });
});
