import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRedactor, escapeControls } from '../../src/util/redact.js';
import { fingerprinter, fingerprintKeyFile, loadFingerprintKey } from '../../src/util/fingerprint.js';

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
    // Values over several lines: each line replaced, so a diff keeps the file's line numbers.
    ['env key continued with a backslash', 'MINIO_KMS_HSM_KEY=hsm:aes256:QUJDREVG\\\nR0hJSktMTU5P\nNEXT=1\n', 'MINIO_KMS_HSM_KEY=<redacted>\\\n<redacted>\nNEXT=1\n'],
    ['env key continued, CRLF', 'MINIO_KMS_HSM_KEY=hsm:aes256:QUJD\\\r\nREVGR0hJ\r\nNEXT=1', 'MINIO_KMS_HSM_KEY=<redacted>\\\r\n<redacted>\r\nNEXT=1'],
    ['env key quoted over two lines', 'MINIO_KMS_HSM_KEY="hsm:aes256:\nQUJDREVG"\nA=1', 'MINIO_KMS_HSM_KEY=<redacted>\n<redacted>\nA=1'],
    ['env key, a value with a space', 'MINIO_KMS_HSM_KEY=hsm:aes256:QUJD REVGR0hJ', 'MINIO_KMS_HSM_KEY=<redacted>'],
    ['yaml block scalar >-', 'log:\n  secret: >-\n    first-half\n\n    second-half\n  audit: off\n', 'log:\n  secret: >-\n    <redacted>\n\n    <redacted>\n  audit: off\n'],
    ['yaml block scalar | in a sequence', 'certs:\n  - jwt: |\n      l1-aaaa\n      l2-bbbb\n    name: keep\nz: 1', 'certs:\n  - jwt: |\n      <redacted>\n      <redacted>\n    name: keep\nz: 1'],
    ['yaml block scalar in a comment', '# secret: |\n#   old-secret-1\n# other: shown\n', '# secret: |\n#   <redacted>\n# other: shown\n'],
    ['yaml scalar on the next line', 'jwt:\n  eyJhbGciOi.x.y\nnext: 1', 'jwt:\n  <redacted>\nnext: 1'],
    ['yaml quoted scalar over two lines', 'secret: "abc, def\n  ghi"\nk: v', 'secret: <redacted>\n  <redacted>\nk: v'],
    ['yaml plain scalar continued', 'secret: abcdef\n  ghijkl\nk: v', 'secret: <redacted>\n  <redacted>\nk: v'],
    ['yaml sequence under the key', 'secret:\n- aaaa\n- bbbb\nq: 1', 'secret:\n<redacted>\n<redacted>\nq: 1'],
    ['yaml secret key inside a nested mapping under one', 'secret:\n  inner:\n    jwt: |\n      deep-1\n  x: 1', 'secret:\n  inner:\n    jwt: |\n      <redacted>\n  x: 1'],
    // Control characters: shown, never acted on.
    ['OSC window title and clipboard', 'a \x1b]0;pwned\x07 b \x1b]52;c;cHduZWQ=\x07', 'a \\x1b]0;pwned\\x07 b \\x1b]52;c;cHduZWQ=\\x07'],
    ['erase line and carriage return', 'x \x1b[2K\rfake ok line', 'x \\x1b[2K\\rfake ok line'],
    ['C1 CSI, NUL, DEL, bidi override; tab kept', 'a\u009b31m\u0000\u007f\u202eb\tc', 'a\\x9b31m\\x00\\x7f\\u202eb\tc'],
  ])('%s', (_name, input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it('changes nothing in a diff of text it redacted (the output redacts a rendered plan again)', () => {
    const diff = '@@ -1,4 +1,2 @@\n # env\n-MINIO_KMS_HSM_KEY=<redacted>\\\n-<redacted>\n A=1\n secret: |\n   <redacted>\n+  jwt: <redacted>\n';
    expect(redact(diff)).toBe(diff);
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

describe('escapeControls', () => {
  it('writes every control character but newline, tab and a CRLF line end as a visible escape, idempotently', () => {
    const all = Array.from({ length: 0xa0 }, (_, i) => String.fromCharCode(i)).join('');
    const out = escapeControls(all);
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
    expect(out).toContain('\t\n');
    expect(out).toContain('\\x1b');
    expect(escapeControls(out)).toBe(out);
    expect(escapeControls('a\r\nb\rc')).toBe('a\r\nb\\rc');
  });
});

describe('fingerprinted redaction', () => {
  const key = Buffer.alloc(32, 7);
  const rules = { secrets: ['new-secret-id-1', 'old-secret-id-0'], yamlKeys: ['secret'], envKeys: [], logPatterns: [] };
  const r = createRedactor({ ...rules, fingerprint: fingerprinter(key) });
  const fp = fingerprinter(key);

  it('each secret becomes <redacted:FP>: the old and new one differ, the same one is the same everywhere', () => {
    const diff = '-      secret: old-secret-id-0\n+      secret: "new-secret-id-1"\n kms-2: secret: new-secret-id-1';
    const out = r(diff);
    expect(out).toBe(`-      secret: <redacted:${fp('old-secret-id-0')}>\n+      secret: "<redacted:${fp('new-secret-id-1')}>"\n kms-2: secret: <redacted:${fp('new-secret-id-1')}>`);
    expect(fp('old-secret-id-0')).not.toBe(fp('new-secret-id-1'));
    expect(r(out)).toBe(out);
  });

  it('a secret only the yaml key reveals (no literal known) gets the fingerprint of its value, quotes or not', () => {
    const bare = createRedactor({ ...rules, secrets: [], fingerprint: fp });
    expect(bare('secret: abc123456')).toBe(`secret: <redacted:${fp('abc123456')}>`);
    expect(bare("secret: 'abc123456'")).toBe(`secret: <redacted:${fp('abc123456')}>`);
  });

  it('is keyed: another key gives other fingerprints, and no unkeyed hash of the secret appears', () => {
    const other = createRedactor({ ...rules, fingerprint: fingerprinter(Buffer.alloc(32, 8)) });
    expect(other('secret: new-secret-id-1')).not.toBe(r('secret: new-secret-id-1'));
    const plain = createHash('sha256').update('new-secret-id-1').digest('hex');
    expect(plain.slice(0, 6)).not.toBe(fp('new-secret-id-1'));
    expect(r('secret: new-secret-id-1')).not.toContain(plain.slice(0, 6));
  });
});

describe('the fingerprint key', () => {
  it('is made once, 0600 in a 0700 directory, and read back the same; the path follows ROLLOUT_FINGERPRINT_KEY_FILE', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rollout-fp-'));
    const file = fingerprintKeyFile({ ROLLOUT_FINGERPRINT_KEY_FILE: path.join(dir, 'cfg', 'fp.key') });
    expect(file).toBe(path.join(dir, 'cfg', 'fp.key'));
    const [a, b] = await Promise.all([loadFingerprintKey(file), loadFingerprintKey(file)]);
    expect(a.length).toBe(32);
    expect(b).toEqual(a);
    expect(await loadFingerprintKey(file)).toEqual(a);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fingerprintKeyFile({ XDG_CONFIG_HOME: '/x' })).toBe('/x/rollout/fingerprint.key');
  });
});
