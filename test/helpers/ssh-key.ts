import ssh2 from 'ssh2';

const { utils } = ssh2;

/**
 * A fresh Ed25519 private key in OpenSSH format that ssh2 itself can read.
 * ssh2's generateKeyPairSync now and then (about 1 key in 250) writes a public
 * half that lost a leading zero byte, which its own parser then refuses as
 * malformed: such a key is generated again.
 */
export function ed25519Key(opts: { passphrase: string; cipher: string; rounds: number } | undefined = undefined): string {
  for (let i = 0; i < 20; i++) {
    const key = (opts ? utils.generateKeyPairSync('ed25519', opts) : utils.generateKeyPairSync('ed25519')).private;
    if (!(utils.parseKey(key, opts?.passphrase) instanceof Error)) return key;
  }
  throw new Error('ssh2 generated 20 Ed25519 keys it cannot read');
}
