// The restart, follow and state verbs under /bin/sh, with stand-ins for
// systemctl and journalctl on PATH that log each call (the full restart-and-follow
// path runs in test/rollout/journal-follow.test.ts).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { commitRequest } from '../../src/rollout/journal.js';
import { releaseRequest } from '../../src/rollout/lock.js';
import { stagedPath } from '../../src/agent/files.js';
import { sha256 } from '../../src/util/sha256.js';
import { shellVars } from '../../src/agent/scripts.js';
import { runSh, standIn, verbScript } from './run-verb.js';

let dir: string;
let bin: string;
let vars: Record<string, string>;
const OLD = 'old\n';
const NEW = 'new\n';
const log = () => readFileSync(path.join(dir, 'log'), 'utf8').trim().split('\n').filter(Boolean);

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-agent-restart-'));
  bin = path.join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(path.join(dir, 'log'), '');
  vars = { RUN_DIR: path.join(dir, 'run'), LOCK_FILE: path.join(dir, 'run', 'lock.json') };
  standIn(bin, 'systemctl', `echo "systemctl $1" >> ${dir}/log; [ "$1" != show ] || printf 'ActiveState=active\\nMainPID=0\\n'`);
  standIn(bin, 'journalctl', `case " $* " in *" --show-cursor "*) echo '-- cursor: C0';; *) echo "journalctl $*" >> ${dir}/log; echo '{"__CURSOR":"c1","MESSAGE":"hello"}';; esac`);
});

function staged(content = OLD) {
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, content);
  writeFileSync(stagedPath('k', file), NEW, { mode: 0o640 });
  const c = { path: file, staged: stagedPath('k', file), beforeSha256: sha256(Buffer.from(OLD)), afterSha256: sha256(Buffer.from(NEW)), uid: process.getuid!(), gid: process.getgid!(), mode: 0o640 };
  return { file, request: commitRequest([c]) };
}
const restartScript = () => `${shellVars({ RESTART_TIMEOUT: '5' })}${verbScript('restart', vars)}`;
const restart = (stdin: string) => runSh(restartScript(), { name: 'rollout-restart', args: ['minkms', 'ready', '114'], stdin, bin });

describe('restart (restart-and-follow)', () => {
  it('a stale target ends it before anything else: no state read, no restart, nothing moved', () => {
    const { file, request } = staged('edited by hand\n');
    expect(restart(`${request}go\n`)).toMatchObject({ code: 0, out: `@stale ${file}\n` });
    expect(log()).toEqual([]);
    expect(readFileSync(file, 'utf8')).toBe('edited by hand\n');
  });

  it('answers ping while it waits; anything but go ends it with nothing touched', () => {
    const { file, request } = staged();
    const r = restart(`${request}ping\nping\nstop\n`);
    expect(r).toMatchObject({ code: 0, out: '@svc-begin\nActiveState=active\nMainPID=0\n@svc-end\n@cursor C0\n@pong\n@pong\n' });
    expect(log()).toEqual(['systemctl show']);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
    // A channel that ends before go (a lost link) does the same.
    expect(restart(request).out).toMatch(/@cursor C0\n$/);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
  });

  it('refuses to go on without a journal cursor (the gate could not tell the new lines)', () => {
    standIn(bin, 'journalctl', 'exit 0');
    const { file, request } = staged();
    expect(restart(`${request}go\n`)).toMatchObject({ code: 1, out: expect.stringMatching(/@error no journal cursor\n$/) });
    expect(readFileSync(file, 'utf8')).toBe(OLD);
  });
});

describe('follow', () => {
  it('prints the entries after the cursor from a cursor file of its own, removed when the channel ends', async () => {
    const child = spawn('/bin/sh', ['-c', verbScript('follow', vars), 'rollout-follow', 'minkms', 'C7', '', ''], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n.\n')) resolve();
    }));
    // No ready hint: every batch is followed by the unit's state, then the heartbeat.
    expect(out.split('\n').slice(0, 6)).toEqual(['{"__CURSOR":"c1","MESSAGE":"hello"}', '@now-begin', 'ActiveState=active', 'MainPID=0', '@now-end', '.']);
    expect(log()[0]).toMatch(new RegExp(`^journalctl -u minkms --cursor-file=${vars.RUN_DIR}/cursor\\.\\d+ -o json --no-pager -q$`));
    expect(readdirSync(vars.RUN_DIR!)).toHaveLength(1);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    expect(readdirSync(vars.RUN_DIR!)).toEqual([]);
  });
});

describe('state (the probe)', () => {
  const probe = (stdin: string) => runSh(verbScript('state', vars), { name: 'rollout-probe', args: ['minkms'], stdin, bin });

  it('releases the lock through the probe, then goes on answering', () => {
    mkdirSync(vars.RUN_DIR!);
    writeFileSync(vars.LOCK_FILE!, '{"runId":"run-a"}\n');
    expect(probe(`release\n${releaseRequest('run-a', {})}full\n`)).toMatchObject({ code: 0, out: '@released\nActiveState=active\nMainPID=0\n@end\n' });
    expect(existsSync(vars.LOCK_FILE!)).toBe(false);
  });

  it('ends after a staging that failed (its contents may still be on stdin, never read as questions)', () => {
    const r = probe('stage\n1\n/nowhere\nfull\n');
    expect(r.code).toBe(1);
    expect(r.out).toBe('@error the staging request ended early\n@stage-end 1\n');
    expect(log()).toEqual([]);
  });
});
