/** Replaces secret values in any text shown or stored. Total: it never throws. */
export type Redactor = (text: string) => string;

/** The marker that stands where a secret was. */
export const REDACTED = '<redacted>';

/** What a redactor knows: literal values, and the keys and log shapes that carry secrets. */
export type RedactionRules = {
  /** Known secret values (inventory secrets, values read from nodes). */
  secrets: readonly string[];
  /** YAML keys whose scalar value is secret (`secret: x`, `jwt: "x"`). */
  yamlKeys: readonly string[];
  /** Env-file keys whose value is secret, also inside comments (`#KEY=x`). */
  envKeys: readonly string[];
  /** Regexes whose first capture group is secret (`API Key\s+(\S+)`). */
  logPatterns: readonly string[];
};

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Pure. Builds a redactor: literal secrets first (longest first, so a secret that
 * contains another is replaced whole), then the key- and pattern-based rules,
 * which catch secrets rollout was never told about (an old AppRole secret in a file).
 */
export function createRedactor(rules: RedactionRules): Redactor {
  const literals = [...new Set(rules.secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  // A very short "secret" would otherwise be cut out of every word that contains it;
  // those are replaced only where they stand alone.
  const literal = literals.length
    ? new RegExp(literals.map((s) => (s.length >= 6 ? escape(s) : `(?<![A-Za-z0-9])${escape(s)}(?![A-Za-z0-9])`)).join('|'), 'g')
    : null;
  const yaml = rules.yamlKeys.length
    ? new RegExp(`(["']?\\b(?:${rules.yamlKeys.map(escape).join('|')})["']?[ \\t]*:[ \\t]+)("(?:[^"\\\\]|\\\\.)*"|'(?:[^']|'')*'|[^\\s,}#][^,}\\r\\n]*?)(?=[ \\t]+#|[ \\t]*[,}]|[ \\t]*\\r?$)`, 'gm')
    : null;
  const env = rules.envKeys.length
    ? new RegExp(`(\\b(?:${rules.envKeys.map(escape).join('|')})[ \\t]*=[ \\t]*)("(?:[^"\\\\]|\\\\.)*"?|'[^']*'?|\\S*)`, 'g')
    : null;
  const logs = rules.logPatterns.map((p) => new RegExp(p, 'gi'));
  return (text: string) => {
    let out = literal ? text.replace(literal, REDACTED) : text;
    if (yaml) out = out.replace(yaml, (_m, head: string, value: string) => (value === REDACTED ? head + value : head + REDACTED));
    if (env) out = out.replace(env, (_m, head: string) => head + REDACTED);
    for (const re of logs) {
      out = out.replace(re, (match, secret: string | undefined) => (secret ? match.replace(secret, REDACTED) : match));
    }
    return out;
  };
}
