// The file-change executor: the one place a planned file is written on a node.
// Staging backs it up and writes its new content beside it; the node's turn
// checks it is not stale, moves the verified copy into place, and a failed turn
// restores it from the backup.
import type { FileChange } from '../plan/types.js';
import { commitStaged, type StagedCommit } from '../rollout/journal.js';
import type { StepFile } from '../state/run-state.js';
import { backupPath, restoreFile, stagedPath, stageFiles, type StageItem, type StageResult } from '../agent/files.js';
import type { Transport } from '../transport/transport.js';

/** Runs a node's stage step: stageFiles, or the state probes, which stage in a command they already hold. */
export type Stager = (items: StageItem[]) => Promise<StageResult[]>;

/** The record of a change's file, before its backup exists. */
export function stepFile(runId: string, c: FileChange): StepFile {
  return { path: c.path, beforeSha256: c.beforeSha256, afterSha256: c.afterSha256, backup: backupPath(runId, c.path), uid: c.uid, gid: c.gid, mode: c.mode };
}

/**
 * Stages every change on one node: each file backed up and its new content
 * written beside it, the files themselves untouched. Returns the changes whose
 * file no longer holds what the plan read (nothing kept of them); throws when
 * a copy could not be written or checked.
 */
export async function stageChanges(t: Transport, changes: readonly FileChange[], runId: string, stageKey: string, stage: Stager = (items) => stageFiles(t, items)): Promise<FileChange[]> {
  const results = await stage(changes.map((c) => ({ change: c, backup: backupPath(runId, c.path), staged: stagedPath(stageKey, c.path) })));
  return changes.filter((_, i) => results[i] === 'stale');
}

/**
 * Pure. The moves that put staged changes into place: on the node each target
 * must still hold its planned old content (else nothing moves), and each staged
 * copy the new content with the planned owner and mode, before any rename.
 */
export function stagedMoves(changes: readonly FileChange[], stageKey: string): StagedCommit[] {
  return changes.map((c) => ({ path: c.path, staged: stagedPath(stageKey, c.path), beforeSha256: c.beforeSha256, afterSha256: c.afterSha256, uid: c.uid, gid: c.gid, mode: c.mode }));
}

/**
 * Moves staged changes into place without a restart (see stagedMoves for the
 * checks). `stale`: nothing was touched; throws when a move failed.
 */
export async function moveIntoPlace(t: Transport, changes: readonly FileChange[], stageKey: string): Promise<'committed' | 'stale'> {
  return commitStaged(t, stagedMoves(changes, stageKey));
}

/**
 * Restores in reverse order; true when every file is back as it was
 * (already-old files count as restored). A file is restored only while it
 * holds what the run wrote, or what `seen` says the caller found there (a
 * forced rollback), checked right before the move: an edit made by someone
 * else since is never overwritten.
 */
export async function restoreAll(t: Transport, files: readonly StepFile[], ctx: { progress: (text: string) => void }, seen?: ReadonlyMap<string, string>): Promise<boolean> {
  let ok = true;
  for (const f of [...files].reverse()) {
    try {
      ctx.progress(`restoring ${f.path}`);
      await restoreFile(t, f, seen?.get(f.path) ?? f.afterSha256);
    } catch {
      ok = false;
    }
  }
  return ok;
}
