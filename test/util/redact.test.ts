import { describe, expect, it } from 'vitest';
import { createRedactor } from '../../src/util/redact.js';

const redact = createRedactor({
  secrets: ['s3cr3t-value'],
  yamlKeys: ['secret', 'jwt'],
  envKeys: ['MINIO_KMS_HSM_KEY'],
  logPatterns: ['API Key\\s+(\\S+)'],
});

describe('createRedactor', () => {
  it.each([
    ['known literal anywhere', 'token=s3cr3t-value; again s3cr3t-value', 'token=<redacted>; again <redacted>'],
    ['yaml key, plain', '    secret: 9f8e7d6c', '    secret: <redacted>'],
    ['yaml key, quoted with comment', '  jwt: "ey.J0.x"   # sa token', '  jwt: <redacted>   # sa token'],
    ['yaml key in flow map', '{id: x, secret: zz9, path: p}', '{id: x, secret: <redacted>, path: p}'],
    ['yaml key without a value is left', 'secret:\n  nested: 1', 'secret:\n  nested: 1'],
    ['env key, plain', 'MINIO_KMS_HSM_KEY=hsm:aes256:QUJD', 'MINIO_KMS_HSM_KEY=<redacted>'],
    ['env key, export and quotes', 'export MINIO_KMS_HSM_KEY="hsm:aes256:QUJD"', 'export MINIO_KMS_HSM_KEY=<redacted>'],
    ['env key in a comment', '#MINIO_KMS_HSM_KEY=hsm:aes256:old', '#MINIO_KMS_HSM_KEY=<redacted>'],
    ['log pattern group', 'API Key     k1:Zm9vYmFy', 'API Key     <redacted>'],
    ['CRLF kept', 'secret: x1y2\r\nnext: 1\r\n', 'secret: <redacted>\r\nnext: 1\r\n'],
  ])('%s', (_name, input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it('replaces the longer of two overlapping secrets whole', () => {
    const r = createRedactor({ secrets: ['abcdefgh', 'abcdefghijkl'], yamlKeys: [], envKeys: [], logPatterns: [] });
    expect(r('x abcdefghijkl y abcdefgh')).toBe('x <redacted> y <redacted>');
  });

  it('replaces a very short secret only where it stands alone', () => {
    const r = createRedactor({ secrets: ['x'], yamlKeys: [], envKeys: [], logPatterns: [] });
    expect(r('linux/amd64 expired x "x"')).toBe('linux/amd64 expired <redacted> "<redacted>"');
  });
});
