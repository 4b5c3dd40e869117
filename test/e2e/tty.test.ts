// rollout in a real pseudo-terminal: tmux runs it in a detached session of a
// fixed size and the test reads the screen (and its scrollback) as a person
// would see it.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { LAB_DIR, LAB_SECRET, NODES, SUDO_PASSWORD, addPasswordSudoUser, nodeFile, onNode, resetLab, rollout, writeInventory } from '../helpers/lab.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const SOCKET = `rollout-tty-${process.pid}`;

function tmux(args: string[]): string {
  // The server inherits this environment (the secret too), so no secret is on a command line.
  const r = spawnSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8', env: { ...process.env, ROLLOUT_E2E_SECRET: LAB_SECRET, CI: '', TERM: 'xterm-256color' } });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Runs the CLI in a fresh 160x50 terminal; resolves with the whole screen (scrollback included) once it exited. */
type Answer = { when: RegExp; keys: string; /** Done once the question is on the screen, before the keys are typed. */ first?: () => Promise<unknown> };
async function onTerminal(args: string[], opts: { escapes?: boolean; env?: string; answer?: Answer; answers?: Answer[] } = {}): Promise<{ screen: string; code: number }> {
  const name = `s${Date.now()}`;
  const cli = [process.execPath, path.join(REPO, 'dist/cli/main.js'), ...args].map((a) => `'${a}'`).join(' ');
  tmux(['new-session', '-d', '-s', name, '-x', '160', '-y', '50', `${opts.env ?? ''} ${cli}; echo "__EXIT $?"; sleep 600`]);
  try {
    const deadline = Date.now() + 120_000;
    // Each answer is typed once its question is on the screen, in order, as a person would: the keys, then Enter.
    const answers = [...(opts.answer ? [opts.answer] : []), ...(opts.answers ?? [])];
    for (;;) {
      const screen = tmux(['capture-pane', '-p', '-J', '-S', '-2000', ...(opts.escapes ? ['-e'] : []), '-t', name]);
      if (answers[0] && answers[0].when.test(screen)) {
        await answers[0].first?.();
        tmux(['send-keys', '-t', name, '-l', answers[0].keys]);
        tmux(['send-keys', '-t', name, 'Enter']);
        answers.shift();
      }
      const m = /__EXIT (\d+)/.exec(screen);
      if (m) return { screen, code: Number(m[1]) };
      if (Date.now() > deadline) throw new Error(`no exit within 120 s; screen:\n${screen}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    tmux(['kill-session', '-t', name]);
  }
}

describe('rollout on a terminal (tmux)', () => {
  beforeEach(async () => {
    await resetLab();
  });
  afterAll(() => {
    spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
  });

  it('plan colours its diffs on a terminal; NO_COLOR and --no-color turn colour off', async () => {
    const inventory = writeInventory();
    const coloured = await onTerminal(['plan', inventory], { escapes: true });
    expect(coloured.code).toBe(0);
    expect(coloured.screen).toMatch(/\x1b\[32m(?:\x1b\[\d+m)*\+hsm:/);
    expect(coloured.screen).toMatch(/\x1b\[36m(?:\x1b\[\d+m)*@@ /);
    for (const plain of [await onTerminal(['plan', inventory], { escapes: true, env: 'NO_COLOR=1' }), await onTerminal(['plan', inventory, '--no-color'], { escapes: true })]) {
      expect(plain.code).toBe(0);
      expect(plain.screen).toContain('+hsm:');
      expect(plain.screen).not.toMatch(/\x1b\[3[126]m/);
    }
  });

  it('asks once for a passphrase-protected key on the terminal, never echoing it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rollout-tty-'));
    const key = path.join(dir, 'id_ed25519');
    copyFileSync(path.join(LAB_DIR, 'id_ed25519'), key);
    chmodSync(key, 0o600);
    execFileSync('ssh-keygen', ['-q', '-p', '-P', '', '-N', 'tty-pass-5e1f0c', '-f', key], { stdio: 'ignore' });
    const inventory = writeInventory();
    writeFileSync(inventory, readFileSync(inventory, 'utf8').replace(`identityFile: ${path.join(LAB_DIR, 'id_ed25519')}`, `identityFile: ${key}`));
    const { screen, code } = await onTerminal(['plan', inventory], { answer: { when: /Passphrase for .*id_ed25519: /, keys: 'tty-pass-5e1f0c' } });
    expect(code).toBe(0);
    expect(screen.match(/Passphrase for /g)).toHaveLength(1);
    expect(screen).not.toContain('tty-pass-5e1f0c');
    expect(screen).toContain('Plan complete');
  });

  it('asks once for the sudo password on the terminal, never echoing it, and applies through sudo -S', async () => {
    await addPasswordSudoUser('kms-1');
    const inventory = writeInventory({ user: 'pwsudo', nodes: ['kms-1'] });
    const { screen, code } = await onTerminal(['apply', inventory, '--yes'], { answer: { when: /sudo password for pwsudo on the nodes: /, keys: SUDO_PASSWORD } });
    expect(code).toBe(0);
    expect(screen.match(/sudo password for /g)).toHaveLength(1);
    expect(screen).not.toContain(SUDO_PASSWORD);
    expect(nodeFile('kms-1', 'etc/minkms/config.yaml').toString()).toContain('hsm:');
  });

  it('--canary on a terminal: asks before the plan is applied, shows the canary, asks again; "no" stops with only kms-1 changed (exit 5)', async () => {
    const inventory = writeInventory();
    const { screen, code } = await onTerminal(['apply', inventory, '--canary'], {
      answers: [
        { when: /Go ahead, restarting the nodes one at a time\? Type "yes" to go on:\s*$/m, keys: 'yes' },
        { when: /Continue with the other 2 step\(s\), one node at a time\? Type "yes" to go on:\s*$/m, keys: 'no' },
      ],
    });
    expect(code).toBe(5);
    expect(screen).toMatch(/Canary kms-1 passed its gate in \d+\.\d s on the new files/);
    expect(screen).toContain('not confirmed after the canary: kms-1 runs the new files, no other node was touched');
    expect(NODES.map((n) => nodeFile(n, 'etc/minkms/config.yaml').toString().includes('hsm:'))).toEqual([true, false, false]);
  });

  it('rollback re-checks each file under its lock, right before the restore: an edit made while it asked is kept (exit 4)', async () => {
    const inventory = writeInventory();
    expect((await rollout(['apply', inventory, '--yes'])).code).toBe(0);
    const r = await onTerminal(['rollback', inventory], {
      answer: {
        when: /Type "yes" to go on: $/m,
        keys: 'yes',
        // Someone edits kms-2's config after the rollback's check, while it waits for the operator.
        first: () => onNode('kms-2', "printf '# edited by hand during the rollback prompt\\n' >> /etc/minkms/config.yaml"),
      },
    });
    expect(r.code).toBe(4);
    expect(r.screen).toContain('kms-3: restored and healthy');
    expect(r.screen).toMatch(/kms-2: restoring its backups failed/);
    const config = nodeFile('kms-2', 'etc/minkms/config.yaml').toString();
    expect(config).toContain('# edited by hand during the rollback prompt');
    expect(config).toContain('  vault:');
    // The rollback released its lock on the way out.
    expect(await onNode('kms-2', 'ls /run/rollout/lock.json 2>&1 || true')).toMatch(/No such file/);
  });

  it('apply draws the live tree in place: each node done with its time, no log lines, no secret', async () => {
    const inventory = writeInventory();
    const { screen, code } = await onTerminal(['apply', inventory, '--yes']);
    expect(code).toBe(0);
    expect(screen).toContain('✔ Phase 1: vault-hsm');
    for (const n of NODES) expect(screen).toMatch(new RegExp(`✔ ${n}: written, restarted, ready in \\d+\\.\\d s`));
    // The live renderer replaces a node's step line; the plain one would have left every step and a timestamp on each.
    expect(screen).not.toMatch(/waiting for the ready line/);
    expect(screen).not.toMatch(/^\[\d\d:\d\d:\d\d\]/m);
    expect(screen).toContain('Rollout complete');
    expect(screen).not.toContain(LAB_SECRET);
    for (const n of NODES) expect(nodeFile(n, 'etc/minkms/config.yaml').toString()).toContain('hsm:');
  });
});
