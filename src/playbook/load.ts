import { InputError } from '../errors.js';
import { loadYamlFile } from '../util/validate-yaml.js';
import { PlaybookSchema, type Playbook } from './schema.js';

/** Reads and validates a playbook, including references between its parts. */
export async function loadPlaybook(file: string): Promise<Playbook> {
  const playbook = await loadYamlFile(file, PlaybookSchema, 'playbook');
  const problems = checkPlaybook(playbook);
  if (problems.length > 0) throw new InputError(file, problems);
  return playbook;
}

/** Pure: references to files and regexes that the schema alone cannot check. */
export function checkPlaybook(p: Playbook): string[] {
  const problems: string[] = [];
  for (const [key, spec] of Object.entries(p.files)) {
    if (spec.fromEnv && !p.files[spec.fromEnv.file]) problems.push(`files.${key}.fromEnv.file: no file named "${spec.fromEnv.file}" in \`files\``);
  }
  p.phases.forEach((phase, i) => {
    phase.tasks.forEach((task, j) => {
      if ('file' in task && !p.files[task.file]) {
        problems.push(`phases[${i}].tasks[${j}].file: no file named "${task.file}" in \`files\``);
      }
    });
  });
  const regexes = [
    ...p.gate.failOn.map((r, i) => [`gate.failOn[${i}]`, r] as const),
    ...p.secrets.logPatterns.map((r, i) => [`secrets.logPatterns[${i}]`, r] as const),
  ];
  for (const [where, source] of regexes) {
    try {
      new RegExp(source, 'i');
    } catch (err) {
      problems.push(`${where}: not a valid regular expression: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** Inventory vars that are rollout's own settings: a playbook may not use them as values (they never reach it). */
const ROLLOUT_VARS = new Set(['cluster']);

/**
 * Pure. Every \`{ var: X }\` and \`when: X\` of the playbook must name a var the
 * inventory has (\`when\`: a boolean one), and none of rollout's own settings
 * (\`cluster\`), whether \`values\` holds it or not.
 */
export function varsProblems(p: Playbook, values: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const own = (name: string) => `"${name}" is rollout's own setting (vars.${name}), not a var a playbook can use; use another name`;
  p.phases.forEach((phase, i) => {
    if (phase.when !== undefined && ROLLOUT_VARS.has(phase.when)) problems.push(`phases[${i}].when: ${own(phase.when)}`);
    else if (phase.when !== undefined && typeof values[phase.when] !== 'boolean') {
      problems.push(`phases[${i}].when: "${phase.when}" is not a boolean var of the inventory`);
    }
    phase.tasks.forEach((task, j) => {
      const v = 'value' in task ? task.value : undefined;
      const name = v && typeof v === 'object' && 'var' in v ? (v as { var: string }).var : undefined;
      if (name !== undefined && ROLLOUT_VARS.has(name)) problems.push(`phases[${i}].tasks[${j}].value: var ${own(name)}`);
      else if (name !== undefined && !(name in values)) problems.push(`phases[${i}].tasks[${j}].value: var "${name}" is not defined by the inventory`);
    });
  });
  return problems;
}

/** Pure. The var names a playbook refers to, validated or not yet: phases[].when and every `{ var: NAME }` task value. */
export function playbookVars(playbook: unknown): Set<string> {
  const used = new Set<string>();
  const phases = (playbook as { phases?: unknown } | null)?.phases;
  for (const phase of Array.isArray(phases) ? phases : []) {
    const p = phase as { when?: unknown; tasks?: unknown } | null;
    if (typeof p?.when === 'string') used.add(p.when);
    for (const task of Array.isArray(p?.tasks) ? p.tasks : []) {
      const value = (task as { value?: unknown } | null)?.value;
      if (value && typeof value === 'object' && typeof (value as { var?: unknown }).var === 'string') used.add((value as { var: string }).var);
    }
  }
  return used;
}
