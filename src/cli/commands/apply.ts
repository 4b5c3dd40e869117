import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { dismissTurn, openTurn, stageWork, stepFile, type NodeWork } from '../../apply/apply-node.js';
import { InterruptedError, NotConfirmedError, PreflightError, UsageError, type RolloutError } from '../../errors.js';
import { renderGateEvidence } from '../../rollout/restart-gate.js';
import { fileSha256 } from '../../util/sha256.js';
import { rolloutVersion } from '../../util/version.js';
import type { PreflightFlags } from '../../preflight/run-preflight.js';
import { compareWithPlanFile, readPlanFile } from '../../plan/plan-file.js';
import { compileGate } from '../../rollout/gate.js';
import type { ServiceState } from '../../rollout/journal.js';
import { openServiceProbes, type ServiceProbes, type StateReader } from '../../rollout/service-probe.js';
import type { LineStream, Transport } from '../../transport/transport.js';
import type { StageItem } from '../../transport/remote-files.js';
import { lockFleet, lockHolder, releaseLock } from '../../rollout/lock.js';
import type { ProgressStyle, RolloutOptions, RolloutResult, StopSignal } from '../../rollout/run.js';
import { planResume, workFromPlan } from '../../state/resume.js';
import { loadLastRun, newRunState, RunRecorder, stateDirFor } from '../../state/run-state.js';
import { BACKUP_ROOT, newStageKey, stagedPath } from '../../transport/remote-files.js';
import { EXIT } from '../exit-codes.js';
import type { Output } from '../output.js';
import { prepareSession, type Session } from '../prepare.js';
import { canAsk, confirm } from '../confirm.js';
import { checkSession } from './preflight.js';
import { checkedServiceState } from '../../preflight/node-checks.js';

// What apply needs only once the nodes are read: the plan's diffs (the diff
// library), the rollout (listr2) and the report; about 75 ms of loading that
// no longer comes before the first connection. Loaded once, when the first
// node is read (the process mostly waits on the nodes then).
let later: Promise<[typeof import('../show-plan.js'), typeof import('../../rollout/run.js'), typeof import('../../report/audit-report.js')]> | undefined;
function loadLater(): NonNullable<typeof later> {
  return (later ??= Promise.all([import('../show-plan.js'), import('../../rollout/run.js'), import('../../report/audit-report.js')]));
}

export type ApplyFlags = PreflightFlags & { parallel?: number; yes?: boolean; dryRun?: boolean; resume?: boolean; breakLock?: boolean; limit?: string; canary?: boolean; acceptNewHostKeys?: boolean };

/** A run id that sorts by time and names the backups on the nodes. */
export function newRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

/**
 * `rollout apply INVENTORY|PLAN`: the plan (or a saved one, refused if stale),
 * preflight, the fleet lock, a confirmation, then the phases node by node with
 * backups, atomic writes and the journal gate, recording every step. With
 * --resume it continues the last run from what the nodes hold now.
 */
export async function applyCommand(target: string, flags: ApplyFlags, io: Output): Promise<number> {
  if (flags.canary && !flags.yes && !canAsk()) {
    throw new UsageError('--canary asks before going past the first node: it needs a terminal, or --yes to show the canary\'s evidence and go on without asking');
  }
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
  const stageKey = newStageKey();
  const me = lockHolder(runId, inventoryFile);
  // The lock comes first, taken by each node's first read (which also runs the
  // preflight's node checks): two runs must not even plan and preflight (and
  // spend SecretID uses) at once. A dry run takes none.
  // Each node's state probe opens as soon as that node is read (the node is
  // idle from then on), so that staging and the baseline need no new session.
  const probeHosts = new Map<string, Transport>();
  let probes: ServiceProbes | null = null;
  const session = await prepareSession(inventoryFile, flags.parallel, flags.limit, flags.acceptNewHostKeys, flags.dryRun ? undefined : {
    lock: me,
    onRead: (name, t, unit) => {
      loadLater().catch(() => undefined); // awaited below
      probeHosts.set(name, t);
      (probes ??= openServiceProbes(probeHosts, unit)).open(name);
    },
  }, { vaultHealth: !flags.dryRun && !flags.skipVaultChecks, vaultChecks: { skipVaultChecks: flags.skipVaultChecks === true, skipVaultLogin: flags.skipVaultLogin === true } });
  try {
    const [{ showPlan }, { runRollout, renderSummary }, { buildReport, reportDir, writeReport }] = await loadLater();
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    if (!flags.dryRun) await lockFleet([...session.transports.values()], me, { staleMs: session.inventory.lockStaleMs, breakLock: flags.breakLock === true }, session.lockAttempts);
    let hardStop = false;
    const unit = session.playbook.service.unit;
    let pruneKeep: number | undefined;
    let recorder: RunRecorder | null = null;
    let work: NodeWork[] = [];
    // The first turn's channel while apply holds it (see the staging below); nothing moves before its `go`.
    const held: { turn: { item: NodeWork; stream: LineStream } | null } = { turn: null };
    try {
      const { plan } = session;
      if (saved) {
        io.out(`Saved plan from ${saved.createdAt}:\n${saved.rendered}`);
        const problems = compareWithPlanFile(saved, plan);
        if (problems.length > 0) throw new PreflightError(problems, 'the saved plan does not match the nodes now, nothing was changed; run `rollout plan --out` again and review it');
      } else {
        showPlan(io, plan, session.redact);
      }
      const failed = plan.nodes.filter((n) => n.status === 'error');
      if (failed.length > 0) throw new PreflightError(failed.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : ''}`));

      if (last) {
        const resume = await planResume(last.state, plan, session.transports, session.playbook.service.unit);
        if (resume.problems.length > 0) throw new PreflightError(resume.problems, `cannot resume run ${last.state.runId} safely, nothing was changed`);
        io.out(`Resuming run ${last.state.runId}: ${resume.verified.length ? `verified done: ${resume.verified.join(', ')}` : 'no node was done'}; ${resume.work.length} step(s) left.`);
        work = resume.work;
      } else {
        work = workFromPlan(plan);
      }
      if (work.length === 0) {
        if (last) await new RunRecorder(last.state, last.dir).finish('done');
        io.result('Every node is up to date: nothing to do, nothing restarted.');
        return EXIT.ok;
      }
      if (flags.dryRun) {
        io.result('Dry run: nothing was changed.');
        return EXIT.ok;
      }
      // The baseline comes through the state probes after the confirmation (see
      // readBaseline); every connected node's probe opened when it was read.
      const probe = (probes ??= openServiceProbes(probeHosts, unit));
      await checkSession(session, { ...flags, lockRunId: runId }, io);
      await confirm(flags.yes === true, io);
      // Every node's new files are staged (and backed up) at once, and the
      // baseline read; a node's turn is then one channel: move, restart, gate.
      // The first turn's channel opens once its node is staged, so that its
      // checks run while the other nodes stage (it changes nothing before `go`).
      const gate = compileGate(session.playbook.gate);
      const first = work[0]!;
      const stage = async (node: string, items: StageItem[]) => {
        const results = await probe.stage(node, items);
        if (node === first.node && first.mode === 'full' && results.every((r) => r === 'staged')) {
          const stream = openTurn(session.transports.get(node)!, first, stageKey, gate);
          if (stream) held.turn = { item: first, stream };
        }
        return results;
      };
      const [staging, baseline] = await Promise.all([
        stageWork(session.transports, work, runId, stageKey, session.parallel, stage),
        readBaseline(session, probe, flags.yes === true),
      ]);
      if (staging.length > 0) throw new PreflightError(staging, 'staging the new files failed; no file a service reads was changed');
      const rec = last
        ? new RunRecorder({ ...last.state, status: 'running' }, last.dir)
        : new RunRecorder(
            newRunState(runId, inventoryFile, me.user, me.host, work.map((w) => ({ node: w.node, phase: w.phase, restartUnit: w.restartUnit, files: w.changes.map((c) => stepFile(runId, c)) }))),
            stateDirFor(inventoryFile),
          );
      recorder = rec;
      await rec.save();
      io.out(`Run ${runId}: state in ${rec.file}; backups in /var/backups/rollout/${runId}/ on each node.`);
      io.event('run', { runId, stateFile: rec.file, steps: work.map((w) => ({ node: w.node, phase: w.phase, mode: w.mode })) });
      const stop: StopSignal = { requested: false };
      const onSignal = () => {
        if (!stop.requested) {
          stop.requested = true;
          io.err('\nInterrupt: finishing the current node (its write, restart and gate), then stopping. Press Ctrl-C again to stop at once.');
          return;
        }
        hardStop = true;
        const node = rec.markInterruptedSync();
        io.err(`\nStopped at once.${node ? ` ${node} is in an unknown state (recorded).` : ''} Every file is whole (writes are atomic). Check, then: rollout apply ${inventoryFile} --resume`);
        process.exit(EXIT.interrupted);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const options: RolloutOptions = {
          runId,
          stageKey,
          unit,
          readState: probe.read,
          adoptState: probe.adopt,
          gate,
          redact: session.redact,
          transports: session.transports,
          recorder: rec,
          progress: io.mode === 'human' ? progressStyle() : 'silent',
          onEvent: (name, data) => io.event(name, data),
          stop,
          baseline,
        };
        let result: RolloutResult;
        let declined: NotConfirmedError | null = null;
        // runRollout takes the first turn's channel over (and dismisses it when unused).
        if (held.turn) options.ahead = held.turn;
        held.turn = null;
        if (flags.canary && work.length > 1) {
          // The first node alone, its evidence shown, then a question before any other node.
          const first = await runRollout(plan, work.slice(0, 1), { ...options, workOnly: true });
          result = first;
          const gate = first.outcomes[0]?.gate;
          if (!first.failure && !first.interrupted && gate) {
            io.out(`\nCanary ${work[0]!.node} passed its gate in ${((gate.decidedAt - gate.startedAt) / 1000).toFixed(1)} s on the new files; the journal lines that decided it:\n${renderGateEvidence(gate, session.redact)}\n`);
            try {
              await confirm(flags.yes === true, io, `Continue with the other ${work.length - 1} step(s), one node at a time? Type "yes" to go on: `,
                `not confirmed after the canary: ${work[0]!.node} runs the new files, no other node was touched. Continue later with: rollout apply ${inventoryFile} --resume`);
              const { ahead: _taken, ...afterCanary } = options;
              const rest = await runRollout(plan, work.slice(1), { ...afterCanary, workOnly: true });
              result = { ...rest, outcomes: [...first.outcomes, ...rest.outcomes] };
            } catch (err) {
              if (!(err instanceof NotConfirmedError)) throw err;
              declined = err;
            }
          }
        } else {
          result = await runRollout(plan, work, options);
        }
        if (io.mode !== 'json') io.out(`\n${renderSummary(plan, result, work)}`);
        const stopped: RolloutError | null = result.interrupted
          ? new InterruptedError(`interrupted: the run stopped between nodes, every node is in its old or new state and healthy. Continue with: rollout apply ${inventoryFile} --resume`)
          : (result.failure ?? declined);
        await rec.finish(result.interrupted ? 'interrupted' : result.failure ? (result.failure.restored ? 'stopped' : 'failed') : declined ? 'stopped' : 'done');
        // The change record, whatever the outcome, before the outcome is reported.
        const exitCode = result.interrupted ? EXIT.interrupted : result.failure ? (result.failure.restored ? EXIT.rolledBack : EXIT.rollbackFailed) : declined ? EXIT.notConfirmed : EXIT.ok;
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
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      pruneKeep = session.inventory.backupsKeep;
      io.result(`Rollout complete: every node runs the new files and passed its gate. Backups: /var/backups/rollout/${runId}/ on each node.`);
      return EXIT.ok;
    } finally {
      if (!hardStop && !flags.dryRun) {
        // Staged copies never moved into place go with the lock; backups are pruned only after a complete run.
        // A node this run never wrote to keeps no backup of it either (staging took one on every node).
        const steps = recorder?.state.steps ?? [];
        const staged = new Map<string, string[]>();
        for (const w of work) staged.set(w.node, [...(staged.get(w.node) ?? []), ...w.changes.map((c) => stagedPath(stageKey, c.path))]);
        for (const [name, paths] of staged) {
          const mine = steps.filter((s) => s.node === name);
          if (mine.every((s) => s.status === 'planned')) paths.push(`${BACKUP_ROOT}/${runId}`);
        }
        // Through the state probes where they are open: no SSH session of its own.
        await Promise.all(
          [...session.transports].map(([name, t]) => {
            const opts = { remove: staged.get(name) ?? [], ...(pruneKeep === undefined ? {} : { pruneKeep }) };
            return (probes ? probes.release(name, runId, opts) : releaseLock(t, runId, opts)).catch(() => undefined);
          }),
        );
      }
      dismissTurn(held.turn?.stream);
      probes?.close();
    }
  } finally {
    // Vault checks started early end with their token revoked, even when the run stopped before using them.
    await session.vaultChecks?.catch(() => undefined);
    session.close();
  }
}

// Each node's unit state as the rollout's health checks start from. Without a
// prompt, the state the node checks read under the lock a moment ago (handed to
// the probe: no systemctl); after one (minutes may have passed), read again.
async function readBaseline(session: Session, probe: { read: StateReader; adopt(node: string, s: ServiceState): void }, noPrompt: boolean): Promise<Map<string, ServiceState>> {
  const entries = await Promise.all(
    [...session.transports.keys()].map(async (name) => {
      const checked = noPrompt ? session.nodeChecks.get(name) : undefined;
      const state = checked && checkedServiceState(checked.out);
      if (state?.activeState === 'active' && state.mainPid > 0) {
        probe.adopt(name, state);
        return [name, state] as const;
      }
      return [name, await probe.read(name)] as const;
    }),
  );
  return new Map(entries);
}

function progressStyle(): ProgressStyle {
  return process.stdout.isTTY && process.env.CI !== 'true' ? 'tty' : 'plain';
}
