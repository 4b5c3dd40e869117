// The operator-side record of a run: every node's phase, written durably after
// every step, so an interrupted run can be resumed and rolled back. It holds
// checksums, paths and backup locations, never file contents or secrets.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../errors.js';
import { writeFileDurably } from '../util/durable-file.js';

/**
 * Where one node stands in one phase. planned -> backed-up -> written ->
 * restarted -> done; or rolled-back (restored and healthy), failed (needs a
 * human), unknown (interrupted where rollout could not tell).
 */
export type StepStatus = 'planned' | 'backed-up' | 'written' | 'restarted' | 'done' | 'rolled-back' | 'failed' | 'unknown';

/** One file of a step: what it held before, what the run writes, where the backup is. */
export type StepFile = { path: string; beforeSha256: string; afterSha256: string; backup: string; uid: number; gid: number; mode: number };

export type StepState = {
  node: string;
  phase: string;
  status: StepStatus;
  files: StepFile[];
  restartUnit: string | null;
  /** The unit's invocation that passed the gate: later health checks compare against it. */
  gatedInvocation?: string;
  detail?: string;
  updatedAt: string;
};

export type RunState = {
  version: 1;
  runId: string;
  inventory: string;
  startedAt: string;
  user: string;
  host: string;
  status: 'running' | 'done' | 'stopped' | 'interrupted' | 'failed' | 'rolled-back';
  steps: StepState[];
  /** vars.cluster.backup: the `minkms backup` taken before the first change (node, path on it, sha256, bytes). */
  kmsBackup?: KmsBackup;
};

/** A MinKMS state backup a run took on one node before its first change. */
export type KmsBackup = { node: string; path: string; sha256: string; bytes: number; at: string };

/** The directory holding the runs of one inventory: `.rollout/<inventory name>/` beside it. */
export function stateDirFor(inventoryFile: string): string {
  const base = process.env.ROLLOUT_STATE_DIR ?? path.join(path.dirname(inventoryFile), '.rollout');
  return path.join(base, path.basename(inventoryFile).replace(/\.ya?ml$/, ''));
}

/** Records a run: each change is written to disk before the call returns. */
export class RunRecorder {
  readonly state: RunState;
  readonly file: string;

  constructor(state: RunState, dir: string) {
    this.state = state;
    this.file = path.join(dir, 'runs', `${state.runId}.json`);
  }

  /** The step of one node and phase (it must exist). */
  step(node: string, phase: string): StepState {
    const s = this.state.steps.find((x) => x.node === node && x.phase === phase);
    if (!s) throw new Error(`no step ${node}/${phase} in run ${this.state.runId}`);
    return s;
  }

  async update(node: string, phase: string, patch: Partial<Omit<StepState, 'node' | 'phase'>>): Promise<void> {
    Object.assign(this.step(node, phase), patch, { updatedAt: new Date().toISOString() });
    await this.save();
  }

  async finish(status: RunState['status']): Promise<void> {
    this.state.status = status;
    await this.save();
  }

  save(): Promise<void> {
    return writeFileDurably(this.file, `${JSON.stringify(this.state, null, 2)}\n`);
  }

  /** The step being worked on now, if any (what a hard stop leaves in doubt). */
  current: { node: string; phase: string } | null = null;

  /**
   * For a second Ctrl-C: synchronously marks the step in progress `unknown` and
   * the run `interrupted`, before the process exits.
   */
  markInterruptedSync(): string | null {
    const c = this.current;
    if (c) {
      const step = this.step(c.node, c.phase);
      if (step.status !== 'done' && step.status !== 'planned') Object.assign(step, { status: 'unknown', updatedAt: new Date().toISOString() });
    }
    this.state.status = 'interrupted';
    // As writeFileDurably: a random temp name, created exclusively (never through a planted link).
    const tmp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.${randomBytes(6).toString('hex')}.tmp`);
    const fd = openSync(tmp, 'wx', 0o600);
    writeSync(fd, `${JSON.stringify(this.state, null, 2)}\n`);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.file);
    return c ? c.node : null;
  }
}

/** A new run's record: one step per node and phase with work, all `planned`. */
export function newRunState(runId: string, inventory: string, user: string, host: string, steps: Array<Pick<StepState, 'node' | 'phase' | 'files' | 'restartUnit'>>): RunState {
  const now = new Date().toISOString();
  return { version: 1, runId, inventory, startedAt: now, user, host, status: 'running', steps: steps.map((s) => ({ ...s, status: 'planned', updatedAt: now })) };
}

/** The newest run recorded for an inventory, or null when there is none. */
export async function loadLastRun(inventoryFile: string): Promise<{ state: RunState; dir: string } | null> {
  const dir = stateDirFor(inventoryFile);
  let names: string[];
  try {
    names = (await readdir(path.join(dir, 'runs'))).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return null;
  }
  const last = names.at(-1);
  if (!last) return null;
  const file = path.join(dir, 'runs', last);
  try {
    return { state: JSON.parse(await readFile(file, 'utf8')) as RunState, dir };
  } catch (err) {
    throw new InputError(file, [`the run state cannot be read (${(err as Error).message}); move it aside to start afresh`]);
  }
}
