// rollout in a real pseudo-terminal: tmux runs it in a detached session of a
// fixed size and the test reads the screen (and its scrollback) as a person
// would see it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { LAB_SECRET, NODES, nodeFile, resetLab, writeInventory } from '../helpers/lab.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const SOCKET = `rollout-tty-${process.pid}`;

function tmux(args: string[]): string {
  // The server inherits this environment (the secret too), so no secret is on a command line.
  const r = spawnSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8', env: { ...process.env, ROLLOUT_E2E_SECRET: LAB_SECRET, CI: '', TERM: 'xterm-256color' } });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Runs the CLI in a fresh 160x50 terminal; resolves with the whole screen (scrollback included) once it exited. */
async function onTerminal(args: string[], opts: { escapes?: boolean; env?: string } = {}): Promise<{ screen: string; code: number }> {
  const name = `s${Date.now()}`;
  const cli = [process.execPath, path.join(REPO, 'dist/cli/main.js'), ...args].map((a) => `'${a}'`).join(' ');
  tmux(['new-session', '-d', '-s', name, '-x', '160', '-y', '50', `${opts.env ?? ''} ${cli}; echo "__EXIT $?"; sleep 600`]);
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const screen = tmux(['capture-pane', '-p', '-J', '-S', '-2000', ...(opts.escapes ? ['-e'] : []), '-t', name]);
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
