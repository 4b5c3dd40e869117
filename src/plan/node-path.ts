// Pure checks of the paths planning reads and writes on a node. A path is
// used for the file itself, its backup (/var/backups/rollout/RUN + path) and
// its staged copy (beside it), so it must say exactly where it leads.

/** A path as rollout uses it, or why it cannot be used. */
export type NodePath = { ok: true; path: string } | { ok: false; problem: string };

/**
 * Pure. An absolute path normalised (`//`, `.` and a trailing `/` removed).
 * Refused: a relative path, a `..` component (a backup would land outside its
 * root), a newline or NUL (the node scripts split path lists on newlines).
 */
export function normalizeNodePath(p: string): NodePath {
  if (/[\n\0]/.test(p)) return { ok: false, problem: 'holds a newline or NUL character' };
  if (!p.startsWith('/')) return { ok: false, problem: 'is not an absolute path' };
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return { ok: false, problem: 'has a ".." component, which rollout refuses (its backup and staged copy must stay where the path says)' };
  return { ok: true, path: `/${parts.join('/')}` };
}

/**
 * Pure. The directory a unit's relative paths resolve against, from
 * `systemctl show -p WorkingDirectory --value`: empty is systemd's default for
 * a system unit, `/`; a leading `!` (missing is fine) is dropped. `~` (the
 * home of the unit's User=) is not resolved: refused, as anything not absolute.
 */
export function workingDirectoryOf(shown: string): NodePath {
  const value = shown.replace(/\n$/, '').replace(/^!/, '');
  if (value === '') return { ok: true, path: '/' };
  if (value === '~') return { ok: false, problem: 'is ~ (the home of its User=), which rollout does not resolve' };
  const n = normalizeNodePath(value);
  return n.ok ? n : { ok: false, problem: `${JSON.stringify(value)} ${n.problem}` };
}
