// Access to the lab fleet from tests: the nodes' real files (through their
// overlay mounts), their journals over real ssh, knobs, and the rollout CLI.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const LAB_DIR = process.env.ROLLOUT_LAB_DIR ?? '/var/lib/rollout-lab';
export const BASE_PORT = Number(process.env.ROLLOUT_LAB_BASE_PORT ?? 2200);
export const NODES = ['kms-1', 'kms-2', 'kms-3'] as const;
export type LabNode = (typeof NODES)[number];

/** The AppRole secret the tests put in inventories; it must never show up in any output. */
export const LAB_SECRET = 'lab-approle-secret-5b8e2d71c0a94f36';

export function labScript(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('bash', [path.join(REPO, 'lab/lab.sh'), ...args], { maxBuffer: 16 << 20 });
}

/** Puts every node back to its seed files and a fresh healthy minkms. */
export async function resetLab(): Promise<void> {
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

/** The unit's state as systemd reports it. */
export async function serviceState(node: LabNode): Promise<Record<string, string>> {
  const text = await onNode(node, 'systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID minkms');
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

export type JournalLine = { us: number; message: string; pid: string; invocation: string | undefined };

/** minkms journal entries of a node (service and systemd lines), oldest first. */
export async function journal(node: LabNode): Promise<JournalLine[]> {
  const text = await onNode(node, 'journalctl -u minkms -o json --no-pager');
  return text.trim().split('\n').filter(Boolean).map((l) => {
    const o = JSON.parse(l) as Record<string, string>;
    // journald stores a line holding ANSI escapes as an array of bytes.
    const raw: unknown = o.MESSAGE;
    const message = Array.isArray(raw) ? Buffer.from(raw as number[]).toString('utf8') : typeof raw === 'string' ? raw : '';
    return {
      us: Number(o.__REALTIME_TIMESTAMP),
      message: message.replace(/\x1b\[[0-9;]*m/g, ''),
      pid: o._PID ?? '',
      invocation: o._PID === '1' ? o.INVOCATION_ID : o._SYSTEMD_INVOCATION_ID,
    };
  });
}

export type InventoryOptions = {
  nodes?: readonly LabNode[];
  user?: string;
  knownHosts?: string;
  disableLocalHsm?: boolean;
  secret?: string;
  extraVault?: string;
};

/** Writes an inventory for the lab into a fresh temp dir; the secret comes from an env var. */
export function writeInventory(opts: InventoryOptions = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-e2e-'));
  const nodes = (opts.nodes ?? NODES).map((n) => `  - { name: ${n}, host: 127.0.0.1, port: ${BASE_PORT + Number(n.slice(4))} }`).join('\n');
  const file = path.join(dir, 'inventory.yaml');
  writeFileSync(file, `version: v1
ssh:
  user: ${opts.user ?? 'root'}
  identityFile: ${path.join(LAB_DIR, 'id_ed25519')}
  knownHosts: ${opts.knownHosts ?? path.join(LAB_DIR, 'known_hosts')}
nodes:
${nodes}
vars:
  vault:
    server: https://127.0.0.1:8200
    approle:
      id: 3f1c2a9e-lab-role
      secret: ${opts.secret ?? '{ env: ROLLOUT_E2E_SECRET }'}
    transit:
      key: aistor-key-manager-hsm
${opts.extraVault ?? ''}  disableLocalHsm: ${opts.disableLocalHsm ?? false}
`);
  return file;
}

export type CliRun = { code: number | null; stdout: string; stderr: string };

/** Every byte any rollout run printed in this test process, for the no-secret checks. */
export const allOutput: string[] = [];

/** Runs the built CLI as a user would (no TTY), with the lab secret in its environment. */
export function rollout(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO, 'dist/cli/main.js'), ...args], {
      env: { ...process.env, ROLLOUT_E2E_SECRET: LAB_SECRET, CI: 'true', ...env },
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
