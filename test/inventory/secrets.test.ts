import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveSecret } from '../../src/inventory/secrets.js';

const dir = mkdtempSync(path.join(tmpdir(), 'rollout-secrets-'));
const inventory = path.join(dir, 'prod.yaml');
function secretFile(name: string, text: string): string {
  writeFileSync(path.join(dir, name), text);
  return name;
}

afterEach(() => {
  delete process.env.ROLLOUT_TEST_MULTILINE;
});

describe('resolveSecret', () => {
  it('takes a file\'s single trailing newline off (LF or CRLF)', async () => {
    await expect(resolveSecret({ file: secretFile('lf.txt', 's3cr3t-one\n') }, 'vars.vault.approle.secret', inventory)).resolves.toBe('s3cr3t-one');
    await expect(resolveSecret({ file: secretFile('crlf.txt', 's3cr3t-two\r\n') }, 'vars.vault.approle.secret', inventory)).resolves.toBe('s3cr3t-two');
  });

  // The config's YAML would hold it as a block scalar, its lines shown one by one in a diff.
  it.each([
    ['a file of two lines', () => ({ file: secretFile('two.txt', 'first-half\nsecond-half\n') }), /prod\.yaml:\n {2}- vars\.vault\.approle\.secret: secret file .*two\.txt holds 2 lines; a secret must be a single line: remove the line breaks/],
    ['a file ending in a blank line', () => ({ file: secretFile('blank.txt', 'only-line\n\n') }), /vars\.vault\.approle\.secret: secret file .*blank\.txt holds 2 lines/],
    ['a file with a lone CR', () => ({ file: secretFile('cr.txt', 'cr-half-one\rcr-half-two') }), /secret file .*cr\.txt holds 2 lines/],
    ['an environment variable with a newline', () => {
      process.env.ROLLOUT_TEST_MULTILINE = 'first-half\nsecond-half';
      return { env: 'ROLLOUT_TEST_MULTILINE' };
    }, /vars\.vault\.approle\.secret: environment variable ROLLOUT_TEST_MULTILINE holds 2 lines/],
    ['a literal with a newline', () => 'first-half\nsecond-half', /vars\.vault\.approle\.secret: the value written in the inventory holds 2 lines/],
  ])('refuses %s, naming the inventory and key path, never the value', async (_name, ref, message) => {
    const err = await resolveSecret(ref(), 'vars.vault.approle.secret', inventory).then(() => null, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(message);
    expect(err!.message).not.toMatch(/first-half|second-half|only-line|cr-half/);
  });
});
