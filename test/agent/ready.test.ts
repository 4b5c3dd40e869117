// The ready verb (src/agent/ready.sh) and the state probe's `ready` question
// under /bin/sh, with a stand-in curl on PATH that logs its arguments and
// answers from a script of `RC CODE BODY` lines (one per call, the last repeated).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { AGENT } from '../../src/agent/scripts.js';
import { apiArgs, parseApiAnswer } from '../../src/rollout/service-probe.js';
import { versionOf } from '../../src/cli/commands/status.js';
import { shellWords } from '../helpers/memory-fleet.js';
import { runSh, standIn, verbScript } from './run-verb.js';

let dir: string;
let bin: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-agent-ready-'));
  bin = path.join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(path.join(dir, 'calls'), '');
  // Each call: its arguments on one line, `|`-separated; the answer is line N of `answers` (or the last).
  // It writes -w's format (as given) with the status, as curl does: after the body, after a complaint.
  standIn(bin, 'curl', `for a; do printf '%s|' "$a"; done >> ${dir}/calls; echo >> ${dir}/calls
fmt=; prev=; for a; do [ "$prev" != -w ] || fmt=$a; prev=$a; done
n=$(wc -l < ${dir}/calls); total=$(wc -l < ${dir}/answers)
[ "$n" -le "$total" ] || n=$total
line=$(sed -n "\${n}p" ${dir}/answers); rc=\${line%% *}; rest=\${line#* }; code=\${rest%% *}; body=\${rest#"$code"}; body=\${body# }
w=$(printf '%s' "$fmt" | sed "s/%{http_code}/$code/")
if [ "$rc" != 0 ]; then echo "curl: ($rc) Failed to connect to kms-1 port 7373" >&2; printf "$w"; exit "$rc"; fi
printf '%s' "$body"; printf "$w"`);
});

const answers = (...lines: string[]) => writeFileSync(path.join(dir, 'answers'), `${lines.join('\n')}\n`);
const calls = () => readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split('|').slice(0, -1));
const ask = (args: string) => runSh(verbScript('ready'), { name: 'rollout-ready', args: shellWords(args), bin });
const target = { host: 'kms-1:7373', ca: '/etc/minkms/ca.pem', insecure: false };

describe('ready (the node asks its own API)', () => {
  it('a 200 at once: one request, TLS trusting the config\'s CA file', () => {
    answers('0 200 ');
    expect(ask(apiArgs('ready', target, 5))).toMatchObject({ code: 0, out: '@api 0 200 \n' });
    const [call] = calls();
    expect(calls()).toHaveLength(1);
    expect(call).toContain('--cacert');
    expect(call![call!.indexOf('--cacert') + 1]).toBe('/etc/minkms/ca.pem');
    expect(call!.at(-1)).toBe('https://kms-1:7373/v1/health/ready');
    expect(call).not.toContain('--insecure');
  });

  it('polls until the API answers 200', () => {
    answers('7 000', '0 503 {"message":"not ready"}', '0 200 ');
    expect(ask(apiArgs('ready', target, 10)).out).toBe('@api 0 200 \n');
    expect(calls()).toHaveLength(3);
  });

  it('gives up when the time is up, with the last status and body', () => {
    answers('0 503 {"message":"not ready"}');
    const started = Date.now();
    // Two seconds: the end is a whole second of `date +%s`, so one second may end after the first request.
    const r = ask(apiArgs('ready', target, 2));
    expect(r.out).toBe('@api 0 503 {"message":"not ready"}\n');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(calls().length).toBeGreaterThan(1);
    expect(parseApiAnswer(r.out.trim())).toMatchObject({ ok: false, status: 503, problem: 'HTTP 503: {"message":"not ready"}' });
  });

  it('seconds 0: a single request', () => {
    answers('7 000');
    const r = ask(apiArgs('ready', target, 0));
    expect(r.out).toBe('@api 7 000 curl: (7) Failed to connect to kms-1 port 7373\n');
    expect(calls()).toHaveLength(1);
    expect(parseApiAnswer(r.out.trim()).problem).toBe('no HTTP answer (curl exit 7: curl: (7) Failed to connect to kms-1 port 7373)');
  });

  it('a CA directory is --capath; no CA: the system trust store; insecure only when asked', () => {
    answers('0 200 ');
    mkdirSync(path.join(dir, 'CAs'));
    ask(apiArgs('ready', { ...target, ca: path.join(dir, 'CAs') }));
    ask(apiArgs('ready', { ...target, ca: null }));
    ask(apiArgs('ready', { ...target, insecure: true }));
    const [capath, system, insecure] = calls();
    expect(capath).toContain('--capath');
    expect(capath).not.toContain('--cacert');
    expect(system!.filter((a) => a.startsWith('--ca') || a === '--insecure')).toEqual([]);
    expect(insecure).toContain('--insecure');
    expect(insecure).not.toContain('--cacert');
  });

  it('version: GET /version once, its body', () => {
    answers('0 200 {"version":"2025-03-12T09-35-18Z"}');
    expect(ask(apiArgs('version', target)).out).toBe('@api 0 200 {"version":"2025-03-12T09-35-18Z"}\n');
    expect(calls()[0]!.at(-1)).toBe('https://kms-1:7373/version');
    // What status shows of it: the JSON's version, else the text; nothing without a 200.
    expect(versionOf(parseApiAnswer('@api 0 200 {   "version": "2025-03-12T09-35-18Z" }'))).toBe('2025-03-12T09-35-18Z');
    expect(versionOf(parseApiAnswer('@api 0 200 v2025.3'))).toBe('v2025.3');
    expect(versionOf(parseApiAnswer('@api 7 000 curl: (7) Failed to connect'))).toBeNull();
  });

  it('without curl on the node: says so', () => {
    const r = spawnSync('/bin/sh', ['-c', AGENT.ready, 'rollout-ready', 'ready', 'kms-1:7373', '', '0', '0'], { env: { PATH: path.join(dir, 'empty') }, encoding: 'utf8' });
    expect(r.stdout).toBe('@api no-curl\n');
    expect(parseApiAnswer('@api no-curl').ok).toBe(false);
  });

  it('the state probe answers `ready K HOST CA` with one request, a CA path with spaces kept whole', () => {
    answers('0 503 {"message":"not ready"}');
    const ca = path.join(dir, 'my ca.pem');
    writeFileSync(ca, '');
    const r = runSh(verbScript('state'), { name: 'rollout-probe', args: ['minkms'], stdin: `ready 0 kms-2:7373 ${ca}\nready 1 kms-2:7373 \n`, bin });
    expect(r.out).toBe('@api 0 503 {"message":"not ready"}\n@api 0 503 {"message":"not ready"}\n');
    const [withCa, insecure] = calls();
    expect(withCa![withCa!.indexOf('--cacert') + 1]).toBe(ca);
    expect(withCa!.at(-1)).toBe('https://kms-2:7373/v1/health/ready');
    expect(insecure).toContain('--insecure');
    expect(calls()).toHaveLength(2);
  });
});
