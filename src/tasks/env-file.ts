// Pure reading and editing of systemd EnvironmentFile= files (`KEY=value` lines,
// optional `export`, single or double quotes, backslash-newline continuation).

/** One assignment in an env file, by line index (first and last line, inclusive). */
type Assignment = { key: string; raw: string; first: number; last: number };

/** Pure. Splits keeping each line's own ending, so joining gives back the bytes. */
function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

const ASSIGNMENT = /^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=/;

/** Pure. Every assignment with the lines it spans (a quoted or continued value spans several). */
function scanAssignments(lines: readonly string[]): Assignment[] {
  const found: Assignment[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = ASSIGNMENT.exec(lines[i]!);
    if (!m) continue;
    let raw = lines[i]!.slice(m[0].length);
    let last = i;
    let state = valueState(raw);
    while (state !== 'done' && last + 1 < lines.length) {
      last++;
      raw += lines[last]!;
      state = valueState(raw);
    }
    found.push({ key: m[1]!, raw, first: i, last });
    i = last;
  }
  return found;
}

// Whether a value text is complete at its end, or continues on the next line
// (an open quote, or a trailing backslash outside single quotes).
function valueState(raw: string): 'done' | 'open' {
  let quote: string | null = null;
  const body = raw.replace(/\r?\n$/, '');
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\' && quote !== "'") {
      if (i === body.length - 1) return 'open';
      i++;
    } else if (quote && c === quote) quote = null;
    else if (!quote && (c === '"' || c === "'")) quote = c;
  }
  return quote ? 'open' : 'done';
}

/**
 * Pure. Every assignment in file order: its key, its value unquoted, and the
 * value's text as written, one entry per physical line (the first from after `=`).
 */
export function envAssignments(text: string): Array<{ key: string; value: string; lines: string[] }> {
  return scanAssignments(splitLines(text)).map((a) => ({ key: a.key, value: unquote(a.raw), lines: a.raw.replace(/\r?\n$/, '').split(/\r?\n/) }));
}

/** Pure. The value a key gets (the last assignment wins, as in systemd), unquoted; null if unset. */
export function readEnvValue(text: string, key: string): string | null {
  const hits = scanAssignments(splitLines(text)).filter((a) => a.key === key);
  const last = hits[hits.length - 1];
  return last ? unquote(last.raw) : null;
}

function unquote(raw: string): string {
  let out = '';
  let quote: string | null = null;
  const body = raw.replace(/\r?\n$/, '').trim();
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\' && quote !== "'" && i + 1 < body.length) {
      const next = body[++i]!;
      if (next !== '\n' && next !== '\r') out += next;
    } else if (quote && c === quote) quote = null;
    else if (!quote && (c === '"' || c === "'")) quote = c;
    else if (!quote && c === '#' && /\s$/.test(out)) break;
    else out += c;
  }
  return out.trim();
}

/** Pure. Removes every assignment of `key` (all its lines); other bytes untouched. */
export function unsetEnvKey(before: string, key: string): { after: string; removed: number } {
  const lines = splitLines(before);
  const drop = new Set<number>();
  const hits = scanAssignments(lines).filter((a) => a.key === key);
  for (const a of hits) for (let i = a.first; i <= a.last; i++) drop.add(i);
  return { after: lines.filter((_, i) => !drop.has(i)).join(''), removed: hits.length };
}

/** What setEnvKey did: the new text and what it did, nothing to do (and why), or why it cannot. */
export type EnvSetResult =
  | { status: 'changed'; after: string; reason: string }
  | { status: 'unchanged'; reason: string }
  | { status: 'refused'; reason: string };

/**
 * Pure. Makes `key` hold `value` as systemd reads an EnvironmentFile: the last
 * assignment of `key` gets the new value in place (its `export ` and indentation
 * kept, the value double-quoted only when it needs it), earlier assignments of it
 * are removed, or `KEY=value` is appended in the file's own line ending. Unchanged
 * when the last assignment already holds the value and no earlier one exists. A
 * value with a line break is refused: it cannot be one line. Never puts the value
 * in a reason (it may be a secret).
 */
export function setEnvKey(before: string, key: string, value: string): EnvSetResult {
  if (/[\r\n\0]/.test(value)) {
    return { status: 'refused', reason: `the value for ${key} holds a line break (or NUL); an EnvironmentFile assignment is one line: give a value without it` };
  }
  const lines = splitLines(before);
  const hits = scanAssignments(lines).filter((a) => a.key === key);
  const last = hits[hits.length - 1];
  if (!last) {
    const eol = /\r\n/.test(before) ? '\r\n' : '\n';
    const sep = before === '' || before.endsWith('\n') ? '' : eol;
    return { status: 'changed', after: `${before}${sep}${key}=${quoteEnvValue(value)}${eol}`, reason: `${key} appended` };
  }
  const earlier = hits.slice(0, -1);
  const dropped = earlier.length === 0 ? '' : `; ${earlier.length} earlier ${key}= assignment(s) removed (systemd takes the last one, so they never counted)`;
  if (systemdValue(last.raw) === value && earlier.length === 0) return { status: 'unchanged', reason: `${key} already has this value` };
  const head = ASSIGNMENT.exec(lines[last.first]!)![0];
  const eol = /\r?\n$/.exec(lines[last.last]!)?.[0] ?? '';
  const drop = new Set<number>();
  for (const a of earlier) for (let i = a.first; i <= a.last; i++) drop.add(i);
  const out: string[] = [];
  lines.forEach((line, i) => {
    if (drop.has(i) || (i > last.first && i <= last.last)) return;
    out.push(i === last.first ? `${head}${quoteEnvValue(value)}${eol}` : line);
  });
  const what = systemdValue(last.raw) === value ? `${key} already had this value in its last assignment` : `${key} set in place`;
  return { status: 'changed', after: out.join(''), reason: `${what}${dropped}` };
}

/**
 * Pure. A value as it must be written after `KEY=` for systemd to read it back
 * unchanged: as it is when plain, else in double quotes with `"`, `\`, `` ` ``
 * and `$` backslash-escaped (systemd unescapes exactly those inside double quotes).
 */
export function quoteEnvValue(value: string): string {
  if (!/[\s'"\\$#`]/.test(value)) return value;
  return `"${value.replace(/["\\`$]/g, '\\$&')}"`;
}

// The value systemd's EnvironmentFile parser (env-file.c) gives the text after
// `=`: quotes concatenate, `\` escapes outside quotes, inside double quotes only
// `"\`$` and backtick are unescaped, an unquoted value loses trailing blanks,
// and no `#` after the value starts a comment.
function systemdValue(raw: string): string {
  type State = 'pre' | 'value' | 'escape' | 'single' | 'double' | 'double-escape';
  let state: State = 'pre';
  let out = '';
  let blankFrom = -1;
  const newline = (c: string) => c === '\n' || c === '\r';
  const blank = (c: string) => c === ' ' || c === '\t' || newline(c);
  for (const c of raw) {
    if (state === 'pre') {
      if (newline(c)) break;
      if (c === "'") state = 'single';
      else if (c === '"') state = 'double';
      else if (c === '\\') state = 'escape';
      else if (!blank(c)) {
        state = 'value';
        out += c;
      }
    } else if (state === 'value') {
      if (newline(c)) break;
      if (c === '\\') {
        state = 'escape';
        blankFrom = -1;
      } else {
        if (!blank(c)) blankFrom = -1;
        else if (blankFrom === -1) blankFrom = out.length;
        out += c;
      }
    } else if (state === 'escape') {
      state = 'value';
      if (!newline(c)) out += c;
    } else if (state === 'single') {
      if (c === "'") state = 'pre';
      else out += c;
    } else if (state === 'double') {
      if (c === '"') state = 'pre';
      else if (c === '\\') state = 'double-escape';
      else out += c;
    } else {
      state = 'double';
      if ('"\\`$'.includes(c)) out += c;
      else if (c !== '\n') out += `\\${c}`;
    }
  }
  return state === 'value' && blankFrom !== -1 ? out.slice(0, blankFrom) : out;
}

/**
 * Pure. The argument of `option` (`--config PATH` or `--config=PATH`) in a
 * shell-like word list such as MINIO_KMS_OPTS, as the service's Go flag
 * parsing takes it: the last one given wins, the word after the option is its
 * value whatever it looks like, nothing after `--` is an option; null when absent.
 */
export function findOption(words: string, option: string): string | null {
  const list = splitWords(words);
  let found: string | null = null;
  for (let i = 0; i < list.length; i++) {
    const w = list[i]!;
    if (w === '--') break;
    if (w === option && i + 1 < list.length) found = list[++i]!;
    else if (w.startsWith(`${option}=`)) found = w.slice(option.length + 1);
  }
  return found;
}

function splitWords(text: string): string[] {
  const words: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let inWord = false;
  for (const c of text) {
    if (quote) {
      if (c === quote) quote = null;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}
