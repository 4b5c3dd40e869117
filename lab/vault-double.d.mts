// Types for lab/vault-double.mjs, the Vault test double (see lab/README.md).

/** A Vault ACL capability. */
export type VaultCapability = 'create' | 'read' | 'update' | 'patch' | 'delete' | 'list' | 'sudo' | 'deny' | 'root';

/** Path (relative to the namespace; a trailing `*` is a prefix glob) -> capabilities. */
export type VaultPolicy = Record<string, VaultCapability[] | { capabilities: VaultCapability[] }>;

export type VaultApproleRole = {
  secret_id: string;
  policies?: string[];
  /** > 0: that many logins with this secret, then `invalid role or secret ID`. 0: unlimited. */
  secret_id_num_uses?: number;
};

export type VaultKubernetesRole = {
  jwt: string;
  policies?: string[];
};

/** One namespace; every part is optional (a missing auth method or transit mount has no route). */
export type VaultNamespaceState = {
  /** Roles keyed by role_id. */
  approle?: { mount?: string; roles: Record<string, VaultApproleRole> };
  /** Roles keyed by role name. */
  kubernetes?: { mount?: string; roles: Record<string, VaultKubernetesRole> };
  /** A policy named `root` is never looked up: it grants everything. `default` is built in unless defined here. */
  policies?: Record<string, VaultPolicy>;
  transit?: { mount?: string; keys: string[] };
};

/** The double's whole state: its config file, and what the admin API's GET/PUT /state carry. */
export type VaultDoubleState = {
  sealed?: boolean;
  initialized?: boolean;
  standby?: boolean;
  /** `""` is the root namespace; others by name without leading/trailing `/` (`ns-1`, `a/b`). */
  namespaces: Record<string, VaultNamespaceState>;
};

/** One Vault API request as the admin API's GET /requests lists it (no bodies, no tokens). */
export type VaultDoubleRequest = {
  method: string;
  /** URL path without the query, e.g. `/v1/transit/hmac/aistor-key-manager-hsm`. */
  path: string;
  /** From X-Vault-Namespace, normalised: `""` for the root namespace. */
  namespace: string;
  status: number;
  /** The User-Agent header (`curl/...` from a node's reach check; empty from rollout's own Node client). */
  agent: string;
};

export type VaultDoubleOptions = {
  /** A state object, or the path of a JSON file holding one. */
  config: VaultDoubleState | string;
  /** Vault API port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Admin API port on 127.0.0.1; 0 (the default) picks a free one. */
  adminPort?: number;
  /** Serve HTTPS with DIR/server.pem and DIR/server-key.pem; plain HTTP without. */
  tlsDir?: string;
  /** Receives one line per Vault request (method, path, namespace, status). Default: silent. */
  log?: (line: string) => void;
};

export type VaultDouble = {
  /** e.g. `http://127.0.0.1:40123` (`https://` with tlsDir). */
  readonly url: string;
  /** e.g. `http://127.0.0.1:40124`. */
  readonly adminUrl: string;
  /** Stops both listeners and drops open connections. */
  close(): Promise<void>;
};

/** Starts a double on 127.0.0.1; rejects on an invalid config or a port in use. */
export function startVaultDouble(options: VaultDoubleOptions): Promise<VaultDouble>;

/** The lab fleet's state (role `3f1c2a9e-lab-role`, transit key `aistor-key-manager-hsm`) with the given secret ID. */
export function labDefaultState(secretId: string): VaultDoubleState;
