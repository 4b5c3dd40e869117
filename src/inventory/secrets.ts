import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../errors.js';
import { expandPath } from './load.js';
import type { SecretRef, Vars } from './schema.js';

/** The `hsm.vault` section as written to the config: secrets resolved, optional keys only when set. */
export type VaultSection = {
  server: string;
  approle?: { id: string; secret: string; namespace?: string; path?: string };
  kubernetes?: { role: string; jwt: string; namespace?: string; path?: string };
  transit: { key: string; namespace?: string; path?: string };
};

/** Variables the playbook may reference, secrets resolved, plus the secret values for redaction. */
export type ResolvedVars = {
  values: Record<string, unknown> & { vault?: VaultSection };
  /** Every secret value resolved; any output passes through a redactor built from these. */
  secrets: string[];
  /** vars.cluster.apiKey resolved (rollout's own, never a playbook value), and where it came from for messages. */
  cluster?: { apiKey: string; keyRef: string };
};

/** Pure. A secret reference as messages name it (never its value): `env NAME`, `file PATH`, or `the inventory`. */
export function describeRef(ref: SecretRef): string {
  if (typeof ref === 'string') return 'the value written in the inventory';
  return 'env' in ref ? `environment variable ${ref.env}` : `file ${ref.file}`;
}

/**
 * Resolves a secret reference. A missing variable, an unreadable file or a
 * value of several lines is an InputError naming the inventory file and key
 * path; the value itself never appears in an error. A file's single trailing
 * newline is not part of its secret.
 */
export async function resolveSecret(ref: SecretRef, keyPath: string, inventoryFile: string): Promise<string> {
  if (typeof ref === 'string') return singleLine(ref, keyPath, 'the value written in the inventory', inventoryFile);
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (value === undefined || value === '') {
      throw new InputError(inventoryFile, [
        `${keyPath}: environment variable ${ref.env} is not set (or empty); export it before running rollout`,
      ]);
    }
    return singleLine(value, keyPath, `environment variable ${ref.env}`, inventoryFile);
  }
  const file = expandPath(ref.file, path.dirname(inventoryFile));
  let value: string;
  try {
    value = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new InputError(inventoryFile, [`${keyPath}: cannot read secret file ${file} (${why}); check the path and its permissions`]);
  }
  if (value === '') throw new InputError(inventoryFile, [`${keyPath}: cannot read secret file ${file} (it is empty); check the path and its permissions`]);
  return singleLine(value, keyPath, `secret file ${file}`, inventoryFile);
}

// A secret of several lines is refused: the config's YAML would carry it as a
// block scalar whose lines the diff shows one by one, where no redaction of the
// whole value can find them (and no supported secret has a line break).
function singleLine(value: string, keyPath: string, source: string, inventoryFile: string): string {
  if (!/[\r\n]/.test(value)) return value;
  const lines = value.split(/\r?\n|\r/).length;
  throw new InputError(inventoryFile, [
    `${keyPath}: ${source} holds ${lines} lines; a secret must be a single line: remove the line breaks (a file may end with one newline)`,
  ]);
}

/**
 * Builds the values the playbook sees. `vault` (when set) holds exactly the keys
 * of the procedure's `hsm.vault` section, in its order; optional keys only when
 * given. A playbook's own vars pass as written; `cluster` never does.
 */
export async function resolveVars(vars: Vars, inventoryFile: string): Promise<ResolvedVars> {
  const secrets: string[] = [];
  const secret = async (ref: SecretRef, keyPath: string) => {
    const value = await resolveSecret(ref, keyPath, inventoryFile);
    secrets.push(value);
    return value;
  };
  // Everything but rollout's own settings reaches the playbook as written.
  const { vault, disableLocalHsm, cluster: _cluster, ...own } = vars;
  if (!vault) return { values: { ...own, disableLocalHsm }, secrets, ...(await clusterKey(vars, secret, inventoryFile)) };
  const auth = vault.approle
    ? {
        approle: compact({
          id: vault.approle.id,
          secret: await secret(vault.approle.secret, 'vars.vault.approle.secret'),
          namespace: vault.approle.namespace,
          path: vault.approle.path,
        }),
      }
    : {
        kubernetes: compact({
          role: vault.kubernetes!.role,
          jwt: await secret(vault.kubernetes!.jwt, 'vars.vault.kubernetes.jwt'),
          namespace: vault.kubernetes!.namespace,
          path: vault.kubernetes!.path,
        }),
      };
  // compact() only drops undefined optional keys, so the shape is VaultSection's.
  const section = {
    server: vault.server,
    ...auth,
    transit: compact({ key: vault.transit.key, namespace: vault.transit.namespace, path: vault.transit.path }),
  } as VaultSection;
  return { values: { ...own, vault: section, disableLocalHsm }, secrets, ...(await clusterKey(vars, secret, inventoryFile)) };
}

// vars.cluster.apiKey resolved (a secret), when set.
async function clusterKey(vars: Vars, secret: (ref: SecretRef, keyPath: string) => Promise<string>, inventoryFile: string): Promise<{ cluster?: { apiKey: string; keyRef: string } }> {
  const key = vars.cluster?.apiKey;
  const cluster = key ? { apiKey: await secret(key, 'vars.cluster.apiKey'), keyRef: `vars.cluster.apiKey (${describeRef(key)})` } : undefined;
  if (cluster && !/^k1:\S+$/.test(cluster.apiKey)) {
    throw new InputError(inventoryFile, [`${cluster.keyRef}: does not hold a MinKMS API key (one word starting with "k1:"); give the SysAdmin key \`minkms\` printed or issued`]);
  }
  return cluster ? { cluster } : {};
}

function compact<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
