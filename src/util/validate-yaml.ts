import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { InputError } from '../errors.js';
import { parseLocated, yamlErrorText } from './yaml-location.js';

/**
 * Reads a YAML file and checks it against `schema`. Every problem is reported at
 * once as `line N: key.path: what is wrong` inside one InputError naming the file.
 */
export async function loadYamlFile<S extends z.ZodType>(file: string, schema: S, what: string): Promise<z.infer<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(file, [`cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
  }
  return parseYamlText(text, file, schema);
}

/** As loadYamlFile, on text already read (pure; used by tests and saved plans). */
export function parseYamlText<S extends z.ZodType>(text: string, file: string, schema: S): z.infer<S> {
  const { doc, lineOf } = parseLocated(text);
  if (doc.errors.length > 0) {
    throw new InputError(file, doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? '?'}: ${yamlErrorText(e.message)}`));
  }
  const parsed = schema.safeParse(doc.toJS());
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => {
        const path = [...issue.path, key];
        return `line ${lineOf(path)}: ${dotted(path)}: unknown key; check its spelling against the documented format`;
      });
    }
    return [`line ${lineOf(issue.path)}: ${dotted(issue.path) || '(top level)'}: ${issue.message}`];
  });
  throw new InputError(file, problems);
}

/** Pure. A key path as the errors write it: `nodes[1].port`. */
export function dotted(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}
