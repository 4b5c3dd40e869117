// The node checks under /bin/sh with stand-ins for systemctl, getent and curl on PATH.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { nodeCheckScript } from '../../src/preflight/node-checks.js';
import { AGENT_VARS, shellVars } from '../../src/agent/scripts.js';
import { runSh, standIn } from './run-verb.js';

let dir: string;
let bin: string;
let vars: Record<string, string>;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-agent-check-'));
  bin = path.join(dir, 'bin');
  mkdirSync(bin);
  mkdirSync(path.join(dir, 'journal', 'machine'), { recursive: true });
  writeFileSync(path.join(dir, 'journal', 'machine', 'system.journal'), '');
  vars = { LOCK_FILE: path.join(dir, 'lock.json'), JOURNAL_DIRS: `${path.join(dir, 'none')} ${path.join(dir, 'journal')}` };
  standIn(bin, 'systemctl', `printf 'ActiveState=active\\nSubState=running\\nNRestarts=0\\nInvocationID=i1\\nMainPID=42\\n'`);
  standIn(bin, 'getent', `[ "$2" = vault.test ] && printf '10.0.0.7 STREAM vault.test\\n10.0.0.7 DGRAM\\n'`);
  standIn(bin, 'curl', `echo "$*" >> ${dir}/curl.log; printf 200`);
});

// The checks as a node runs them (the prelude's paths moved into the temp dir), as `sh -c SCRIPT rollout-check`.
function check(target: Parameters<typeof nodeCheckScript>[0], sums: string[] = []): string[] {
  const script = nodeCheckScript(target, sums).replace(shellVars(AGENT_VARS), shellVars({ ...AGENT_VARS, ...vars }));
  return runSh(script, { name: 'rollout-check', args: ['keep', 'me'], bin }).out.trim().split('\n');
}

describe('node checks', () => {
  it('report uid, lock, sums, directories, journal, unit state and the reach of Vault, changing nothing', () => {
    writeFileSync(vars.LOCK_FILE!, '{"runId":"r1"}\nsecond line\n');
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, 'a\n');
    const lines = check({ dirs: [dir, path.join(dir, 'missing')], unit: 'minkms', vaultServer: 'https://vault.test:8200' }, [file, path.join(dir, 'gone')]);
    expect(lines).toEqual([
      '@checks-begin', `@uid ${process.getuid!()}`, '@lock {"runId":"r1"}',
      '@sums-begin', `87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7  ${file}`, '@sums-end',
      '@dir 0 ok', '@dir 1 no', '@journal ok',
      '@svc-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', 'InvocationID=i1', 'MainPID=42', '@svc-end',
      '@reach curl 0 200 ', '@checks-end',
    ]);
  });

  it('say so when no journal file exists, and when Vault\'s name does not resolve', () => {
    vars.JOURNAL_DIRS = path.join(dir, 'none');
    const lines = check({ dirs: [], unit: 'minkms', vaultServer: 'https://elsewhere.test:8200' });
    expect(lines).toContain('@journal no');
    expect(lines).toContain('@reach resolve-failed');
    expect(lines).toContain('@lock ');
    expect(lines.some((l) => l.startsWith('@sums'))).toBe(false);
  });

  it('report curl\'s exit code, HTTP code and error text', () => {
    standIn(bin, 'curl', `echo "$*" >> ${dir}/curl.log; echo 'curl: (60) SSL certificate problem'; printf 000; exit 60`);
    const lines = check({ dirs: [], unit: 'minkms', vaultServer: 'http://vault.test:8200' });
    expect(lines.find((l) => l.startsWith('@reach'))).toBe('@reach curl 60 000 curl: (60) SSL certificate problem');
    expect(lines.at(-1)).toBe('@checks-end');
  });
});
