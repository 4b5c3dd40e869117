/**
 * Replaces secret values in any text shown or stored, and writes control
 * characters as visible escapes. Total: it never throws.
 */
export type Redactor = (text: string) => string;

/** The marker that stands where a secret was. */
export const REDACTED = '<redacted>';

/** Pure. Whether `text` is a redaction marker: `<redacted>`, or `<redacted:3f9a1c>` with a value's fingerprint. */
export function isRedactedMarker(text: string): boolean {
  return /^<redacted(?::[0-9a-f]{6})?>$/.test(text);
}

/** What a redactor knows: literal values, and the keys and log shapes that carry secrets. */
export type RedactionRules = {
  /** Known secret values (inventory secrets, values read from nodes). */
  secrets: readonly string[];
  /** YAML keys whose value is secret (`secret: x`, `jwt: "x"`, `token: |` and its lines), also inside comments. */
  yamlKeys: readonly string[];
  /** Env-file keys whose value is secret, with its continuation lines, also inside comments (`#KEY=x`). */
  envKeys: readonly string[];
  /** Regexes whose first capture group is secret (`API Key\s+(\S+)`). */
  logPatterns: readonly string[];
  /**
   * A keyed fingerprint of a value (see util/fingerprint.ts): a whole
   * single-line secret is then shown as `<redacted:3f9a1c>`, so a reviewer sees
   * that it changed, and that every node gets the same one, without seeing it.
   * Absent: `<redacted>` everywhere.
   */
  fingerprint?: (value: string) => string;
};

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// C0 controls but tab and newline, a carriage return unless it ends a line
// (CRLF), DEL, the C1 controls (8-bit CSI and OSC), and the bidirectional
// marks, overrides and isolates, which reorder what a reviewer reads.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]|\r(?!\n)/g;

/**
 * Pure. Text from a node made inert for a terminal: every control character
 * but newline, tab and the CR of a CRLF line end becomes a visible escape
 * (`\x1b`, `\r`, `\u202e`), so a sequence in a file or journal line (a window
 * title, the clipboard, an erased or overwritten line) is shown, never acted
 * on. Idempotent.
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    if (code === 0x0d) return '\\r';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * Pure. Builds a redactor: literal secrets first (longest first, so a secret that
 * contains another is replaced whole), then the key- and pattern-based rules,
 * which catch secrets rollout was never told about (an old AppRole secret in a
 * file), then escapeControls. A value that spans lines has each of its lines
 * replaced, so line numbers in a diff stay those of the file.
 */
export function createRedactor(rules: RedactionRules): Redactor {
  const literals = [...new Set(rules.secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  // A very short "secret" would otherwise be cut out of every word that contains it;
  // those are replaced only where they stand alone.
  const literal = literals.length
    ? new RegExp(literals.map((s) => (s.length >= 6 ? escape(s) : `(?<![A-Za-z0-9])${escape(s)}(?![A-Za-z0-9])`)).join('|'), 'g')
    : null;
  const yamlKeys = rules.yamlKeys.map(escape).join('|');
  const yamlBlock = rules.yamlKeys.length ? yamlBlockRule(yamlKeys) : null;
  // A same-line scalar; a quoted one left open runs to the end of the line (its
  // further lines are yamlBlock's). A block scalar's header (`|`, `>-`) is kept.
  const yaml = rules.yamlKeys.length
    ? new RegExp(`(["']?\\b(?:${yamlKeys})["']?[ \\t]*:[ \\t]+)(?![|>][-+0-9]*(?:[ \\t]+#|[ \\t]*\\r?$))("(?:[^"\\\\\\r\\n]|\\\\.)*"?|'(?:[^'\\r\\n]|'')*'?|[^\\s,}#][^,}\\r\\n]*?)(?=[ \\t]+#|[ \\t]*[,}]|[ \\t]*\\r?$)`, 'gm')
    : null;
  const env = rules.envKeys.length ? new RegExp(`\\b(?:${rules.envKeys.map(escape).join('|')})[ \\t]*=[ \\t]*`, 'g') : null;
  const logs = rules.logPatterns.map((p) => new RegExp(p, 'gi'));
  const fp = rules.fingerprint;
  const marker = (value: string) => (fp ? `<redacted:${fp(value)}>` : REDACTED);
  return (text: string) => {
    let out = literal ? text.replace(literal, marker) : text;
    if (yamlBlock) out = yamlBlock(out);
    if (yaml) out = out.replace(yaml, (_m, head: string, value: string) => (isRedactedMarker(yamlScalar(value)) ? head + value : head + marker(yamlScalar(value))));
    if (env) out = redactEnvValues(out, env);
    for (const re of logs) {
      out = out.replace(re, (match, secret: string | undefined) => (secret ? match.replace(secret, REDACTED) : match));
    }
    return escapeControls(out);
  };
}

// A same-line YAML scalar's value as a node's config holds it (quotes taken off),
// so that `secret: "x"` and `secret: x` have the same fingerprint.
function yamlScalar(raw: string): string {
  if (raw.length >= 2 && raw.startsWith("'") && raw.endsWith("'")) return raw.slice(1, -1).replace(/''/g, "'");
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) {
    try {
      return JSON.parse(raw) as string;
    } catch {
      return raw.slice(1, -1);
    }
  }
  return raw;
}

// Each line of a value replaced, its indentation and a continuation backslash
// kept; an empty line (or an empty value) stays as it is, and so does a line
// already redacted, also behind a diff's `-`/`+` (redacting a diff of redacted
// text again changes nothing).
function maskLines(value: string): string {
  return value
    .split('\n')
    .map((line) => {
      if (/^[ \t]*[-+]?[ \t]*<redacted(?::[0-9a-f]{6})?>\\?[ \t]*\r?$/.test(line)) return line;
      const m = /^([ \t]*)([\s\S]*?)(\\?)([ \t]*\r?)$/.exec(line)!;
      return m[2] === '' ? line : `${m[1]}${REDACTED}${m[3]}${m[4]}`;
    })
    .join('\n');
}

// Where the value after `KEY=` ends, as systemd reads an EnvironmentFile: a
// value opened by a quote runs to its closing quote (over newlines), and a
// backslash escapes the next character, a newline included (continuation);
// otherwise it ends at the end of the line.
function envValueEnd(text: string, start: number): number {
  let i = start;
  let quote = text[i] === '"' || text[i] === "'" ? text[i++]! : null;
  for (; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"') i++;
    } else if (c === '\\') {
      i += text.startsWith('\r\n', i + 1) ? 2 : 1;
    } else if (c === '\n') {
      return Math.max(start, text[i - 1] === '\r' ? i - 1 : i);
    }
  }
  return text.length;
}

// Every value of an env key (`head` matches `KEY=`), all its lines.
function redactEnvValues(text: string, head: RegExp): string {
  let out = '';
  let last = 0;
  head.lastIndex = 0;
  for (let m = head.exec(text); m; m = head.exec(text)) {
    const start = m.index + m[0].length;
    const end = envValueEnd(text, start);
    out += text.slice(last, start) + maskLines(text.slice(start, end));
    last = end;
    head.lastIndex = Math.max(end, start);
  }
  return out + text.slice(last);
}

/**
 * The lines a secret YAML key's value goes on over: a block scalar's lines
 * (`token: |`, `>-`), a plain or quoted scalar continued on more-indented lines,
 * or a scalar or sequence starting on the next line; also when the key line is a
 * comment (`# token: |` then `#   ...`). A nested mapping keeps its lines (its
 * keys are no secret; the values the plan parsed are: see plan-secrets.ts).
 */
function yamlBlockRule(keys: string): (text: string) => string {
  const keyLine = new RegExp(`^([ \\t]*(?:#[ \\t]*)?(?:-[ \\t]+)*)(["']?)(?:${keys})\\2[ \\t]*:(?:[ \\t]+(.*?))?[ \\t]*$`);
  const mappingEntry = /^(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"?:-][^#]*?)[ \t]*:(?:[ \t]|$)/;
  return (text) => {
    if (!text.includes(':')) return text;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = keyLine.exec(lines[i]!.replace(/\r$/, ''));
      if (!m) continue;
      const keyCol = m[1]!.length;
      const lead = m[1]!.includes('#') ? /^[ \t]*#[ \t]*/ : /^[ \t]*/;
      // Anchors and tags (`&a`, `!!binary`) say nothing about where the value is.
      const rest = (m[3] ?? '').replace(/^(?:[&!]\S*(?:[ \t]+|$))*/, '');
      const nextLine = rest === '' || rest.startsWith('#');
      const owned: number[] = [];
      for (let j = i + 1; j < lines.length; j++) {
        const l = lines[j]!.replace(/\r$/, '');
        const ind = lead.exec(l)?.[0].length;
        if (ind === undefined) break; // under a commented key, a line that is no comment
        if (ind === l.length) continue; // blank
        if (ind > keyCol || (nextLine && ind === keyCol && /^-(?:[ \t]|$)/.test(l.slice(ind)))) owned.push(j);
        else break;
      }
      if (owned.length === 0) continue;
      const first = lines[owned[0]!]!.replace(/\r$/, '');
      // A nested mapping's lines are read on: a secret key may be among them.
      if (nextLine && mappingEntry.test(first.slice(lead.exec(first)![0].length))) continue;
      i = owned[owned.length - 1]!;
      for (const k of owned) {
        const l = lines[k]!;
        const cr = l.endsWith('\r') ? '\r' : '';
        lines[k] = `${lead.exec(l)![0]}${REDACTED}${cr}`;
      }
    }
    return lines.join('\n');
  };
}
