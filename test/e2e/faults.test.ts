// Fault injection against the lab: each test names the fault it injects and the
// outcome it asserts. Whatever happens, every file on every node must be
// byte-equal to its content before the run or to the planned content after it.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LAB_DIR, LAB_SECRET, NODES, clearKnob, journal, labScript, onNode, resetLab, rollout, serviceState, setKnob, startRollout, waitForNodeFile, writeInventory, type LabNode, configState,
} from '../helpers/lab.js';



const fleetStates = () => NODES.map(configState);

async function runningOnVault(node: LabNode): Promise<boolean> {
  const s = await serviceState(node);
  return s.ActiveState === 'active' && (await journal(node)).some((l) => l.invocation === s.InvocationID && /^HSM\s+vault/.test(l.message));
}

/** Waits (bounded) until no rollout temp or staged file is left in a node's directory: no write is in flight. */
async function waitForNoTempFile(node: LabNode, dir: string): Promise<void> {
  const full = path.join(LAB_DIR, 'nodes', node, 'root', dir);
  const deadline = Date.now() + 30_000;
  while (readdirSync(full).some((f) => f.startsWith('.rollout-tmp.') || f.startsWith('.rollout-staged.'))) {
    if (Date.now() > deadline) throw new Error(`${node}:${dir} still has a rollout temp file`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An inventory whose runs keep their state beside it, with quick loss detection for fault tests. */
function inventory(): string {
  const file = writeInventory();
  writeFileSync(file, readFileSync(file, 'utf8').replace('ssh:\n', 'ssh:\n  keepaliveSeconds: 1\n  connectTimeoutSeconds: 3\n'));
  return file;
}

describe('faults injected during a rollout', () => {
  beforeEach(async () => {
    await resetLab();
  });
  afterEach(async () => {
    for (const n of NODES) for (const k of ['start-delay-ms', 'reject-vault']) clearKnob(n, k);
  });

  it('SIGINT during kms-2\'s gate: kms-2 finishes, exit 130, kms-3 untouched; --resume then completes the fleet without restarting kms-1 or kms-2 again', async () => {
    const inv = inventory();
    setKnob('kms-2', 'start-delay-ms', '2500');
    const run = startRollout(['apply', inv, '--yes']);
    await run.waitFor(/kms-2\n(?:.*\n)*?.*waiting for the ready line/);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('Interrupt: finishing the current node');
    expect(r.stderr).toContain(`rollout apply ${inv} --resume`);
    expect(fleetStates()).toEqual(['new', 'new', 'old']);
    expect(await runningOnVault('kms-2')).toBe(true);
    const kept = { 'kms-1': (await serviceState('kms-1')).InvocationID, 'kms-2': (await serviceState('kms-2')).InvocationID };

    const resumed = await rollout(['apply', inv, '--yes', '--resume']);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/Resuming run \S+: verified done: kms-1 \(phase vault-hsm\), kms-2 \(phase vault-hsm\); 1 step\(s\) left\./);
    expect(fleetStates()).toEqual(['new', 'new', 'new']);
    expect(await runningOnVault('kms-3')).toBe(true);
    expect((await serviceState('kms-1')).InvocationID).toBe(kept['kms-1']);
    expect((await serviceState('kms-2')).InvocationID).toBe(kept['kms-2']);
    expect((await rollout(['apply', inv, '--yes', '--resume'])).stdout).toContain('completed; nothing to resume');
  });

  it('SIGKILL of rollout mid-write on kms-2: its config is whole, and --resume detects the state and completes the fleet', async () => {
    const inv = inventory();
    // The directory fsync right after the staged copy was renamed into place, before the restart.
    await labScript('slow-sync', 'kms-2', '/var/tmp/lab-sync-called', '3', '-- /etc/minkms/');
    try {
      const run = startRollout(['apply', inv, '--yes']);
      await waitForNodeFile('kms-2', 'var/tmp/lab-sync-called');
      const restartsBefore = (await serviceState('kms-2')).NRestarts;
      const invocationBefore = (await serviceState('kms-2')).InvocationID;
      run.child.kill('SIGKILL');
      await run.done;
      // The remote half outlives rollout until its sync returns: let it end, then look.
      await waitForNoTempFile('kms-2', 'etc/minkms');
      // The rename came first: kms-2 holds the whole new file, and was not restarted by the orphan.
      expect(fleetStates()).toEqual(['new', 'new', 'old']);
      expect((await serviceState('kms-2')).InvocationID).toBe(invocationBefore);
      expect((await serviceState('kms-2')).NRestarts).toBe(restartsBefore);
    } finally {
      await labScript('slow-sync-off', 'kms-2');
    }
    const resumed = await rollout(['apply', inv, '--yes', '--resume']);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(fleetStates()).toEqual(['new', 'new', 'new']);
    for (const n of NODES) expect(await runningOnVault(n)).toBe(true);
  });

  it('sshd on kms-3 killed during the rollout: the rollout stops naming kms-3 (exit 1), kms-1 and kms-2 are done, kms-3 is untouched', async () => {
    const inv = inventory();
    const run = startRollout(['apply', inv, '--yes']);
    await run.waitFor(/kms-2\n(?:.*\n)*?.*writing \/etc\/minkms\/config\.yaml/);
    await labScript('sshd-kill', 'kms-3');
    try {
      const r = await run.done;
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/ROLLOUT STOPPED: kms-3: unreachable.*nothing on it was changed/);
      expect(r.stdout).toMatch(/kms-3 +vault-hsm +STOPPED here: untouched: old files, as before/);
      expect(fleetStates()).toEqual(['new', 'new', 'old']);
    } finally {
      await labScript('sshd-start', 'kms-3');
    }
    const resumed = await rollout(['apply', inv, '--yes', '--resume']);
    expect(resumed.code).toBe(0);
    expect(fleetStates()).toEqual(['new', 'new', 'new']);
  });

  it('network cut to kms-3 (its sshd frozen): the rollout stops naming kms-3 (exit 1) and kms-3 is untouched', async () => {
    const inv = inventory();
    const run = startRollout(['apply', inv, '--yes']);
    await run.waitFor(/kms-2\n(?:.*\n)*?.*writing \/etc\/minkms\/config\.yaml/);
    await labScript('sshd-freeze', 'kms-3');
    try {
      const r = await run.done;
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/ROLLOUT STOPPED: kms-3: unreachable/);
    } finally {
      await labScript('sshd-thaw', 'kms-3');
    }
    expect(fleetStates()).toEqual(['new', 'new', 'old']);
  });

  it('a second concurrent apply is refused by the lock, naming the holder; the first completes and releases it', async () => {
    const inv = inventory();
    setKnob('kms-1', 'start-delay-ms', '2500');
    const first = startRollout(['apply', inv, '--yes']);
    await first.waitFor(/Run (\S+): state in/);
    const runId = /Run (\S+): state in/.exec(first.output())![1]!;
    const second = await rollout(['apply', inventory(), '--yes']);
    expect(second.code).toBe(3);
    expect(second.stderr).toMatch(/another rollout holds this fleet, nothing was changed:\n {2}- kms-1 is locked by run \S+ of \S+@\S+ \(pid \d+, since /);
    const done = await first.done;
    expect(done.code).toBe(0);
    expect(second.stderr).toContain(`locked by run ${runId} `);
    expect(fleetStates()).toEqual(['new', 'new', 'new']);
    expect(await onNode('kms-1', 'ls /run/rollout/ 2>/dev/null || true')).toBe('');
  });

  it('a config edited by hand after `plan --out` is refused as stale and nothing changes; an untouched saved plan applies', async () => {
    const inv = inventory();
    const planFile = path.join(path.dirname(inv), 'change.plan');
    const saved = await rollout(['plan', inv, '--out', planFile]);
    expect(saved.code).toBe(0);
    const text = readFileSync(planFile, 'utf8');
    expect(text).not.toContain(LAB_SECRET);
    expect(JSON.parse(text).kind).toBe('rollout-plan');
    await onNode('kms-2', "echo '# edited by hand' >> /etc/minkms/config.yaml");
    const stale = await rollout(['apply', planFile, '--yes']);
    expect(stale.code).toBe(3);
    expect(stale.stderr).toContain('plan is stale: kms-2:/etc/minkms/config.yaml (phase vault-hsm) was edited since the plan was made');
    expect(configState('kms-1')).toBe('old');
    expect(configState('kms-3')).toBe('old');

    await resetLab();
    const fresh = await rollout(['plan', inv, '--out', planFile]);
    expect(fresh.code).toBe(0);
    const applied = await rollout(['apply', planFile, '--yes']);
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain('Saved plan from ');
    expect(fleetStates()).toEqual(['new', 'new', 'new']);
  });

  it('kms-2 crash-loops after its restart: it is rolled back byte for byte and healthy, exit 1, kms-3 untouched; rollback then restores kms-1', async () => {
    const inv = inventory();
    setKnob('kms-2', 'reject-vault', 'Error making API request. Code: 403. Errors: * permission denied');
    const r = await rollout(['apply', inv, '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('kms-2 failed its gate after the change');
    expect(fleetStates()).toEqual(['new', 'old', 'old']);
    expect((await serviceState('kms-2')).ActiveState).toBe('active');
    // Released (through the state probes): no lock and no staged copy on any node, and kms-3, never touched, keeps no backup of this run.
    const runId = /Run (\S+): state in/.exec(r.stdout)![1]!;
    for (const n of NODES) expect(await onNode(n, 'ls -a /etc/minkms /run/rollout 2>/dev/null; true')).not.toMatch(/rollout-staged|lock\.json/);
    expect(await onNode('kms-3', 'ls /var/backups/rollout')).not.toContain(runId);
    expect(await onNode('kms-2', 'ls /var/backups/rollout')).toContain(runId);
    clearKnob('kms-2', 'reject-vault');

    const back = await rollout(['rollback', inv, '--yes']);
    expect(back.stderr).toBe('');
    expect(back.code).toBe(0);
    expect(back.stdout).toContain('kms-1: restored and healthy');
    expect(fleetStates()).toEqual(['old', 'old', 'old']);
    expect(await runningOnVault('kms-1')).toBe(false);
  });

  it('kms-1 becomes unhealthy while kms-2 is being restarted: the rollout stops before kms-3 (exit 4) naming kms-1', async () => {
    const inv = inventory();
    setKnob('kms-2', 'start-delay-ms', '2500');
    const run = startRollout(['apply', inv, '--yes']);
    await run.waitFor(/kms-2\n(?:.*\n)*?.*waiting for the ready line/);
    await labScript('minkms-kill', 'kms-1');
    const r = await run.done;
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/not restarting kms-3: another node is not healthy[^]*- kms-1: minkms (restarted since it was last seen healthy|is )/);
    expect(fleetStates()).toEqual(['new', 'new', 'old']);
  });

  it('rollback refuses a file changed since the run wrote it, unless --force', async () => {
    const inv = inventory();
    expect((await rollout(['apply', inv, '--yes'])).code).toBe(0);
    await onNode('kms-3', "echo '# edited after the run' >> /etc/minkms/config.yaml");
    const refused = await rollout(['rollback', inv, '--yes']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('kms-3: /etc/minkms/config.yaml changed since run');
    expect([configState('kms-1'), configState('kms-2')]).toEqual(['new', 'new']);
    const forced = await rollout(['rollback', inv, '--yes', '--node', 'kms-3', '--force']);
    expect(forced.code).toBe(0);
    expect(configState('kms-3')).toBe('old');
    expect(configState('kms-1')).toBe('new');
  });
});
