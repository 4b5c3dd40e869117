import { UsageError } from '../../errors.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';

/** Pure. `host`, `host:port` or `[v6]:port` to YAML flow-map fields. */
function nodeLine(spec: string): string {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d+))?$/.exec(spec);
  if (!m) throw new UsageError(`"${spec}" is not a host name or host:port`);
  const host = m[1] ?? m[2]!;
  const name = host.split('.')[0]!;
  const port = m[3] ? `, port: ${Number(m[3])}` : '';
  return `  - { name: ${JSON.stringify(name)}, host: ${JSON.stringify(host)}${port} }`;
}

/**
 * Pure. A commented starter inventory for these hosts: every key the format
 * has, the ones to fill in marked, the secret taken from the environment.
 */
export function starterInventory(hosts: readonly string[]): string {
  return `# rollout inventory: move MinKMS's HSM key into HashiCorp Vault's transit engine.
# Written by \`rollout init\`. Fill in every REPLACE line, then:
#   rollout check THIS-FILE      # offline: schema, secrets, keys, known_hosts
#   rollout plan THIS-FILE       # reads every node, prints the diffs, changes nothing
version: v1

ssh:
  user: root                       # anyone else runs node commands through \`sudo -k -n\`
  # identityFile: ~/.ssh/id_ed25519  # omit to use ssh-agent ($SSH_AUTH_SOCK)
  knownHosts: ~/.ssh/known_hosts   # every node's host key must be there (ssh-keyscan, verified)
  # port: 22
  # connectTimeoutSeconds: 15
  # keepaliveSeconds: 5

# parallel: 16                     # nodes connected to and read at once

nodes:                             # restarted in this order, one at a time
${hosts.map(nodeLine).join('\n')}
  # per node, optionally: port, user, identityFile, envFile (/etc/default/minkms), configFile

# backups: { keep: 5 }             # runs of backups kept on each node
# secretFiles: { othersReadable: refuse }   # a config others can read (o+r) gets the Vault secret:
#                                  #   refuse (the node is not planned) | tighten (written 0640-style) | allow
# lock: { staleMinutes: 60 }       # a lock this old, holder gone, may be broken (--break-lock)

preflight:
  # vaultCaFile: /etc/ssl/certs/vault-ca.pem   # CA for rollout's own Vault checks, if private
  vaultTimeoutSeconds: 10

vars:
  vault:
    server: https://REPLACE-vault.example.net:8200   # as the nodes reach Vault
    approle:
      id: REPLACE-with-the-approle-role-id
      secret: { env: MINKMS_VAULT_SECRET_ID }  # or { file: path }; never the value itself
      # namespace: admin
      # path: approle
    # kubernetes:                  # instead of approle
    #   role: minkms
    #   jwt: /var/run/secrets/kubernetes.io/serviceaccount/token
    transit:
      key: REPLACE-with-the-transit-key-name
      # path: transit
  disableLocalHsm: false           # true: after Vault is proven on every node, remove MINIO_KMS_HSM_KEY
`;
}

/** `rollout init HOST...`: prints a starter inventory to stdout (redirect it to a file). */
export async function initCommand(hosts: readonly string[], io: Output): Promise<number> {
  if (hosts.length === 0) throw new UsageError('rollout init needs the nodes\' hosts, in restart order: rollout init kms-1 kms-2 kms-3 > inventories/prod.yaml');
  io.out(starterInventory(hosts).trimEnd());
  return EXIT.ok;
}
