import { Listr, PRESET_TIMESTAMP, type ListrTask } from 'listr2';
import { applyNodePhase, dismissTurn, openTurn, outcomeOf, type NodeWork, type PhaseOutcome } from './apply-node.js';
import { InterruptedError, RolloutFailedError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import type { RunRecorder } from '../state/run-state.js';
import type { LineStream, Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import type { CompiledGate } from '../rollout/gate.js';
import type { AheadPings, GateRun } from '../rollout/restart-gate.js';
import type { ServiceState } from '../rollout/journal.js';
import { askApi, type ApiAnswer, type ApiTarget, type StateReader } from '../rollout/service-probe.js';
import { apiTargets } from '../rollout/cluster.js';
import type { ClusterGuard } from './cluster-guard.js';

/** How progress is shown: live tree on a TTY, plain timestamped lines elsewhere, or nothing. */
export type ProgressStyle = 'tty' | 'plain' | 'silent';

/** Set by the CLI's signal handler; the rollout stops before the next node when `requested`. */
export type StopSignal = { requested: boolean };

/** Per node and phase what happened, in order. Returned even when the rollout fails. */
export type RolloutResult = {
  runId: string;
  outcomes: PhaseOutcome[];
  failure: RolloutFailedError | null;
  interrupted: boolean;
};

/** What the rollout needs: the work, the open connections, the gate, the run record. */
export type RolloutOptions = {
  runId: string;
  /** Names this run's staged copies (see stagedPath). */
  stageKey: string;
  unit: string;
  gate: CompiledGate;
  redact: Redactor;
  transports: ReadonlyMap<string, Transport>;
  recorder: RunRecorder;
  progress: ProgressStyle;
  stop: StopSignal;
  /** Each node's service when the run started (or at its own gate since): before a restart every other node must still be so. */
  baseline: Map<string, ServiceState>;
  /** Reads a node's unit state now (the state probes). */
  readState: StateReader;
  /** One request to a node's own /v1/health/ready (the state probes); absent: a plain command on its connection. */
  readReady?: (node: string, target: ApiTarget) => Promise<ApiAnswer>;
  /** List only the nodes and phases `work` has items for (a canary, or the rest after it). */
  workOnly?: boolean;
  /** Machine-readable progress (--json): node-start, step, node-done, node-failed, node-skipped. */
  onEvent?: (name: string, data: Record<string, unknown>) => void;
  /** With vars.cluster.apiKey: each phase's order (leader last) and, after each gate, the node back in the cluster. */
  cluster?: ClusterGuard;
  /** The first turn's restart channel, opened ahead by the caller (openTurn); dismissed if that turn is not `item`'s. */
  ahead?: { item: NodeWork; stream: LineStream };
};

/**
 * Runs the phases over the nodes strictly one at a time (preflight has passed).
 * Before each restart every other node must be healthy and unrestarted since it
 * was last seen healthy; the first failure stops everything after it; a later
 * phase starts only when the earlier one passed its gate on every node.
 */
export async function execute(plan: Plan, work: readonly NodeWork[], opts: RolloutOptions): Promise<RolloutResult> {
  const result: RolloutResult = { runId: opts.runId, outcomes: [], failure: null, interrupted: false };
  const nodes = plan.nodes.map((n) => n.node.name);
  const api = apiTargets(plan);
  const readReady = opts.readReady ?? ((node: string, target: ApiTarget) => askApi(opts.transports.get(node)!, 'ready', target));
  const ready = (node: string) => {
    const target = api.get(node)?.target;
    return target ? readReady(node, target) : null;
  };
  // The next turn's check of the other nodes when it went out with this turn's
  // first readiness question (onGated below): one round trip for both.
  let early: { next: string; check: Promise<void> } | null = null;
  const othersHealthy = (next: string): Promise<void> => {
    const e = early;
    early = null;
    return e?.next === next ? e.check : checkOthersHealthy(next, { ...opts, ready });
  };
  // After a gate: the first question through the node's probe (one round trip; a
  // started node usually answers 200 at once), and only when that is not yet 200,
  // the polling command on the node; the others are then asked again at the next
  // turn, so that their answers are never older than this node's.
  const askReadyAfterGate: typeof askApi = async (t, what, target, seconds) => {
    if (what === 'ready' && opts.readReady) {
      const first = await opts.readReady(t.name, target);
      if (first.ok) return first;
    }
    early = null;
    if (ahead) ahead.pings = { ...ahead.pings, fresh: false };
    return askApi(t, what, target, seconds);
  };
  // The next turn's restart channel, opened once this turn's restart returned, so that
  // its checks and cursor are done by the time the turn comes; a turn that never
  // comes sends it `stop` (nothing on that node changes).
  let ahead: { item: NodeWork; stream: LineStream; pings: AheadPings } | null = opts.ahead ? { ...opts.ahead, pings: { sent: 0, fresh: false } } : null;
  const takeAhead = (item: NodeWork | null): { stream: LineStream; pings: AheadPings } | undefined => {
    const a = ahead;
    ahead = null;
    if (a && a.item === item) return a;
    dismissTurn(a?.stream);
    return undefined;
  };
  // Each phase's order once it started (the leader last, with a cluster guard).
  const orders = new Map<string, string[]>();
  // The work item whose turn comes after `after`'s in this phase, if any.
  const nextItem = (phase: string, after: string): NodeWork | undefined => {
    const order = orders.get(phase) ?? nodes;
    const rest = order.slice(order.indexOf(after) + 1);
    return rest.map((name) => work.find((w) => w.node === name && w.phase === phase)).find((w) => w !== undefined);
  };
  const openAhead = (phase: string, after: string) => {
    takeAhead(null);
    const next = nextItem(phase, after);
    const stream = next ? openTurn(opts.transports.get(next.node)!, next, opts.stageKey, opts.gate) : null;
    if (next && stream) ahead = { item: next, stream, pings: { sent: 0, fresh: false } };
  };
  // When `name` passed its journal gate with `state`: the next turn's check of the
  // others goes out now, with `name`'s readiness question, `name` held to the state
  // that passed (its readiness is that question's), and so does the ping of the next
  // turn's waiting channel. Not with a cluster guard: its check after the gate may
  // wait for the node to rejoin, longer than the others' answers should be trusted.
  const askOthersEarly = (phase: string, name: string, state: ServiceState | undefined) => {
    const next = nextItem(phase, name);
    if (!next || !state || opts.cluster || !opts.readReady) return;
    const baseline = new Map(opts.baseline);
    if (baseline.has(name)) baseline.set(name, state);
    const check = checkOthersHealthy(next.node, { ...opts, baseline, ready: (n) => (n === name ? null : ready(n)) });
    check.catch(() => undefined); // awaited at the next turn, or dropped
    early = { next: next.node, check };
    if (ahead?.item === next && ahead.stream.send('ping\n')) ahead.pings = { sent: ahead.pings.sent + 1, fresh: true };
  };

  // An event about the run rather than one node's turn (its data names the node).
  const emitRun = (event: string, data: Record<string, unknown>) => opts.onEvent?.(event, data);
  const phases: ListrTask[] = plan.phases
    .filter((p) => p.enabled)
    .map((phase, i) => ({ phase, i }))
    .filter(({ phase }) => !opts.workOnly || work.some((w) => w.phase === phase.name))
    .map(({ phase, i }) => ({
      title: `Phase ${i + 1}: ${phase.name}`,
      task: async (_ctx, task) => {
        const names = nodes.filter((name) => !opts.workOnly || work.some((w) => w.node === name && w.phase === phase.name));
        let order = names;
        try {
          if (opts.cluster) order = await opts.cluster.order(phase.name, names);
        } catch (err) {
          if (!(err instanceof RolloutFailedError)) throw err;
          result.failure = err;
          emitRun('node-failed', { node: err.node, phase: phase.name, restored: false, summary: err.summary, message: opts.redact(err.message) });
          throw new Error('stopped before this phase: see below');
        }
        orders.set(phase.name, order);
        return task.newListr(
          order.map((name): ListrTask => {
            const item = work.find((w) => w.node === name && w.phase === phase.name);
            return {
              title: name,
              task: async (_c, sub) => {
                const emit = (event: string, data: Record<string, unknown> = {}) => opts.onEvent?.(event, { node: name, phase: phase.name, ...data });
                if (!item) {
                  result.outcomes.push({ node: name, phase: phase.name, status: 'unchanged', files: [], gate: null });
                  emit('node-skipped', { reason: 'up to date' });
                  sub.skip(`${name}: up to date`);
                  return;
                }
                const channel = takeAhead(item);
                if (opts.stop.requested) {
                  dismissTurn(channel?.stream);
                  result.interrupted = true;
                  throw new InterruptedError(`interrupted before ${name} (phase ${phase.name}); every node is in its old or new state`);
                }
                const started = Date.now();
                emit('node-start', { mode: item.mode });
                // What a hard stop records as unknown while this turn runs.
                opts.recorder.current = { node: name, phase: phase.name };
                try {
                  // The health check of the other nodes runs while this node's channel opens
                  // (or went out with the last node's readiness question); nothing on the
                  // node changes before it passed.
                  const outcome = await applyNodePhase(opts.transports.get(name)!, item, {
                    beforeRestart: () => othersHealthy(name),
                    ...(api.has(name) ? { api: api.get(name)!, askApi: askReadyAfterGate, onGated: (state) => askOthersEarly(phase.name, name, state) } : {}),
                    ...(channel ? { channel: channel.stream, pings: channel.pings } : {}),
                    onRestarted: () => openAhead(phase.name, name),
                    runId: opts.runId,
                    stageKey: opts.stageKey,
                    gate: opts.gate,
                    redact: opts.redact,
                    recorder: opts.recorder,
                    progress: (text) => {
                      sub.output = opts.redact(text);
                      emit('step', { text: opts.redact(text) });
                    },
                  });
                  result.outcomes.push(outcome);
                  // The state that passed the gate is this node's healthy state from now on.
                  const gated = outcome.gate?.state;
                  if (gated && opts.baseline.has(name)) opts.baseline.set(name, gated);
                  // Writes need every member: the next node goes down only once this one is back.
                  const lost = outcome.gate && opts.cluster ? await opts.cluster.afterGate(name) : null;
                  if (lost) {
                    throw new RolloutFailedError(name, false,
                      `${name} passed its gate (its log and API say ready), but it is not back in the cluster: ${lost}.\n${name} runs the new files; no further node was touched. Check the cluster (\`minkms stat\`), then \`rollout apply INVENTORY --resume\`.`,
                      'restarted and ready, but not back in the cluster (see below)');
                  }
                  emit('node-done', { seconds: (Date.now() - started) / 1000, gate: gateData(outcome.gate, opts.redact) });
                  sub.title = `${name}: ${item.restartUnit ? (item.mode === 'full' ? 'written, restarted, ready' : 'restarted, ready') : 'written'} in ${((Date.now() - started) / 1000).toFixed(1)} s`;
                } catch (err) {
                  if (!(err instanceof RolloutFailedError)) throw err;
                  // The full story (evidence lines) is printed once by the CLI; the tree gets the verdict.
                  result.failure = err;
                  const failed = outcomeOf(err);
                  if (failed) result.outcomes.push(failed);
                  emit('node-failed', { seconds: (Date.now() - started) / 1000, restored: err.restored, summary: err.summary, message: opts.redact(err.message), gate: gateData(failed?.gate ?? null, opts.redact) });
                  throw new Error(err.restored ? 'stopped here; this node is healthy on its old files' : 'needs attention: see below');
                } finally {
                  opts.recorder.current = null;
                }
              },
            };
          }),
          { concurrent: false, exitOnError: true },
        );
      },
    }));

  const listr = new Listr(phases, {
    concurrent: false,
    exitOnError: true,
    registerSignalListeners: false,
    renderer: opts.progress === 'tty' ? 'default' : opts.progress === 'plain' ? 'simple' : 'silent',
    rendererOptions: { collapseSubtasks: false, showErrorMessage: false } as never,
    fallbackRendererOptions: { timestamp: PRESET_TIMESTAMP } as never,
    fallbackRenderer: opts.progress === 'silent' ? 'silent' : 'simple',
    fallbackRendererCondition: () => opts.progress === 'plain',
  });
  try {
    await listr.run();
  } catch (err) {
    if (!result.failure && !result.interrupted) throw err;
  } finally {
    takeAhead(null);
  }
  return result;
}

/**
 * Never take a second node down: before restarting `next`, every other node
 * must be running the very invocation it ran when last seen healthy (systemd
 * asked on the node, through its probe). With `ready`, each such node's own
 * API must also answer /v1/health/ready with 200 (one request, asked on the
 * node, sent with the state question; null: the node has no API to ask).
 */
export async function checkOthersHealthy(next: string, opts: Pick<RolloutOptions, 'baseline' | 'readState' | 'unit'> & { ready?: (node: string) => Promise<ApiAnswer> | null }): Promise<void> {
  const problems: string[] = [];
  await Promise.all(
    [...opts.baseline].map(async ([name, seen]) => {
      if (name === next) return;
      try {
        // Both questions go down the node's probe at once: one round trip, not two.
        const ready = opts.ready?.(name) ?? null;
        ready?.catch(() => undefined);
        const now = await opts.readState(name);
        if (now.activeState !== 'active' || now.subState !== 'running') problems.push(`${name}: ${opts.unit} is ${now.activeState}/${now.subState}`);
        else if (now.invocationId !== seen.invocationId) problems.push(`${name}: ${opts.unit} restarted since it was last seen healthy (${now.nRestarts} restarts)`);
        else {
          const answer = await ready;
          if (answer && !answer.ok) problems.push(`${name}: ${opts.unit} is active/running but its API is not ready (/v1/health/ready: ${answer.problem})`);
        }
      } catch (err) {
        problems.push(`${name}: cannot be checked (${(err as Error).message})`);
      }
    }),
  );
  if (problems.length > 0) {
    throw new RolloutFailedError(
      next,
      false,
      `not restarting ${next}: another node is not healthy, and restarting ${next} now could take a second node down:\n${problems.sort().map((p) => `  - ${p}`).join('\n')}\n${next} was not touched. Fix the node(s) above, then \`rollout apply INVENTORY --resume\`.`,
      'untouched: another node is unhealthy (see below)',
    );
  }
}

/** Pure. One line per node and phase: what happened, including nodes never reached. */
export function renderSummary(plan: Plan, result: RolloutResult, work: readonly NodeWork[]): string {
  const lines = [`Summary of run ${result.runId}:`];
  const enabled = plan.phases.filter((p) => p.enabled);
  for (const n of plan.nodes) {
    for (const phase of enabled) {
      const outcome = result.outcomes.find((o) => o.node === n.node.name && o.phase === phase.name);
      const planned = work.some((w) => w.node === n.node.name && w.phase === phase.name);
      let what: string;
      if (outcome?.status === 'applied') {
        const g = outcome.gate;
        what = g ? `changed, restarted, ready after ${((g.decidedAt - g.startedAt) / 1000).toFixed(1)} s` : 'changed (no restart needed)';
        // Stopped right after this step (the cluster did not show the node back).
        if (result.failure?.node === n.node.name && result.outcomes.at(-1) === outcome) what += `; then STOPPED: ${result.failure.summary}`;
      } else if (outcome?.status === 'unchanged' || !planned) what = 'up to date, not restarted';
      else if (result.failure?.node === n.node.name) what = `STOPPED here: ${result.failure.summary}`;
      else what = 'not started (old files, untouched)';
      lines.push(`  ${n.node.name.padEnd(12)} ${phase.name.padEnd(20)} ${what}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

// A gate run as an event's data: verdict, timing and the deciding journal lines, redacted.
function gateData(g: GateRun | null, redact: Redactor): Record<string, unknown> | null {
  if (!g) return null;
  return {
    verdict: g.verdict.status,
    reason: redact(g.verdict.reason),
    seconds: (g.decidedAt - g.startedAt) / 1000,
    evidence: g.verdict.evidence.map((e) => ({ at: new Date(e.realtimeUs / 1000).toISOString(), line: redact(e.message) })),
  };
}
