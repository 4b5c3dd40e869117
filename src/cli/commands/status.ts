import { nodeFilePath } from '../../plan/build.js';
import { readServiceState } from '../../rollout/journal.js';
import { askApi, type ApiAnswer } from '../../rollout/service-probe.js';
import { apiTargets } from '../../rollout/cluster.js';
import { loadLastRun } from '../../state/run-state.js';
import { readEnvValue } from '../../tasks/env-file.js';
import { credentialFingerprints } from '../../plan/plan-secrets.js';
import { readRemoteFile } from '../../agent/files.js';
import { mapLimit } from '../../util/map-limit.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';
import { openSession, type Session } from '../../session/session.js';

/** One node's row: everything `rollout status` shows, as data (also its --json line). */
export type NodeStatus = {
  node: string;
  reachable: boolean;
  /** verified (the key matched known_hosts), refused (unknown or changed: see error), or unknown (not reached). */
  hostKey: 'verified' | 'refused' | 'unknown';
  service: string | null;
  restarts: number | null;
  /** What the node's own API answers at GET /version (asked on the node, as the readiness checks are); null: no answer. */
  version: string | null;
  /** Whether each phase's change is in place: yes (nothing left to do), no (pending), differs (a conflicting section), unknown. */
  phases: Record<string, 'yes' | 'no' | 'differs' | 'unknown'>;
  /** The first key a phase unsets (MINIO_KMS_HSM_KEY): still in its file? */
  localKey: { key: string; present: boolean | null } | null;
  lastRun: { runId: string; status: string; step: string | null } | null;
  /** The credentials in the file the playbook's first yaml.set writes, under its path, as keyed fingerprints (`approle.secret:3f9a1c`); null: not read. */
  credentials: string[] | null;
  error: string | null;
};

/** Reads what status shows of one node (one extra command for the unit, one for the key's file). */
async function nodeStatus(session: Session, name: string): Promise<NodeStatus> {
  const plan = session.plan.nodes.find((n) => n.node.name === name)!;
  const t = session.transports.get(name);
  const keyTask = session.playbook.phases.flatMap((p) => p.tasks).find((x) => x.kind === 'env.unset');
  const yamlTask = session.playbook.phases.flatMap((p) => p.tasks).find((x) => x.kind === 'yaml.set');
  const row: NodeStatus = { node: name, reachable: !!t, hostKey: t ? 'verified' : 'unknown', service: null, restarts: null, version: null, phases: {}, localKey: null, lastRun: null, credentials: null, error: null };
  for (const p of session.plan.phases) {
    if (!p.enabled) continue;
    if (plan.status === 'error') row.phases[p.name] = /\bhsm\b/.test(plan.error) ? 'differs' : 'unknown';
    else row.phases[p.name] = (plan.phases.find((x) => x.name === p.name)?.changes.length ?? 0) > 0 ? 'no' : 'yes';
  }
  if (plan.status === 'error') row.error = session.redact(plan.error);
  if (!t) {
    if (plan.status === 'error' && /host key/i.test(plan.error)) row.hostKey = 'refused';
    return row;
  }
  try {
    const s = await readServiceState(t, session.playbook.service.unit);
    row.service = `${s.activeState}/${s.subState}`;
    row.restarts = s.nRestarts;
    const api = apiTargets(session.plan).get(name);
    if (api) row.version = versionOf(await askApi(t, 'version', api.target));
    if (keyTask && keyTask.kind === 'env.unset') {
      const file = await readRemoteFile(t, nodeFilePath(session.playbook.files[keyTask.file]!, plan.node));
      row.localKey = { key: keyTask.key, present: file === null ? false : readEnvValue(file.content.toString('utf8'), keyTask.key) !== null };
    }
    const where = plan.status === 'ready' && yamlTask?.kind === 'yaml.set' ? plan.paths?.[yamlTask.file] : undefined;
    if (where && yamlTask?.kind === 'yaml.set') {
      const file = await readRemoteFile(t, where);
      row.credentials = file ? credentialFingerprints(file.content.toString('utf8'), yamlTask.path.split('.'), session.playbook.secrets.yamlKeys, session.fingerprint) : [];
    }
  } catch (err) {
    row.error = session.redact((err as Error).message.replace(`${name}: `, ''));
  }
  return row;
}

/** Pure. The version in a /version answer: its JSON `version`, else the body's first line; null unless HTTP 200. */
export function versionOf(answer: ApiAnswer): string | null {
  if (!answer.ok) return null;
  let v: unknown = answer.text;
  try {
    const body: unknown = JSON.parse(answer.text);
    if (body && typeof body === 'object' && typeof (body as { version?: unknown }).version === 'string') v = (body as { version: string }).version;
  } catch {
    // not JSON: the text as it is
  }
  const text = String(v).replace(/[^\x20-\x7e]/g, '').trim().slice(0, 64);
  return text === '' ? null : text;
}

/** Pure. The status table, one row per node. */
export function renderStatus(rows: readonly NodeStatus[]): string {
  const phases = [...new Set(rows.flatMap((r) => Object.keys(r.phases)))];
  const head = ['NODE', 'REACHABLE', 'HOST KEY', 'SERVICE', 'RESTARTS', ...phases.map((p) => p.toUpperCase()), 'LOCAL KEY', 'LAST RUN', 'VERSION', 'CREDENTIAL'];
  const body = rows.map((r) => [
    r.node,
    r.reachable ? 'yes' : 'NO',
    r.hostKey,
    r.service ?? '-',
    r.restarts === null ? '-' : String(r.restarts),
    ...phases.map((p) => r.phases[p] ?? '-'),
    r.localKey ? (r.localKey.present === null ? '?' : r.localKey.present ? 'present' : 'absent') : '-',
    r.lastRun ? `${r.lastRun.step ?? 'not in it'} (${r.lastRun.status} ${r.lastRun.runId})` : '-',
    r.version ?? '-',
    r.credentials?.length ? r.credentials.join(',') : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const notes = rows.filter((r) => r.error).map((r) => `  ${r.node}: ${r.error}`);
  return [line(head), ...body.map(line), ...(notes.length ? ['', 'Problems:', ...notes] : [])].join('\n');
}

/**
 * `rollout status INVENTORY [--json]`: per node, reachable, host key verified,
 * the unit's state and restart count, the KMS version its API reports, whether each phase's change is in place,
 * whether the local key is still there, and the last run's word on it. Reads
 * only. Exit 0 when every node is reachable and its unit active, 4 otherwise.
 */
export async function statusCommand(inventoryFile: string, flags: { parallel?: number; limit?: string; acceptNewHostKeys?: boolean }, io: Output): Promise<number> {
  const session = await openSession(inventoryFile, flags);
  try {
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    const last = await loadLastRun(session.inventory.file);
    const rows = await mapLimit(session.inventory.nodes, session.parallel, async (n) => {
      const row = await nodeStatus(session, n.name);
      if (last) {
        const steps = last.state.steps.filter((s) => s.node === n.name);
        row.lastRun = { runId: last.state.runId, status: last.state.status, step: steps.length ? steps.map((s) => `${s.phase} ${s.status}`).join(', ') : null };
      }
      return row;
    });
    if (io.mode === 'json') for (const r of rows) io.event('node-status', r);
    else io.result(renderStatus(rows));
    return rows.every((r) => r.reachable && r.service === 'active/running') ? EXIT.ok : EXIT.rollbackFailed;
  } finally {
    session.close();
  }
}
