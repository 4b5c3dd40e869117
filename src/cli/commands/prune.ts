import path from 'node:path';
import { PreflightError, UsageError } from '../../errors.js';
import { lockFleet, lockHolder, releaseLock } from '../../rollout/lock.js';
import { loadLastRun } from '../../state/run-state.js';
import { BACKUP_ROOT } from '../../agent/files.js';
import { confirm } from '../confirm.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';
import { openSession } from '../../session/session.js';

export type PruneFlags = { keep?: number; force?: boolean; yes?: boolean; parallel?: number; breakLock?: boolean; limit?: string; acceptNewHostKeys?: boolean };

/**
 * `rollout prune INVENTORY [--keep N]`: removes the backups earlier runs left
 * on every node (all but the newest N runs; default none kept). A backup holds
 * the files as they were, the removed MINIO_KMS_HSM_KEY line included, so this
 * is how that key leaves the nodes for good once a run is verified. Refused
 * while the last run is not `done` (its backups are what rollback restores),
 * unless --force; the fleet is locked while it runs.
 */
export async function pruneCommand(inventoryArg: string, flags: PruneFlags, io: Output): Promise<number> {
  const inventoryFile = path.resolve(inventoryArg);
  const keep = flags.keep ?? 0;
  const last = await loadLastRun(inventoryFile);
  if (last && last.state.status !== 'done' && !flags.force) {
    throw new PreflightError(
      [`the last run ${last.state.runId} ended ${last.state.status}: its backups are what \`rollout rollback\` restores`],
      'prune refused, nothing was removed; complete that run (`rollout apply --resume`) or roll it back first, or prune anyway with --force',
    );
  }
  const session = await openSession(inventoryFile, flags);
  try {
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    const unreachable = session.plan.nodes.filter((n) => !session.transports.has(n.node.name));
    if (unreachable.length > 0) {
      throw new PreflightError(unreachable.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : 'not connected'}`), 'prune refused, nothing was removed');
    }
    const me = lockHolder(`prune-${Date.now()}`, inventoryFile);
    const transports = [...session.transports.values()];
    await lockFleet(transports, me, { staleMs: session.inventory.lockStaleMs, breakLock: flags.breakLock === true });
    let released = false;
    try {
      io.out(`Prune: on ${transports.map((t) => t.name).join(', ')}, remove every backup run under ${BACKUP_ROOT} ${keep === 0 ? '' : `but the newest ${keep} `}(they hold the files as they were before each run, a removed MINIO_KMS_HSM_KEY line included; \`rollout rollback\` needs them).`);
      await confirm(flags.yes === true, io, 'Remove them? Type "yes" to go on: ', 'not confirmed: nothing was removed.');
      // The release that removes the lock prunes in the same command.
      const pruned = await Promise.all(transports.map(async (t) => [t.name, await releaseLock(t, me.runId, { pruneKeep: keep })] as const));
      released = true;
      for (const [node, runs] of pruned) io.out(`  ${node}: ${runs.length === 0 ? 'no backup to remove' : `removed ${runs.map((r) => path.posix.basename(r)).join(', ')}`}`);
      io.result(`Prune complete: ${pruned.reduce((n, [, runs]) => n + runs.length, 0)} backup run(s) removed${keep ? `, the newest ${keep} kept on each node` : ''}.`);
      return EXIT.ok;
    } finally {
      if (!released) await Promise.all(transports.map((t) => releaseLock(t, me.runId).catch(() => undefined)));
    }
  } finally {
    session.close();
  }
}

/** Pure. --keep's value as a whole number of backup runs to keep. */
export function parseKeep(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 1000) throw new UsageError('--keep takes a whole number from 0 to 1000 (backup runs kept on each node)');
  return n;
}
