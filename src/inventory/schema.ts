import { z } from 'zod';

/**
 * Where a secret comes from: a literal string, `{ env: NAME }` or `{ file: path }`
 * (relative to the inventory). Resolved only when needed, never stored or printed.
 */
export const SecretRefSchema = z.union([
  z.string().min(1),
  z.strictObject({ env: z.string().min(1) }),
  z.strictObject({ file: z.string().min(1) }),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

const name = z.string().min(1);

/** A path on a node: absolute, no `..` component (a backup would land outside its root), no newline. */
const nodePath = z
  .string()
  .startsWith('/', 'must be an absolute path')
  .refine((p) => !p.split('/').includes('..'), 'a ".." component is not allowed: write the path without it')
  .refine((p) => !/[\n\0]/.test(p), 'a newline is not allowed in a path');

export const SshSchema = z.strictObject({
  /** Login user (default: ~/.ssh/config's User, else root); anyone but root runs the node commands through `sudo -k -n`. */
  user: name.optional(),
  /** Default: ~/.ssh/config's Port, else 22. */
  port: z.number().int().min(1).max(65535).optional(),
  identityFile: z.string().min(1).optional(),
  /** OpenSSH client config read for every node's alias (Host, HostName, User, Port, IdentityFile, ProxyJump); `none`: none. */
  config: z.string().min(1).default('~/.ssh/config'),
  /** sudo's password for a non-root login, when sudo asks for one (else it is asked for on the terminal). */
  sudoPassword: SecretRefSchema.optional(),
  /** A jump host for every node: `[user@]host[:port]` or a Host alias of the ssh config. */
  proxyJump: z.string().min(1).optional(),
  knownHosts: z.string().min(1).default('~/.ssh/known_hosts'),
  connectTimeoutSeconds: z.number().positive().max(600).default(15),
  /** A node that answers no keepalive for 3 of these intervals is treated as cut off. */
  keepaliveSeconds: z.number().positive().max(600).default(5),
});
export type SshSettings = z.infer<typeof SshSchema>;

export const NodeSchema = z.strictObject({
  /** Defaults to `host`; must be unique in the inventory. */
  name: name.optional(),
  host: name,
  port: z.number().int().min(1).max(65535).optional(),
  user: name.optional(),
  identityFile: z.string().min(1).optional(),
  /** Overrides the playbook's env file path on this node. */
  envFile: nodePath.optional(),
  /** Overrides the config path otherwise taken from `--config` in the env file. */
  configFile: nodePath.optional(),
  /** A jump host for this node (overrides ssh.proxyJump and the ssh config's ProxyJump). */
  proxyJump: z.string().min(1).optional(),
  /** Names `--limit` can select this node by (with others: `--limit eu-west`). */
  groups: z.array(z.string().regex(/^[\w.-]+$/, 'letters, digits, ".", "_" and "-" only')).default([]),
});
export type NodeEntry = z.infer<typeof NodeSchema>;

const optionalName = z.string().min(1).optional();

export const AppRoleSchema = z.strictObject({
  id: name,
  secret: SecretRefSchema,
  namespace: optionalName,
  path: optionalName,
});

export const KubernetesSchema = z.strictObject({
  role: name,
  /** The service-account JWT itself or a path to it on the node (as MinKMS reads it). */
  jwt: SecretRefSchema,
  namespace: optionalName,
  path: optionalName,
});

export const VaultSchema = z
  .strictObject({
    server: z.string().regex(/^https?:\/\/[^/\s]+/, 'must be a URL like https://vault.example.net:8200'),
    approle: AppRoleSchema.optional(),
    kubernetes: KubernetesSchema.optional(),
    transit: z.strictObject({ key: name, namespace: optionalName, path: optionalName }),
  })
  .superRefine((v, ctx) => {
    const set = [v.approle && 'approle', v.kubernetes && 'kubernetes'].filter(Boolean);
    if (set.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: set.length === 0
          ? 'set exactly one authentication method: `approle` or `kubernetes` (neither is set)'
          : 'set exactly one authentication method: `approle` or `kubernetes` (both are set)',
      });
    }
  });
export type VaultVars = z.infer<typeof VaultSchema>;

/**
 * rollout's own view of the MinKMS cluster, never a value a playbook may use.
 * `insecure` skips TLS verification of a node's own API (only for a listener
 * whose certificate the node cannot verify); `readyTimeoutSeconds` bounds the
 * wait for /v1/health/ready after a restart (default: what is left of the
 * gate's timeout). `apiKey` (a SysAdmin `k1:` key, from the environment or a
 * file only) turns on membership, nodes-down and leader checks through `cli`
 * on a node; `backup` then takes a `minkms backup` into `backupDir` on one
 * node before the first change.
 */
export const ClusterSchema = z
  .strictObject({
    insecure: z.boolean().default(false),
    readyTimeoutSeconds: z.number().positive().max(3600).optional(),
    apiKey: z.union([z.strictObject({ env: z.string().min(1) }), z.strictObject({ file: z.string().min(1) })], {
      message: 'give the API key as { env: NAME } or { file: PATH }; a key written in the inventory would end up in every copy of it',
    }).optional(),
    cli: nodePath.default('/usr/local/bin/minkms'),
    backup: z.boolean().default(false),
    backupDir: nodePath.default('/var/backups/minkms'),
  })
  .superRefine((c, ctx) => {
    if (c.backup && c.apiKey === undefined) {
      ctx.addIssue({ code: 'custom', path: ['backup'], message: '`minkms backup` needs a SysAdmin API key: set vars.cluster.apiKey, or remove backup: true' });
    }
  });
export type ClusterSettings = z.infer<typeof ClusterSchema>;

/**
 * The playbook's inputs. `vault` and `disableLocalHsm` are the shipped minkms
 * playbook's (`vault` required only by a playbook that uses it), `cluster` is
 * rollout's own; any other key is a var of the playbook's own, passed as
 * written, and must be one the playbook uses (loadInventory checks that, so a
 * misspelt var is still an error).
 */
export const VarsSchema = z.strictObject({
  vault: VaultSchema.optional(),
  /** true: after Vault is proven on every node, phase 2 removes the local HSM key. */
  disableLocalHsm: z.boolean().default(false),
  cluster: ClusterSchema.optional(),
}).catchall(z.unknown());
export type Vars = z.infer<typeof VarsSchema>;

export const PreflightSchema = z.strictObject({
  /** PEM CA bundle rollout trusts for its own Vault checks (besides Node's bundled roots). */
  vaultCaFile: z.string().min(1).optional(),
  vaultTimeoutSeconds: z.number().positive().max(300).default(10),
});

/**
 * What planning does with a file that will hold a secret of the inventory (the
 * Vault secret in the config) while others can read it (mode o+r): `refuse`
 * the node (the default), `tighten` the mode (others' bits dropped, owner and
 * group kept: 0644 becomes 0640), or `allow` it (the plan warns).
 */
export const SecretFilesSchema = z.strictObject({
  othersReadable: z.enum(['refuse', 'tighten', 'allow']).default('refuse'),
});
export type SecretFilesPolicy = z.infer<typeof SecretFilesSchema>;

export const InventorySchema = z.strictObject({
  version: z.literal('v1'),
  /** Relative to the inventory file; defaults to the bundled minkms-vault-hsm playbook. */
  playbook: z.string().min(1).optional(),
  ssh: SshSchema.default(SshSchema.parse({})),
  /** How many nodes are connected to and read at once while planning. */
  parallel: z.number().int().min(1).max(512).default(16),
  nodes: z.array(NodeSchema).min(1),
  backups: z.strictObject({
    /** Backups of this many runs are kept on each node; older ones are deleted after a successful run. */
    keep: z.number().int().min(1).max(1000).default(5),
  }).default({ keep: 5 }),
  lock: z.strictObject({
    /** A lock older than this whose holder is gone may be broken with --break-lock. */
    staleMinutes: z.number().positive().max(100_000).default(60),
  }).default({ staleMinutes: 60 }),
  /** How `rollout preflight` (and apply's preflight) reaches Vault from this machine. */
  preflight: PreflightSchema.default({ vaultTimeoutSeconds: 10 }),
  secretFiles: SecretFilesSchema.default({ othersReadable: 'refuse' }),
  vars: VarsSchema,
});
export type InventoryFile = z.infer<typeof InventorySchema>;
