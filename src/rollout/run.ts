import { Listr, PRESET_TIMESTAMP, type ListrTask } from 'listr2';
import { applyNodePhase, type PhaseOutcome } from '../apply/apply-node.js';
import { RolloutFailedError } from '../errors.js';
import type { NodePlan, Plan } from '../plan/types.js';
import type { Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import type { CompiledGate } from './gate.js';

type ReadyNode = Extract<NodePlan, { status: 'ready' }>;

/** How progress is shown: live tree on a TTY, plain timestamped lines elsewhere, or nothing. */
export type ProgressStyle = 'tty' | 'plain' | 'silent';

/** Per node and phase what happened, in order. Returned even when the rollout fails. */
export type RolloutResult = {
  runId: string;
  outcomes: PhaseOutcome[];
  failure: RolloutFailedError | null;
};

/** What the rollout needs: the open connections, the gate, the redactor. */
export type RolloutOptions = {
  runId: string;
  gate: CompiledGate;
  redact: Redactor;
  transports: ReadonlyMap<string, Transport>;
  progress: ProgressStyle;
};

/**
 * Runs each enabled phase over the nodes strictly one at a time (preflight has
 * passed before this is called). The first failed node stops everything after it; a later phase
 * starts only when the earlier one passed its gate on every node.
 */
export async function runRollout(plan: Plan, opts: RolloutOptions): Promise<RolloutResult> {
  const nodes = plan.nodes.filter((n): n is ReadyNode => n.status === 'ready');
  const result: RolloutResult = { runId: opts.runId, outcomes: [], failure: null };
  const transport = (name: string) => opts.transports.get(name)!;

  const phases: ListrTask[] = plan.phases
    .filter((p) => p.enabled)
    .map((phase, i) => ({
      title: `Phase ${i + 1}: ${phase.name}`,
      task: (_ctx, task) =>
        task.newListr(
          nodes.map((n): ListrTask => {
            const phasePlan = n.phases.find((p) => p.name === phase.name)!;
            return {
              title: n.node.name,
              task: async (_c, sub) => {
                if (phasePlan.changes.length === 0) {
                  result.outcomes.push({ node: n.node.name, phase: phase.name, status: 'unchanged', files: [], gate: null });
                  sub.skip(`${n.node.name}: up to date`);
                  return;
                }
                const started = Date.now();
                try {
                  const outcome = await applyNodePhase(transport(n.node.name), phasePlan, {
                    runId: opts.runId,
                    gate: opts.gate,
                    redact: opts.redact,
                    progress: (text) => {
                      sub.output = opts.redact(text);
                    },
                  });
                  result.outcomes.push(outcome);
                  sub.title = `${n.node.name}: ${phasePlan.restartUnit ? 'written, restarted, ready' : 'written'} in ${((Date.now() - started) / 1000).toFixed(1)} s`;
                } catch (err) {
                  if (!(err instanceof RolloutFailedError)) throw err;
                  // The full story (evidence lines) is printed once by the CLI; the tree gets the verdict.
                  result.failure = err;
                  throw new Error(err.restored ? 'failed its gate; restored from its backup and healthy again' : 'failed and could NOT be restored to a healthy state');
                }
              },
            };
          }),
          { concurrent: false, exitOnError: true },
        ),
    }));

  const listr = new Listr(phases, {
    concurrent: false,
    exitOnError: true,
    renderer: opts.progress === 'tty' ? 'default' : opts.progress === 'plain' ? 'simple' : 'silent',
    rendererOptions: { collapseSubtasks: false, showErrorMessage: false } as never,
    fallbackRendererOptions: { timestamp: PRESET_TIMESTAMP } as never,
    fallbackRenderer: 'simple',
    fallbackRendererCondition: () => opts.progress !== 'tty',
  });
  try {
    await listr.run();
  } catch (err) {
    if (!result.failure) throw err;
  }
  return result;
}

/** Pure. One line per node and phase: what happened, including nodes never reached. */
export function renderSummary(plan: Plan, result: RolloutResult): string {
  const lines = [`Summary of run ${result.runId}:`];
  const enabled = plan.phases.filter((p) => p.enabled);
  for (const n of plan.nodes) {
    for (const phase of enabled) {
      const outcome = result.outcomes.find((o) => o.node === n.node.name && o.phase === phase.name);
      let what: string;
      if (outcome?.status === 'applied') {
        const g = outcome.gate;
        what = g ? `changed, restarted, ready after ${((g.decidedAt - g.startedAt) / 1000).toFixed(1)} s` : 'changed (no restart needed)';
      } else if (outcome?.status === 'unchanged') what = 'up to date, not restarted';
      else if (result.failure?.node === n.node.name) what = result.failure.restored ? 'FAILED its gate: restored from backup, healthy on the old files' : 'FAILED and NOT restored: needs attention now';
      else what = 'not started (nothing changed)';
      lines.push(`  ${n.node.name.padEnd(12)} ${phase.name.padEnd(20)} ${what}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
