// A saved plan (`rollout plan --out FILE`): what was reviewed, as checksums and
// redacted diffs. It holds no file content and no secret: apply recomputes the
// content from the inventory and refuses unless every checksum still matches.
import { lstat, readFile } from 'node:fs/promises';
import { z } from 'zod';
import { InputError, UsageError } from '../errors.js';
import { writeFileDurably } from '../util/durable-file.js';
import type { Plan } from './types.js';

const ChangeRefSchema = z.strictObject({ phase: z.string(), path: z.string(), beforeSha256: z.string(), afterSha256: z.string() });
const RestartRefSchema = z.strictObject({ phase: z.string(), unit: z.string() });

export const PlanFileSchema = z.strictObject({
  kind: z.literal('rollout-plan'),
  version: z.literal(1),
  createdAt: z.string(),
  /** Absolute path of the inventory the plan was made from; apply reads it again. */
  inventory: z.string(),
  inventorySha256: z.string(),
  playbookSha256: z.string(),
  /** The plan exactly as it was shown (secrets redacted). */
  rendered: z.string(),
  /** Per node its file changes and its restarts (absent in plans saved before restarts were: then not compared). */
  nodes: z.array(z.strictObject({ name: z.string(), changes: z.array(ChangeRefSchema), restarts: z.array(RestartRefSchema).optional() })),
});
export type PlanFile = z.infer<typeof PlanFileSchema>;

/** Pure. The saved form of a plan. */
export function toPlanFile(plan: Plan, inventory: string, inventorySha256: string, playbookSha256: string, rendered: string): PlanFile {
  return {
    kind: 'rollout-plan',
    version: 1,
    createdAt: new Date().toISOString(),
    inventory,
    inventorySha256,
    playbookSha256,
    rendered,
    nodes: plan.nodes.map((n) => ({
      name: n.node.name,
      changes: n.status === 'ready' ? n.phases.flatMap((p) => p.changes.map((c) => ({ phase: p.name, path: c.path, beforeSha256: c.beforeSha256, afterSha256: c.afterSha256 }))) : [],
      restarts: n.status === 'ready' ? n.phases.flatMap((p) => (p.restart ? [{ phase: p.name, unit: p.restart.unit }] : [])) : [],
    })),
  };
}

/**
 * Throws UsageError unless `file` may take a saved plan: a new file, or a
 * regular file that holds a saved plan already. Anything else (the inventory,
 * the playbook, a link) would be lost to an overwrite, so it is refused.
 */
export async function checkPlanOut(file: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(file);
  } catch {
    return;
  }
  if (stat.isSymbolicLink()) throw new UsageError(`--out ${file} is a symbolic link; give the path of a new file (or of a saved plan) instead`);
  if (!stat.isFile() || (await readPlanFile(file).catch(() => null)) === null) {
    throw new UsageError(`--out ${file} already exists and is not a saved plan (it would be overwritten); choose a new file for the plan`);
  }
}

export async function writePlanFile(file: string, saved: PlanFile): Promise<void> {
  await writeFileDurably(file, `${JSON.stringify(saved, null, 2)}\n`);
}

/** A saved plan, or null when `file` is not one (an inventory, say). */
export async function readPlanFile(file: string): Promise<PlanFile | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  if (!text.trimStart().startsWith('{')) return null;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  if ((json as { kind?: unknown }).kind !== 'rollout-plan') return null;
  const parsed = PlanFileSchema.safeParse(json);
  if (!parsed.success) throw new InputError(file, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  return parsed.data;
}

/**
 * Pure. Why the fresh plan is not the saved one: a file that changed on a node
 * since (stale), content the inventory now produces differently, changes
 * that appeared or vanished, or a restart that did. Empty when apply may go ahead.
 */
export function compareWithPlanFile(saved: PlanFile, plan: Plan): string[] {
  const problems: string[] = [];
  const fresh = toPlanFile(plan, saved.inventory, '', '', '');
  const key = (node: string, c: { phase: string; path: string }) => `${node}:${c.path} (phase ${c.phase})`;
  const freshChanges = new Map(fresh.nodes.flatMap((n) => n.changes.map((c) => [key(n.name, c), c] as const)));
  const savedNodes = new Set(saved.nodes.map((n) => n.name));
  for (const n of plan.nodes) {
    if (!savedNodes.has(n.node.name)) problems.push(`${n.node.name}: not in the saved plan (the inventory changed)`);
  }
  for (const n of saved.nodes) {
    const now = plan.nodes.find((p) => p.node.name === n.name);
    if (!now) {
      problems.push(`${n.name}: in the saved plan but not in the inventory any more`);
      continue;
    }
    if (now.status === 'error') continue;
    // A restart is compared where the files are not: a different restart with the same files means the playbook changed.
    const freshNode = fresh.nodes.find((f) => f.name === n.name);
    if (n.restarts && freshNode) {
      const paths = (changes: PlanFile['nodes'][number]['changes'], phase: string) => changes.filter((c) => c.phase === phase).map((c) => c.path).sort().join('\n');
      for (const phase of new Set([...n.restarts, ...(freshNode.restarts ?? [])].map((r) => r.phase))) {
        const was = n.restarts.find((r) => r.phase === phase)?.unit ?? null;
        const is = freshNode.restarts?.find((r) => r.phase === phase)?.unit ?? null;
        if (was !== is && paths(n.changes, phase) === paths(freshNode.changes, phase)) {
          problems.push(`plan is stale: ${n.name} (phase ${phase}) now restarts ${is ?? 'nothing'} where the saved plan restarts ${was ?? 'nothing'}`);
        }
      }
    }
    for (const c of n.changes) {
      const f = freshChanges.get(key(n.name, c));
      freshChanges.delete(key(n.name, c));
      if (!f) problems.push(`plan is stale: ${key(n.name, c)} changed since the plan was made (it no longer needs the planned change)`);
      else if (f.beforeSha256 !== c.beforeSha256) problems.push(`plan is stale: ${key(n.name, c)} was edited since the plan was made`);
      else if (f.afterSha256 !== c.afterSha256) problems.push(`${key(n.name, c)}: the inventory (or a secret) now gives different content than the saved plan`);
    }
  }
  for (const k of freshChanges.keys()) problems.push(`plan is stale: ${k} now needs a change the saved plan does not have`);
  return problems;
}
