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
