// `rollout check`: everything about an inventory and its playbook that can be
// known without the network, every problem at once, each with file, line and
// key path, so a CI job can gate an inventory change before anyone runs it.
import { readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import { InputError } from '../errors.js';
import { checkPlaybook, varsProblems } from '../playbook/load.js';
import { PlaybookSchema, type Playbook } from '../playbook/schema.js';
import { knownKeyTypes, knownHostsName, parseKnownHosts } from '../transport/known-hosts.js';
import { dotted, parseYamlText } from '../util/validate-yaml.js';
import { parseLocated } from '../util/yaml-location.js';
import { loadInventory, type Inventory } from './load.js';
import { resolveSecret } from './secrets.js';
import type { SecretRef } from './schema.js';

/** One problem (or note) found offline. */
export type CheckFinding = { level: 'error' | 'warn'; file: string; line: number | null; key: string; message: string };

/** What `checkOffline` found: problems, and what was understood when the inputs are valid. */
export type OfflineCheck = { findings: CheckFinding[]; inventory: Inventory | null; playbook: Playbook | null };

// InputError lines read "line N: key.path: message" (or "key.path: message").
function fromInputError(err: InputError): CheckFinding[] {
  return err.problems.map((p) => {
    const m = /^line (\d+|\?): ([^:]*): (.*)$/s.exec(p) ?? /^()([\w.[\]]+): (.*)$/s.exec(p);
    return m
      ? { level: 'error', file: err.file, line: m[1] && m[1] !== '?' ? Number(m[1]) : null, key: m[2] ?? '', message: m[3] ?? p }
      : { level: 'error', file: err.file, line: null, key: '', message: p };
  });
}

/**
 * Validates an inventory and its playbook without any network: schemas, the
 * playbook's references, the vars it uses, every secret reference resolvable
 * (its value never read into a message), identity files readable keys, a
 * known_hosts entry for every node, the Vault CA file a certificate.
 */
export async function checkOffline(file: string): Promise<OfflineCheck> {
  const findings: CheckFinding[] = [];
  let inventory: Inventory;
  try {
    inventory = await loadInventory(file);
  } catch (err) {
    if (err instanceof InputError) return { findings: fromInputError(err), inventory: null, playbook: null };
    throw err;
  }
  const located = parseLocated(await readFile(inventory.file, 'utf8'));
  const { lineOf } = located;
  // Which nodes set a key themselves (else the ssh section's value applies), from the same parse.
  const rawNodes = ((located.doc.toJS() as { nodes?: Array<Record<string, unknown>> }).nodes ?? []);
  const nodeHasOwn = (i: number, key: string) => rawNodes[i]?.[key] !== undefined;
  const at = (key: string, path: PropertyKey[], message: string, level: CheckFinding['level'] = 'error') =>
    findings.push({ level, file: inventory.file, line: lineOf(path), key, message });

  const checked = await checkPlaybookOffline(inventory.playbookFile);
  findings.push(...checked.findings);
  const { playbook } = checked;
  if (playbook) {
    for (const problem of varsProblems(playbook, inventory.vars)) {
      const [key, ...rest] = problem.split(': ');
      findings.push({ level: 'error', file: inventory.playbookFile, line: null, key: key!, message: rest.join(': ') });
    }
  }

  // Placeholders `rollout init` left.
  const walk = (v: unknown, path: PropertyKey[]): void => {
    if (typeof v === 'string' && /REPLACE/.test(v)) at(dotted(path), path, 'still the placeholder `rollout init` wrote: fill it in');
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...path, Array.isArray(v) ? Number(k) : k]);
  };
  walk(inventory.vars, ['vars']);

  // Secrets: every reference must resolve here, as plan and apply will need it.
  const refs: Array<[string, PropertyKey[], SecretRef]> = [];
  const { vault } = inventory.vars;
  if (vault?.approle) refs.push(['vars.vault.approle.secret', ['vars', 'vault', 'approle', 'secret'], vault.approle.secret]);
  if (vault?.kubernetes && !(typeof vault.kubernetes.jwt === 'string' && vault.kubernetes.jwt.startsWith('/'))) {
    refs.push(['vars.vault.kubernetes.jwt', ['vars', 'vault', 'kubernetes', 'jwt'], vault.kubernetes.jwt]);
  }
  if (inventory.sudoPasswordRef !== undefined) refs.push(['ssh.sudoPassword', ['ssh', 'sudoPassword'], inventory.sudoPasswordRef]);
  const clusterKey = inventory.vars.cluster?.apiKey;
  if (clusterKey !== undefined) refs.push(['vars.cluster.apiKey', ['vars', 'cluster', 'apiKey'], clusterKey]);
  for (const [key, path, ref] of refs) {
    try {
      const value = await resolveSecret(ref, key, inventory.file);
      if (key === 'vars.cluster.apiKey' && !/^k1:\S+$/.test(value)) at(key, path, 'does not hold a MinKMS API key (one word starting with "k1:"); give the SysAdmin key');
      if (typeof ref === 'string') at(key, path, 'a literal secret in the inventory: prefer { env: NAME } or { file: path } so the file can be shared and reviewed', 'warn');
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      at(key, path, err.problems[0]!.replace(`${key}: `, ''));
    }
  }

  // SSH material, read once per file.
  const keys = new Map<string, Promise<string | null>>();
  const hosts = new Map<string, Promise<ReturnType<typeof parseKnownHosts> | null>>();
  const unreadable = new Set<string>();
  for (const [i, n] of inventory.nodes.entries()) {
    if (n.identityFile) {
      let verdict = keys.get(n.identityFile);
      if (!verdict) {
        verdict = readFile(n.identityFile).then(
          (buf) => {
            const parsed = ssh2.utils.parseKey(buf);
            if (!(parsed instanceof Error)) return null;
            return /passphrase/i.test(parsed.message)
              ? 'PASSPHRASE'
              : `is not a private key rollout can read (${parsed.message})`;
          },
          (err: NodeJS.ErrnoException) => `cannot be read (${err.code ?? err.message})`,
        );
        keys.set(n.identityFile, verdict);
      }
      const problem = await verdict;
      if (problem) {
        const own = nodeHasOwn(i, 'identityFile');
        const key = own ? `nodes[${i}].identityFile` : 'ssh.identityFile';
        const where = own ? ['nodes', i, 'identityFile'] : ['ssh', 'identityFile'];
        // A passphrase is asked for on a terminal; without one (CI) it must be in ssh-agent.
        if (problem === 'PASSPHRASE') at(key, where, `identity file ${n.identityFile} is passphrase-protected: rollout asks for the passphrase on a terminal; without one, load it into ssh-agent (ssh-add) and leave identityFile out`, 'warn');
        else at(key, where, `identity file ${n.identityFile} ${problem}`);
      }
    }
    let known = hosts.get(n.knownHosts);
    if (!known) {
      known = readFile(n.knownHosts, 'utf8').then(parseKnownHosts, () => null);
      hosts.set(n.knownHosts, known);
    }
    const entries = await known;
    if (entries === null) {
      // An unreadable file is said once, not once per node.
      if (!unreadable.has(n.knownHosts)) at('ssh.knownHosts', ['ssh', 'knownHosts'], `${n.knownHosts} cannot be read; every node's host key must be recorded there`);
      unreadable.add(n.knownHosts);
    } else if (knownKeyTypes(entries, n.host, n.port).length === 0) {
      at(`nodes[${i}]`, ['nodes', i], `${n.name}: no host key for ${knownHostsName(n.host, n.port)} in ${n.knownHosts}; verify its fingerprint out of band, then add it (ssh-keyscan -p ${n.port} ${n.host} >> ${n.knownHosts})`);
    }
  }

  // A config others can read keeps the secret it receives readable by every local user.
  if (inventory.secretFiles.othersReadable === 'allow') {
    at('secretFiles.othersReadable', ['secretFiles', 'othersReadable'], 'allow: a file others can read that gets a secret keeps it readable by every local user; prefer tighten (rollout drops the others\' bits from its mode)', 'warn');
  }

  if (inventory.vaultCaFile) {
    try {
      const pem = await readFile(inventory.vaultCaFile, 'utf8');
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) at('preflight.vaultCaFile', ['preflight', 'vaultCaFile'], `${inventory.vaultCaFile} holds no PEM certificate`);
    } catch (err) {
      at('preflight.vaultCaFile', ['preflight', 'vaultCaFile'], `${inventory.vaultCaFile} cannot be read (${(err as NodeJS.ErrnoException).code})`);
    }
  }
  return { findings, inventory, playbook };
}

/** What `checkPlaybookOffline` found: problems and notes, and the playbook when it has no error. */
export type PlaybookCheck = { findings: CheckFinding[]; playbook: Playbook | null };

/**
 * Validates a playbook file alone, offline: its schema (every problem at once),
 * its references (tasks and fromEnv naming files it defines, regexes that
 * compile), each with its line; and warns of a phase that changes files without
 * a service.restart (the service would run on the old files) or restarts
 * without changing a file (rollout restarts only after a change).
 */
export async function checkPlaybookOffline(file: string): Promise<PlaybookCheck> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { findings: [{ level: 'error', file, line: null, key: '', message: `cannot read the playbook: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }], playbook: null };
  }
  let playbook: Playbook;
  try {
    playbook = parseYamlText(text, file, PlaybookSchema);
  } catch (err) {
    if (err instanceof InputError) return { findings: fromInputError(err), playbook: null };
    throw err;
  }
  const { lineOf } = parseLocated(text);
  const findings: CheckFinding[] = checkPlaybook(playbook).map((problem) => {
    const [key, ...rest] = problem.split(': ');
    return { level: 'error', file, line: lineOf(keyPath(key!)), key: key!, message: rest.join(': ') };
  });
  playbook.phases.forEach((phase, i) => {
    const edits = phase.tasks.some((t) => t.kind !== 'service.restart');
    const restarts = phase.tasks.some((t) => t.kind === 'service.restart');
    const at = (message: string) => findings.push({ level: 'warn', file, line: lineOf(['phases', i]), key: `phases[${i}]`, message });
    if (edits && !restarts) at(`${phase.name} changes files but has no service.restart: ${playbook.service.unit} would go on running on the old files until something restarts it; add { kind: service.restart }`);
    if (restarts && !edits) at(`${phase.name} has a service.restart but changes no file: rollout restarts a node only after its phase changed a file, so this phase never does anything`);
  });
  return { findings, playbook: findings.some((f) => f.level === 'error') ? null : playbook };
}

/** Pure. Whether a YAML text is a playbook rather than an inventory: a mapping with `phases` and no `nodes`. */
export function looksLikePlaybook(text: string): boolean {
  try {
    const doc = parseLocated(text).doc.toJS() as unknown;
    return doc !== null && typeof doc === 'object' && !Array.isArray(doc) && 'phases' in doc && !('nodes' in doc);
  } catch {
    return false;
  }
}

// Pure. `phases[0].tasks[1].file` as the path lineOf walks: ['phases', 0, 'tasks', 1, 'file'].
function keyPath(key: string): PropertyKey[] {
  return key.split('.').flatMap((part) => {
    const m = /^([^[]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) return [part];
    const indexes = [...m[2]!.matchAll(/\[(\d+)\]/g)].map((x) => Number(x[1]));
    return [...(m[1] ? [m[1]] : []), ...indexes];
  });
}

/** Pure. `file:line: key: message` lines, errors first, as editors and CI logs link them. */
export function renderFindings(findings: readonly CheckFinding[]): string {
  return [...findings]
    .sort((a, b) => (a.level === b.level ? 0 : a.level === 'error' ? -1 : 1))
    .map((f) => `${f.file}${f.line ? `:${f.line}` : ''}: ${f.level === 'warn' ? 'warning: ' : ''}${f.key ? `${f.key}: ` : ''}${f.message}`)
    .join('\n');
}
