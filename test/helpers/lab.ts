// Access to the lab fleet from tests: the nodes' real files (through their
// overlay mounts), their journals over real ssh, knobs, and the rollout CLI.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const LAB_DIR = process.env.ROLLOUT_LAB_DIR ?? '/var/lib/rollout-lab';
export const BASE_PORT = Number(process.env.ROLLOUT_LAB_BASE_PORT ?? 2200);
/** The Vault double's port (a second lab runs its own: see lab.sh). */
export const VAULT_PORT = Number(process.env.ROLLOUT_LAB_VAULT_PORT ?? 8200);
/** Node i's minkms serves HTTPS on kms-i:KMS_BASE_PORT+i (see lab.sh's ROLLOUT_LAB_KMS_BASE_PORT). */
export const KMS_BASE_PORT = Number(process.env.ROLLOUT_LAB_KMS_BASE_PORT ?? 7300);
export const NODES = ['kms-1', 'kms-2', 'kms-3'] as const;
export type LabNode = (typeof NODES)[number];

/** A node's `--host` as the lab seeds it: HOST:PORT of its KMS API (the name is 127.0.0.1 on every node). */
export function kmsHost(node: LabNode): string {
  return `${node}:${KMS_BASE_PORT + Number(node.slice(4))}`;
}

/** The lab CA as every node holds it (it signed the Vault double's and the nodes' KMS certificates). */
export const NODE_LAB_CA = '/usr/local/share/ca-certificates/rollout-lab-ca.crt';

/** The AppRole secret the tests put in inventories; it must never show up in any output. */
export const LAB_SECRET = 'lab-approle-secret-5b8e2d71c0a94f36';

export function labScript(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('bash', [path.join(REPO, 'lab/lab.sh'), ...args], { maxBuffer: 16 << 20 });
}

/** Puts every node back to its seed files and a fresh healthy minkms, and the Vault double to its start. */
export async function resetLab(): Promise<void> {
  await vaultDouble.reset();
  await labScript('reset', 'all');
}

/** A file on a node, read through the node's overlay mount (what the node itself sees). */
export function nodeFile(node: LabNode, file: string): Buffer {
  return readFileSync(path.join(LAB_DIR, 'nodes', node, 'root', file));
}

export function nodeFileStat(node: LabNode, file: string): { uid: number; gid: number; mode: number } {
  const s = statSync(path.join(LAB_DIR, 'nodes', node, 'root', file));
  return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
}

/** The seed copy of a node's file as the lab wrote it (config.yaml or minkms.env). */
export function seedFile(node: LabNode, name: 'config.yaml' | 'minkms.env'): Buffer {
  return readFileSync(path.join(LAB_DIR, 'nodes', node, 'seed', name));
}

/** The lab's HSM key (a secret: tests check it is never printed). */
export function labHsmKey(): string {
  return readFileSync(path.join(LAB_DIR, 'hsm-key'), 'utf8').trim();
}

/** Where the lab keeps the MinKMS admin (SysAdmin) API key, k1:... (0600; the seeds' admin.identity is its h1:). */
export const LAB_ADMIN_KEY_FILE = path.join(LAB_DIR, 'kms-admin-key');

/** The lab's MinKMS admin API key (a secret: pass it by env or stdin, never print it or put it on a command line). */
export function labAdminKey(): string {
  return readFileSync(LAB_ADMIN_KEY_FILE, 'utf8').trim();
}

export function setKnob(node: LabNode, knob: string, value = ''): void {
  const dir = path.join(LAB_DIR, 'nodes', node, 'knobs');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, knob), value);
}

export function clearKnob(node: LabNode, knob: string): void {
  rmSync(path.join(LAB_DIR, 'nodes', node, 'knobs', knob), { force: true });
}

/** Runs a command on a node as root over the lab's ssh (the real client). */
export async function onNode(node: LabNode, command: string): Promise<string> {
  const port = BASE_PORT + Number(node.slice(4));
  const { stdout } = await run('ssh', [
    '-i', path.join(LAB_DIR, 'id_ed25519'),
    '-o', `UserKnownHostsFile=${path.join(LAB_DIR, 'known_hosts')}`,
    '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
    '-p', String(port), 'root@127.0.0.1', command,
  ], { maxBuffer: 16 << 20 });
  return stdout;
}

/**
 * Restarts minkms on a node and waits (bounded, 20 s) until this start logged its ready line; rejects
 * with the unit's last lines when it does not. Knobs set before are read by this start.
 */
export async function restartMinkms(node: LabNode): Promise<void> {
  await onNode(node, [
    'C=$(journalctl -n 0 --show-cursor -q | sed -n "s/^-- cursor: //p")',
    'systemctl restart minkms',
    'for i in $(seq 1 400); do journalctl -u minkms --after-cursor="$C" -o cat --no-pager | grep -q "Server is up and running" && exit 0; sleep 0.05; done',
    'journalctl -u minkms --after-cursor="$C" -o cat --no-pager | tail -n 5 >&2; exit 1',
  ].join('\n'));
}

/** The unit's state as systemd reports it. */
export async function serviceState(node: LabNode): Promise<Record<string, string>> {
  const text = await onNode(node, 'systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID minkms');
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

export type JournalLine = { us: number; message: string; pid: string; invocation: string | undefined };

/** minkms journal entries of a node (service and systemd lines), oldest first, colour codes stripped. */
export async function journal(node: LabNode): Promise<JournalLine[]> {
  return (await unitJournal(node, 'minkms')).map((l) => ({ ...l, message: l.message.replace(/\x1b\[[0-9;]*m/g, '') }));
}

export type InventoryOptions = {
  nodes?: readonly LabNode[];
  user?: string;
  knownHosts?: string;
  disableLocalHsm?: boolean;
  /** YAML for the secret; default: from the ROLLOUT_E2E_SECRET env var rollout() sets. */
  secret?: string;
  roleId?: string;
  /** Which auth blocks to write (both/none are invalid on purpose). */
  auth?: 'approle' | 'kubernetes' | 'both' | 'none';
  /** vars.cluster as a YAML flow map, e.g. `{ apiKey: { env: ROLLOUT_E2E_KMS_KEY } }` (rollout() sets that variable to the lab's admin key). */
  cluster?: string;
};

/** The section rollout appends to every lab node's config (the secret is the tests' own). */
export const VAULT_BLOCK = `hsm:
  vault:
    server: https://localhost:${VAULT_PORT}
    approle:
      id: 3f1c2a9e-lab-role
      secret: ${LAB_SECRET}
    transit:
      key: aistor-key-manager-hsm
`;

/** Which state a node's config is in: its seed (`old`) or the seed plus VAULT_BLOCK (`new`); anything else (a partial file) throws. */
export function configState(node: LabNode): 'old' | 'new' {
  const now = nodeFile(node, 'etc/minkms/config.yaml').toString();
  const seed = seedFile(node, 'config.yaml').toString();
  if (now === seed) return 'old';
  if (now === seed + VAULT_BLOCK) return 'new';
  throw new Error(`${node}: config is neither the old nor the new content:\n${now}`);
}

/** The Vault double's address as the nodes and rollout see it, and the CA that signed it. */
export const VAULT_SERVER = `https://localhost:${VAULT_PORT}`;
export const VAULT_ADMIN = `http://127.0.0.1:${process.env.ROLLOUT_LAB_VAULT_ADMIN_PORT ?? 8201}`;
export const VAULT_CA = path.join(LAB_DIR, 'vault-tls', 'ca.pem');

/** Writes an inventory for the lab into a fresh temp dir; the secret comes from an env var. */
export function writeInventory(opts: InventoryOptions = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-e2e-'));
  const nodes = (opts.nodes ?? NODES).map((n) => `  - { name: ${n}, host: 127.0.0.1, port: ${BASE_PORT + Number(n.slice(4))} }`).join('\n');
  const auth = opts.auth ?? 'approle';
  const approle = `    approle:
      id: ${opts.roleId ?? '3f1c2a9e-lab-role'}
      secret: ${opts.secret ?? '{ env: ROLLOUT_E2E_SECRET }'}
`;
  const kubernetes = `    kubernetes:
      role: minkms
      jwt: { env: ROLLOUT_E2E_SECRET }
`;
  const file = path.join(dir, 'inventory.yaml');
  writeFileSync(file, `version: v1
ssh:
  user: ${opts.user ?? 'root'}
  identityFile: ${path.join(LAB_DIR, 'id_ed25519')}
  knownHosts: ${opts.knownHosts ?? path.join(LAB_DIR, 'known_hosts')}
nodes:
${nodes}
preflight:
  vaultCaFile: ${VAULT_CA}
vars:
  vault:
    server: ${VAULT_SERVER}
${auth === 'approle' || auth === 'both' ? approle : ''}${auth === 'kubernetes' || auth === 'both' ? kubernetes : ''}    transit:
      key: aistor-key-manager-hsm
  disableLocalHsm: ${opts.disableLocalHsm ?? false}
${opts.cluster ? `  cluster: ${opts.cluster}\n` : ''}`);
  return file;
}

/** The Vault double's admin API: its state is what the tests change (seal it, drop a capability). */
export const vaultDouble = {
  async reset(): Promise<void> {
    const r = await fetch(`${VAULT_ADMIN}/reset`, { method: 'POST' });
    if (!r.ok) throw new Error(`vault double reset: HTTP ${r.status}`);
  },
  async update(change: (state: VaultState) => void): Promise<void> {
    const state = (await (await fetch(`${VAULT_ADMIN}/state`)).json()) as VaultState;
    change(state);
    const r = await fetch(`${VAULT_ADMIN}/state`, { method: 'PUT', body: JSON.stringify(state), headers: { 'content-type': 'application/json' } });
    if (!r.ok) throw new Error(`vault double state: HTTP ${r.status}`);
  },
  async requests(): Promise<Array<{ method: string; path: string; namespace: string; status: number; agent: string }>> {
    return (await (await fetch(`${VAULT_ADMIN}/requests`)).json()) as Array<{ method: string; path: string; namespace: string; status: number; agent: string }>;
  },
};

/** The double's state (see lab/vault-double.mjs). */
export type VaultState = {
  sealed: boolean;
  initialized: boolean;
  standby: boolean;
  namespaces: Record<string, {
    approle?: { mount: string; roles: Record<string, { secret_id: string; policies: string[]; secret_id_num_uses?: number }> };
    kubernetes?: { mount: string; roles: Record<string, { jwt: string; policies: string[] }> };
    policies?: Record<string, Record<string, string[]>>;
    transit?: { mount: string; keys: string[] };
  }>;
};

export type CliRun = { code: number | null; stdout: string; stderr: string };

/** Every byte any rollout run printed in this test process, for the no-secret checks. */
export const allOutput: string[] = [];

/** Runs the built CLI as a user would (no TTY), with the lab secret in its environment. */
export function rollout(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO, 'dist/cli/main.js'), ...args], {
      env: { ...process.env, ROLLOUT_E2E_SECRET: LAB_SECRET, ...(existsSync(LAB_ADMIN_KEY_FILE) ? { ROLLOUT_E2E_KMS_KEY: labAdminKey() } : {}), CI: 'true', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      allOutput.push(stdout, stderr);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The password of `pwsudo`, a login addPasswordSudoUser creates whose sudo asks for it. */
export const SUDO_PASSWORD = 'sudo-pass-81c2d7';

/**
 * Creates (or refreshes) `pwsudo` on a node: the lab key logs it in, and its sudo asks for SUDO_PASSWORD.
 * Any sudo timestamp it cached is removed. `sharedTimestamp`: sudo keeps one timestamp for all of
 * pwsudo's sessions (timestamp_type=global), so a password given in one ssh session is cached for the next.
 */
export async function addPasswordSudoUser(node: LabNode, opts: { sharedTimestamp?: boolean } = {}): Promise<void> {
  const sudoers = `pwsudo ALL=(ALL) ALL\\n${opts.sharedTimestamp ? 'Defaults:pwsudo timestamp_type=global\\n' : ''}`;
  await onNode(node, [
    'id pwsudo >/dev/null 2>&1 || useradd -m -s /bin/bash pwsudo',
    `printf 'pwsudo:%s\\n' ${SUDO_PASSWORD} | chpasswd`,
    `printf '${sudoers}' > /etc/sudoers.d/pwsudo && chmod 0440 /etc/sudoers.d/pwsudo`,
    'rm -f /run/sudo/ts/pwsudo',
    'install -d -m 0700 -o pwsudo -g pwsudo /home/pwsudo/.ssh',
    'install -m 0600 -o pwsudo -g pwsudo /root/.ssh/authorized_keys /home/pwsudo/.ssh/authorized_keys',
  ].join(' && '));
}

/** A snapshot of what matters on every node, to prove a run changed nothing. */
export async function fleetSnapshot(): Promise<Record<string, unknown>> {
  const snap: Record<string, unknown> = {};
  for (const n of NODES) {
    const s = await serviceState(n);
    snap[n] = {
      config: nodeFile(n, 'etc/minkms/config.yaml').toString('base64'),
      env: nodeFile(n, 'etc/default/minkms').toString('base64'),
      configStat: nodeFileStat(n, 'etc/minkms/config.yaml'),
      envStat: nodeFileStat(n, 'etc/default/minkms'),
      invocation: s.InvocationID,
      restarts: s.NRestarts,
      backups: await onNode(n, 'ls -A /var/backups/rollout 2>/dev/null || true'),
    };
  }
  return snap;
}

/** A rollout run in the background, for injecting a fault at a chosen moment. */
export type LiveRun = {
  child: ReturnType<typeof spawn>;
  /** Resolves once the output so far matches (bounded: rejects after `timeoutMs`). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  done: Promise<CliRun>;
  /** Everything printed so far (stdout then stderr). */
  output(): string;
};

/** Starts the CLI like rollout() but returns at once, with a way to wait for its output. */
export function startRollout(args: readonly string[], env: Record<string, string> = {}): LiveRun {
  const child = spawn(process.execPath, [path.join(REPO, 'dist/cli/main.js'), ...args], {
    env: { ...process.env, ROLLOUT_E2E_SECRET: LAB_SECRET, CI: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (w.pattern.test(stdout + stderr)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    check();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  const done = new Promise<CliRun>((resolve) => {
    child.on('close', (code, signal) => {
      allOutput.push(stdout, stderr);
      resolve({ code: code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : 15) : null), stdout, stderr });
    });
  });
  return {
    child,
    done,
    output: () => `${stdout}\n${stderr}`,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`rollout never printed ${pattern}; output so far:\n${stdout}\n${stderr}`)), timeoutMs);
        waiters.push({ pattern, resolve: () => { clearTimeout(timer); resolve(); } });
        check();
        void done.then(() => setTimeout(() => { clearTimeout(timer); reject(new Error(`rollout ended before printing ${pattern}:\n${stdout}\n${stderr}`)); }, 0));
      });
    },
  };
}

/** Waits (bounded) until a file appears on a node's file system, e.g. a marker a fault shim writes. */
export async function waitForNodeFile(node: LabNode, file: string, timeoutMs = 60_000): Promise<void> {
  const full = path.join(LAB_DIR, 'nodes', node, 'root', file);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(full)) {
    if (Date.now() > deadline) throw new Error(`${node}:${file} never appeared`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---- greeter: the lab's second service (lab/greeter-sim.mjs), for playbooks/greeter-settings.yaml.

/** greeter's seed copy of a node's file as the lab wrote it: `config` (/etc/greeter/config.yaml) or `env` (/etc/default/greeter). */
export function greeterSeed(node: LabNode, which: 'config' | 'env'): Buffer {
  return readFileSync(path.join(LAB_DIR, 'nodes', node, 'seed', which === 'config' ? 'greeter.yaml' : 'greeter.env'));
}

/** A unit's state on a node as systemd reports it (serviceState is minkms's). */
export async function unitState(node: LabNode, unit: string): Promise<Record<string, string>> {
  const text = await onNode(node, `systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID ${unit}`);
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** A unit's journal entries on a node (service and systemd lines), oldest first, as journal() reads minkms's. */
export async function unitJournal(node: LabNode, unit: string): Promise<JournalLine[]> {
  const text = await onNode(node, `journalctl -u ${unit} -o json --no-pager`);
  return text.trim().split('\n').filter(Boolean).map((l) => {
    const o = JSON.parse(l) as Record<string, string>;
    // journald stores a line holding ANSI escapes as an array of bytes.
    const raw: unknown = o.MESSAGE;
    const message = Array.isArray(raw) ? Buffer.from(raw as number[]).toString('utf8') : typeof raw === 'string' ? raw : '';
    return {
      us: Number(o.__REALTIME_TIMESTAMP),
      message,
      pid: o._PID ?? '',
      invocation: o._PID === '1' ? o.INVOCATION_ID : o._SYSTEMD_INVOCATION_ID,
    };
  });
}

/** What the running greeter serves on its socket (its greeting), asked on the node. */
export async function greeterSays(node: LabNode): Promise<string> {
  return (await onNode(node, 'curl -sS --max-time 5 --unix-socket /run/greeter/greeter.sock http://greeter/')).trim();
}

/** Writes an inventory for the lab that names playbooks/greeter-settings.yaml, the greeting as its var; no Vault. */
export function writeGreeterInventory(opts: { greeting: string; nodes?: readonly LabNode[] }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-e2e-greeter-'));
  const nodes = (opts.nodes ?? NODES).map((n) => `  - { name: ${n}, host: 127.0.0.1, port: ${BASE_PORT + Number(n.slice(4))} }`).join('\n');
  const file = path.join(dir, 'inventory.yaml');
  writeFileSync(file, `version: v1
playbook: ${path.join(REPO, 'playbooks/greeter-settings.yaml')}
ssh:
  user: root
  identityFile: ${path.join(LAB_DIR, 'id_ed25519')}
  knownHosts: ${path.join(LAB_DIR, 'known_hosts')}
nodes:
${nodes}
vars:
  greeting: ${JSON.stringify(opts.greeting)}
`);
  return file;
}
