// The apply step: from a session (the plan, under the lock) to a finished run:
// saved-plan comparison, resume decision, preflight, staging, the run record,
// the rollout (or canary then rest), the report, and the release. The CLI
// gives it a view to write to and the questions to ask; it never exits.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { InterruptedError, NotConfirmedError, PreflightError, UsageError, type RolloutError } from '../errors.js';
import { EXIT } from '../exit-codes.js';
import { compareWithPlanFile, readPlanFile, type PlanFile } from '../plan/plan-file.js';
import type { Plan } from '../plan/types.js';
import { checkedServiceState } from '../preflight/node-checks.js';
import type { PreflightFlags } from '../preflight/run-preflight.js';
import { compileGate } from '../rollout/gate.js';
import type { ServiceState } from '../rollout/journal.js';
import { lockFleet, lockHolder, releaseLock } from '../rollout/lock.js';
import { renderGateEvidence } from '../rollout/restart-gate.js';
import { openServiceProbes, type ServiceProbes, type StateReader } from '../rollout/service-probe.js';
import { openSession, type Session, type SessionOptions } from './session.js';
import { planResume, workFromPlan } from '../state/resume.js';
import { loadLastRun, newRunState, RunRecorder, stateDirFor, type RunState } from '../state/run-state.js';
import { BACKUP_ROOT, newStageKey, stagedPath, type StageItem } from '../agent/files.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { fileSha256 } from '../util/sha256.js';
import { rolloutVersion } from '../util/version.js';
import { dismissTurn, openTurn, stageWork, stepFile, type NodeWork } from '../apply/apply-node.js';
import type { ProgressStyle, RolloutOptions, RolloutResult, StopSignal } from '../apply/execute.js';
import { clusterGuard, type ClusterGuard } from '../apply/cluster-guard.js';
import { restartOrder } from '../preflight/cluster-checks.js';
import { apiTargets, backupCluster } from '../rollout/cluster.js';
import type { KmsBackup } from '../state/run-state.js';

export type ApplyFlags = PreflightFlags & { parallel?: number; yes?: boolean; dryRun?: boolean; resume?: boolean; breakLock?: boolean; limit?: string; canary?: boolean; acceptNewHostKeys?: boolean };

/** Where the apply step writes: the CLI's Output fits it. */
export type ApplyView = {
  readonly mode: 'human' | 'quiet' | 'json';
  useRedactor(r: (s: string) => string): void;
  out(text: string): void;
  result(text: string): void;
  err(text: string): void;
  event(name: string, data?: Record<string, unknown>): void;
};

/** What the apply step asks of its caller: rendering the plan and checks, questions, signals. */
export type ApplyHooks = {
  view: ApplyView;
  /** Shows the plan (diffs, or JSON events). */
  showPlan(plan: Plan, redact: (s: string) => string): Promise<void> | void;
  /** Runs the preflight checks and shows them; throws PreflightError when any failed. */
  preflight(session: Session, flags: PreflightFlags): Promise<void>;
  /** Asks to go on; throws NotConfirmedError when not confirmed. Without arguments: the question before the first change. */
  confirm(question?: string, declined?: string): Promise<void>;
  progress: ProgressStyle;
  /** Subscribes to Ctrl-C/SIGTERM while the rollout runs; returns the unsubscribe. */
  onInterrupt(handler: () => void): () => void;
  /** A second interrupt: the node in progress was recorded unknown; the caller ends the process (130). */
  onHardStop(): void;
  /** Loaded while the nodes are read (the process mostly waits then), not before the first connection. */
  preload?: () => Promise<unknown>;
  /** How nodes are connected to (tests: an in-memory fleet). */
  connect?: SessionOptions['connect'];
};

/** A run id that sorts by time and names the backups on the nodes. */
export function newRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

// A recorder that records nothing more after a hard stop: the process is ending,
// and what it recorded then (the node in progress unknown) must stay.
class StoppableRecorder extends RunRecorder {
  stopped = false;
  override save(): Promise<void> {
    return this.stopped ? Promise.resolve() : super.save();
  }
}

// Loaded once the first node is read: the rollout (listr2) and the report need
// not delay the first connection.
type Later = [typeof import('../apply/execute.js'), typeof import('../report/audit-report.js'), unknown];

/**
 * `rollout apply`: the plan (or a saved one, refused if stale), preflight, the
 * fleet lock, a confirmation, then the phases node by node with backups,
 * atomic writes and the journal gate, recording every step. With `resume` it
 * continues the last run from what the nodes hold now. Returns the exit code;
 * throws the error that stopped it (the CLI maps it).
 */
export async function runApply(target: string, flags: ApplyFlags, hooks: ApplyHooks): Promise<number> {
  const io = hooks.view;
  const saved = await readPlanFile(target);
  if (saved && flags.resume) throw new UsageError('--resume continues the last run of an inventory: give the inventory, not a saved plan');
  const inventoryFile = path.resolve(saved ? saved.inventory : target);
  const last = flags.resume ? await loadLastRun(inventoryFile) : null;
  if (flags.resume && !last) throw new UsageError(`no run of ${inventoryFile} is recorded (in ${stateDirFor(inventoryFile)}); nothing to resume`);
  if (last?.state.status === 'done') {
    io.result(`The last run (${last.state.runId}) completed; nothing to resume.`);
    return EXIT.ok;
  }

  const runId = last ? last.state.runId : newRunId();
  const me = lockHolder(runId, inventoryFile);
  let later: Promise<Later> | undefined;
  const loadLater = () => (later ??= Promise.all([import('../apply/execute.js'), import('../report/audit-report.js'), hooks.preload?.()]));
  // Each node's state probe opens as soon as that node is read (it is idle from
  // then on), so that staging and the baseline need no new session. A dry run takes no lock.
  const probeHosts = new Map<string, Transport>();
  let probes: ServiceProbes | null = null;
  const session = await openSession(inventoryFile, {
    ...flags,
    ...(hooks.connect ? { connect: hooks.connect } : {}),
    ...(flags.dryRun
      ? {}
      : {
          lock: me,
          onRead: (name: string, t: Transport, unit: string) => {
            loadLater().catch(() => undefined); // awaited below
            probeHosts.set(name, t);
            (probes ??= openServiceProbes(probeHosts, unit)).open(name);
          },
        }),
    vault: { health: !flags.dryRun && !flags.skipVaultChecks, checks: { skipVaultChecks: flags.skipVaultChecks === true, skipVaultLogin: flags.skipVaultLogin === true } },
  });
  try {
    const [executor, report] = await loadLater();
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    if (!flags.dryRun) await lockFleet([...session.transports.values()], me, { staleMs: session.inventory.lockStaleMs, breakLock: flags.breakLock === true }, session.lockAttempts);
    const run: ApplyRun = { session, flags, hooks, inventoryFile, runId, stageKey: newStageKey(), me, last, saved, executor, report, probeHosts, work: [], recorder: null, hardStop: false, pruneKeep: undefined, held: null };
    try {
      return await applyPlan(run, () => (probes ??= openServiceProbes(probeHosts, session.playbook.service.unit)));
    } finally {
      if (!run.hardStop && !flags.dryRun) await releaseFleet(run, probes);
      dismissTurn(run.held?.stream);
      (probes as ServiceProbes | null)?.close();
    }
  } finally {
    // Vault checks started early end with their token revoked, even when the run stopped before using them.
    await session.vaultChecks?.catch(() => undefined);
    session.close();
  }
}

// What one apply carries from step to step.
type ApplyRun = {
  session: Session;
  flags: ApplyFlags;
  hooks: ApplyHooks;
  inventoryFile: string;
  runId: string;
  stageKey: string;
  me: ReturnType<typeof lockHolder>;
  last: { state: RunState; dir: string } | null;
  saved: PlanFile | null;
  executor: Later[0];
  report: Later[1];
  probeHosts: Map<string, Transport>;
  work: NodeWork[];
  recorder: StoppableRecorder | null;
  hardStop: boolean;
  pruneKeep: number | undefined;
  /** The first turn's channel while apply holds it (see stageAll); nothing moves before its `go`. */
  held: { item: NodeWork; stream: LineStream } | null;
};

// The plan checked (saved plan, resume), preflight, confirmation, staging, the rollout, the report.
async function applyPlan(run: ApplyRun, openProbes: () => ServiceProbes): Promise<number> {
  const { session, flags, hooks, last, saved, runId } = run;
  const io = hooks.view;
  const { plan } = session;
  if (flags.order === 'leader-last' && !session.vars.cluster) {
    throw new UsageError(`--order leader-last needs vars.cluster.apiKey in ${session.inventory.file}: the leader is learnt from \`minkms stat\` (a SysAdmin key); without it restarts follow the inventory order`);
  }
  if (saved) {
    io.out(`Saved plan from ${saved.createdAt}:\n${saved.rendered}`);
    const problems = compareWithPlanFile(saved, plan);
    if (problems.length > 0) throw new PreflightError(problems, 'the saved plan does not match the nodes now, nothing was changed; run `rollout plan --out` again and review it');
  } else {
    await hooks.showPlan(plan, session.redact);
  }
  const failed = plan.nodes.filter((n) => n.status === 'error');
  if (failed.length > 0) throw new PreflightError(failed.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : ''}`));

  if (last) {
    const resume = await planResume(last.state, plan, session.transports, session.playbook.service.unit);
    if (resume.problems.length > 0) throw new PreflightError(resume.problems, `cannot resume run ${last.state.runId} safely, nothing was changed`);
    io.out(`Resuming run ${last.state.runId}: ${resume.verified.length ? `verified done: ${resume.verified.join(', ')}` : 'no node was done'}; ${resume.work.length} step(s) left.`);
    run.work = resume.work;
  } else {
    run.work = workFromPlan(plan);
  }
  if (run.work.length === 0) {
    if (last) await new RunRecorder(last.state, last.dir).finish('done');
    io.result('Every node is up to date: nothing to do, nothing restarted.');
    return EXIT.ok;
  }
  if (flags.dryRun) {
    io.result('Dry run: nothing was changed.');
    return EXIT.ok;
  }
  // The baseline comes through the state probes after the confirmation (see readBaseline).
  const probe = openProbes();
  await hooks.preflight(session, { ...flags, lockRunId: runId });
  await hooks.confirm();
  // A resumed run took its backup when it started.
  const kmsBackup = last ? null : await takeKmsBackup(run);
  const gate = compileGate(session.playbook.gate);
  const [staging, baseline] = await Promise.all([stageAll(run, probe, gate), readBaseline(session, probe, flags.yes === true)]);
  if (staging.length > 0) throw new PreflightError(staging, 'staging the new files failed; no file a service reads was changed');
  const rec = last
    ? new StoppableRecorder({ ...last.state, status: 'running' }, last.dir)
    : new StoppableRecorder(
        newRunState(runId, run.inventoryFile, run.me.user, run.me.host, run.work.map((w) => ({ node: w.node, phase: w.phase, restartUnit: w.restartUnit, files: w.changes.map((c) => stepFile(runId, c)) }))),
        stateDirFor(run.inventoryFile),
      );
  if (kmsBackup) rec.state.kmsBackup = kmsBackup;
  run.recorder = rec;
  await rec.save();
  io.out(`Run ${runId}: state in ${rec.file}; backups in /var/backups/rollout/${runId}/ on each node.`);
  io.event('run', { runId, stateFile: rec.file, steps: run.work.map((w) => ({ node: w.node, phase: w.phase, mode: w.mode })) });
  const stop: StopSignal = { requested: false };
  const unsubscribe = hooks.onInterrupt(() => {
    if (!stop.requested) {
      stop.requested = true;
      io.err('\nInterrupt: finishing the current node (its write, restart and gate), then stopping. Press Ctrl-C again to stop at once.');
      return;
    }
    run.hardStop = true;
    const node = rec.markInterruptedSync();
    rec.stopped = true;
    io.err(`\nStopped at once.${node ? ` ${node} is in an unknown state (recorded).` : ''} Every file is whole (writes are atomic). Check, then: rollout apply ${run.inventoryFile} --resume`);
    hooks.onHardStop();
  });
  try {
    const options: RolloutOptions = {
      runId,
      stageKey: run.stageKey,
      unit: session.playbook.service.unit,
      readState: probe.read,
      readReady: probe.ready,
      gate,
      redact: session.redact,
      transports: session.transports,
      recorder: rec,
      progress: io.mode === 'human' ? hooks.progress : 'silent',
      onEvent: (name, data) => io.event(name, data),
      stop,
      baseline,
      ...(session.vars.cluster ? { cluster: guardOf(run) } : {}),
    };
    // execute takes the first turn's channel over (and dismisses it when unused).
    if (run.held) options.ahead = run.held;
    run.held = null;
    const { result, declined } = await rollout(run, options);
    if (run.hardStop) return EXIT.interrupted;
    return await finish(run, rec, result, declined);
  } finally {
    unsubscribe();
  }
}

// The cluster's say in the order and after each gate (vars.cluster.apiKey given).
function guardOf(run: ApplyRun): ClusterGuard {
  const { session, flags } = run;
  const settings = session.inventory.vars.cluster;
  return clusterGuard({
    plan: session.plan,
    transports: session.transports,
    access: { apiKey: session.vars.cluster!.apiKey, cli: settings?.cli ?? '/usr/local/bin/minkms' },
    order: restartOrder(flags.order, true),
    complete: !session.inventory.limited,
    timeoutSeconds: settings?.readyTimeoutSeconds ?? 60,
    onLeader: (phase, leader) => {
      run.hooks.view.out(leader ? `Phase ${phase}: ${leader} leads the cluster; it restarts last.` : `Phase ${phase}: the cluster names no leader among these nodes; inventory order.`);
      run.hooks.view.event('cluster-order', { phase, leader });
    },
  });
}

// vars.cluster.backup: `minkms backup` on the first node that has an API, before
// the first change; a failure stops the run with nothing changed.
async function takeKmsBackup(run: ApplyRun): Promise<KmsBackup | null> {
  const { session, hooks, runId } = run;
  const settings = session.inventory.vars.cluster;
  const key = session.vars.cluster;
  if (!settings?.backup || !key) return null;
  const targets = apiTargets(session.plan);
  const node = [...targets.keys()].find((n) => session.transports.has(n));
  if (!node) throw new PreflightError(['no node of this run has a known KMS API to take the backup through'], 'the KMS backup (vars.cluster.backup) could not be taken; nothing was changed');
  const file = path.posix.join(settings.backupDir, `minkms-${runId}.db.gzip`);
  hooks.view.out(`Taking a MinKMS backup on ${node} into ${file} ...`);
  const r = await backupCluster(session.transports.get(node)!, targets.get(node)!.target, { apiKey: key.apiKey, cli: settings.cli }, file);
  if (!r.ok) {
    throw new PreflightError([`${node}: minkms backup failed: ${r.problem}${r.auth ? ` (${key.keyRef} was refused; give a SysAdmin API key that has not expired)` : ''}`],
      'the KMS backup (vars.cluster.backup) failed before the first change; nothing was changed');
  }
  const backup: KmsBackup = { node, path: r.path, sha256: r.sha256, bytes: r.bytes, at: new Date().toISOString() };
  hooks.view.out(`KMS backup: ${node}:${r.path} sha256 ${r.sha256} (${r.bytes} bytes)`);
  hooks.view.event('kms-backup', backup);
  return backup;
}

// The rollout itself; with --canary the first node alone, its evidence shown, then a question.
async function rollout(run: ApplyRun, options: RolloutOptions): Promise<{ result: RolloutResult; declined: NotConfirmedError | null }> {
  const { work, session, hooks, executor } = run;
  const { plan } = session;
  if (!run.flags.canary || work.length <= 1) return { result: await executor.execute(plan, work, options), declined: null };
  const first = await executor.execute(plan, work.slice(0, 1), { ...options, workOnly: true });
  const gate = first.outcomes[0]?.gate;
  if (first.failure || first.interrupted || !gate) return { result: first, declined: null };
  hooks.view.out(`\nCanary ${work[0]!.node} passed its gate in ${((gate.decidedAt - gate.startedAt) / 1000).toFixed(1)} s on the new files; the journal lines that decided it:\n${renderGateEvidence(gate, session.redact)}\n`);
  try {
    await hooks.confirm(`Continue with the other ${work.length - 1} step(s), one node at a time? Type "yes" to go on: `,
      `not confirmed after the canary: ${work[0]!.node} runs the new files, no other node was touched. Continue later with: rollout apply ${run.inventoryFile} --resume`);
  } catch (err) {
    if (!(err instanceof NotConfirmedError)) throw err;
    return { result: first, declined: err };
  }
  const { ahead: _taken, ...afterCanary } = options;
  const rest = await executor.execute(plan, work.slice(1), { ...afterCanary, workOnly: true });
  return { result: { ...rest, outcomes: [...first.outcomes, ...rest.outcomes] }, declined: null };
}

// The summary, the run's end recorded, the report written, then the outcome (thrown when the run stopped).
async function finish(run: ApplyRun, rec: RunRecorder, result: RolloutResult, declined: NotConfirmedError | null): Promise<number> {
  const { session, hooks, inventoryFile, runId, work } = run;
  const io = hooks.view;
  const { plan } = session;
  if (io.mode !== 'json') io.out(`\n${run.executor.renderSummary(plan, result, work)}`);
  const stopped: RolloutError | null = result.interrupted
    ? new InterruptedError(`interrupted: the run stopped between nodes, every node is in its old or new state and healthy. Continue with: rollout apply ${inventoryFile} --resume`)
    : (result.failure ?? declined);
  await rec.finish(result.interrupted ? 'interrupted' : result.failure ? (result.failure.restored ? 'stopped' : 'failed') : declined ? 'stopped' : 'done');
  // The change record, whatever the outcome, before the outcome is reported.
  const exitCode = result.interrupted ? EXIT.interrupted : result.failure ? (result.failure.restored ? EXIT.rolledBack : EXIT.rollbackFailed) : declined ? EXIT.notConfirmed : EXIT.ok;
  const { buildReport, reportDir, writeReport } = run.report;
  const report = buildReport({
    state: rec.state,
    plan,
    outcomes: result.outcomes,
    exitCode,
    message: stopped?.message ?? null,
    finishedAt: new Date(),
    version: rolloutVersion(),
    inventory: { file: session.inventory.file, sha256: await fileSha256(session.inventory.file) },
    playbook: { file: session.inventory.playbookFile, sha256: await fileSha256(session.inventory.playbookFile) },
    redact: session.redact,
    envKeys: session.playbook.secrets.envKeys,
  });
  const kept = report.backupsHoldingSecrets;
  if (kept.length > 0) {
    const keys = [...new Set(kept.flatMap((b) => b.keys))].join(', ');
    io.out(`Note: the backups this run took on ${[...new Set(kept.map((b) => b.node))].join(', ')} (${[...new Set(kept.map((b) => b.path))].join(', ')}) still hold ${keys}, which it removed from the files. Once the run is verified: rollout prune ${inventoryFile}`);
  }
  const dir = await writeReport(reportDir(stateDirFor(inventoryFile), runId), report).catch((err: Error) => {
    io.err(`warning: could not write the run report: ${err.message}`);
    return null;
  });
  if (dir) {
    io.result(`Report: ${path.join(dir, 'report.md')} (and report.json)`);
    io.event('report', { dir, markdown: path.join(dir, 'report.md'), json: path.join(dir, 'report.json') });
  }
  if (stopped) throw stopped;
  run.pruneKeep = session.inventory.backupsKeep;
  io.result(`Rollout complete: every node runs the new files and passed its gate. Backups: /var/backups/rollout/${runId}/ on each node.`);
  return EXIT.ok;
}

// Every node's new files staged (and backed up) at once. The first turn's channel
// opens once its node is staged, so its checks run while the others stage (it
// changes nothing before `go`).
async function stageAll(run: ApplyRun, probe: ServiceProbes, gate: ReturnType<typeof compileGate>): Promise<string[]> {
  const first = run.work[0]!;
  const stage = async (node: string, items: StageItem[]) => {
    const results = await probe.stage(node, items);
    if (node === first.node && first.mode === 'full' && results.every((r) => r === 'staged')) {
      const stream = openTurn(run.session.transports.get(node)!, first, run.stageKey, gate);
      if (stream) run.held = { item: first, stream };
    }
    return results;
  };
  return stageWork(run.session.transports, run.work, run.runId, run.stageKey, run.session.parallel, stage);
}

// The lock released on every node, with the staged copies never moved into place;
// a node this run never wrote to keeps no backup of it either. Backups are pruned
// only after a complete run. Through the state probes where they are open.
async function releaseFleet(run: ApplyRun, probes: ServiceProbes | null): Promise<void> {
  const steps = run.recorder?.state.steps ?? [];
  const staged = new Map<string, string[]>();
  for (const w of run.work) staged.set(w.node, [...(staged.get(w.node) ?? []), ...w.changes.map((c) => stagedPath(run.stageKey, c.path))]);
  for (const [name, paths] of staged) {
    const mine = steps.filter((s) => s.node === name);
    if (mine.every((s) => s.status === 'planned')) paths.push(`${BACKUP_ROOT}/${run.runId}`);
  }
  await Promise.all(
    [...run.session.transports].map(([name, t]) => {
      const opts = { remove: staged.get(name) ?? [], ...(run.pruneKeep === undefined ? {} : { pruneKeep: run.pruneKeep }) };
      return (probes ? probes.release(name, run.runId, opts) : releaseLock(t, run.runId, opts)).catch(() => undefined);
    }),
  );
}

// Each node's unit state as the rollout's health checks start from. Without a
// prompt, the state the node checks read under the lock a moment ago; after one
// (minutes may have passed), read again.
async function readBaseline(session: Session, probe: { read: StateReader }, noPrompt: boolean): Promise<Map<string, ServiceState>> {
  const entries = await Promise.all(
    [...session.transports.keys()].map(async (name) => {
      const checked = noPrompt ? session.nodeChecks.get(name) : undefined;
      const state = checked && checkedServiceState(checked.out);
      if (state?.activeState === 'active' && state.mainPid > 0) return [name, state] as const;
      return [name, await probe.read(name)] as const;
    }),
  );
  return new Map(entries);
}
