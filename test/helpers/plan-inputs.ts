import { fileURLToPath } from 'node:url';
import type { NodeTarget } from '../../src/inventory/load.js';
import type { ResolvedVars } from '../../src/inventory/secrets.js';
import { loadPlaybook } from '../../src/playbook/load.js';
import type { FileReader } from '../../src/plan/types.js';
import { sha256 } from '../../src/util/sha256.js';

/** The playbook rollout ships, as the tests' procedure. */
export const shippedPlaybook = () => loadPlaybook(fileURLToPath(new URL('../../playbooks/minkms-vault-hsm.yaml', import.meta.url)));

export const SECRET = 'secret-id-7f3a9c1e-do-not-print';
export const HSM_KEY = 'hsm:aes256:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=';

export function vars(disableLocalHsm = false): ResolvedVars {
  return {
    values: {
      vault: {
        server: 'https://vault.example.net:8200',
        approle: { id: 'role-4c1f', secret: SECRET },
        transit: { key: 'aistor-key-manager-hsm' },
      },
      disableLocalHsm,
    },
    secrets: [SECRET],
  };
}

export const node: NodeTarget = { name: 'kms-1', host: '127.0.0.1', port: 2201, user: 'root', knownHosts: '/dev/null', connectTimeoutMs: 1000, keepaliveMs: 5000, groups: [] };

export const ENV = `# MinIO KMS environment\nMINIO_KMS_HSM_KEY=${HSM_KEY}\nMINIO_KMS_VOLUME=/var/lib/minkms\nMINIO_KMS_OPTS="--host kms-1:7373 --config /etc/minkms/config.yaml"\n`;
export const CONFIG = 'version: v1\n# keep me\nadmin:\n  identity: h1:abc   # the admin\n';

/** An in-memory node: path -> content, every file root-owned 0640. */
export function reader(files: Record<string, string>): FileReader {
  return async (path) => {
    const text = files[path];
    if (text === undefined) return null;
    const content = Buffer.from(text);
    return { path, content, sha256: sha256(content), uid: 0, gid: 0, mode: 0o640 };
  };
}
