// Who besides root can create names in the directories above a planned file:
// such a user could plant a file or a link where root writes the staged copy,
// or swap a directory on the way. Pure, over the directory owners and modes the
// plan read (RemoteFile.dirs).
import type { DirStat } from './types.js';
import type { FileChange } from './types.js';

/** Pure. `mode` as four octal digits (`0644`). */
export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * Pure. Why a non-root user can create or replace names in this directory;
 * null when only root can. A non-root owner counts whatever the mode says
 * (an owner can always chmod), and so does a sticky directory others can
 * write in (/tmp): others can still plant new names there.
 */
export function nonRootWriter(d: DirStat): string | null {
  if (d.mode & 0o002) return 'every user can write in it';
  if (d.uid !== 0) return `its owner, uid ${d.uid}, can ${d.mode & 0o200 ? 'write in it' : 'make it writable (chmod)'}`;
  if (d.gid !== 0 && d.mode & 0o020) return `group ${d.gid} can write in it`;
  return null;
}

/**
 * Pure. One line per directory above the changes' files (and above a symlink
 * they are reached by) that a non-root user can write in, nearest first and
 * each once, with what to do. Changes whose directories were not read add none.
 */
export function unsafeDirProblems(changes: readonly FileChange[]): string[] {
  const seen = new Set<string>();
  const problems: string[] = [];
  for (const c of changes) {
    for (const d of c.dirs ?? []) {
      const why = nonRootWriter(d);
      if (why === null || seen.has(d.path)) continue;
      seen.add(d.path);
      problems.push(`${d.path} (owner ${d.uid}:${d.gid}, mode ${octalMode(d.mode)}): ${why}, so a non-root user could plant a file or link where root writes ${c.path}; run \`chown root: ${d.path}; chmod go-w ${d.path}\` on the node`);
    }
  }
  return problems;
}
