// The ready verb (src/agent/ready.sh) and the state probe's `ready` question
// under /bin/sh, with a stand-in curl on PATH that logs its arguments and
// answers from a script of `RC CODE BODY` lines (one per call, the last repeated).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
  // The file --cacert names is copied to cacert-N (N: the call), as it was when curl ran.
  standIn(bin, 'curl', `for a; do printf '%s|' "$a"; done >> ${dir}/calls; echo >> ${dir}/calls
prev=; for a; do [ "$prev" != --cacert ] || cp -- "$a" ${dir}/cacert-$(wc -l < ${dir}/calls) 2>/dev/null; prev=$a; done
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

  it('a CA directory: every file in it, joined for curl (no hash links needed, no system bundle); no CA: the system trust store; insecure only when asked', () => {
    answers('0 503 {"message":"not ready"}', '0 200 ');
    const cas = path.join(dir, 'CAs');
    mkdirSync(cas);
    const pem = (body: string) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
    writeFileSync(path.join(cas, 'root.pem'), pem('ROOT'));
    writeFileSync(path.join(cas, 'intermediate.crt'), pem('INTERMEDIATE'));
    // Polled: the same joined file for every request, removed after the answer.
    expect(ask(apiArgs('ready', { ...target, ca: cas }, 5)).out).toBe('@api 0 200 \n');
    ask(apiArgs('ready', { ...target, ca: null }));
    ask(apiArgs('ready', { ...target, ca: cas, insecure: true }));
    const [first, second, system, insecure] = calls();
    for (const [i, call] of [first!, second!].entries()) {
      expect(call.filter((a) => a.startsWith('--ca'))).toEqual(['--cacert']);
      const joined = call[call.indexOf('--cacert') + 1]!;
      expect(path.dirname(joined)).not.toBe(cas);
      expect(existsSync(joined)).toBe(false);
      const copied = readFileSync(path.join(dir, `cacert-${i + 1}`), 'utf8');
      expect(copied).toContain('ROOT');
      expect(copied).toContain('INTERMEDIATE');
    }
    expect(first![first!.indexOf('--cacert') + 1]).toBe(second![second!.indexOf('--cacert') + 1]);
    expect(system!.filter((a) => a.startsWith('--ca') || a === '--insecure')).toEqual([]);
    expect(insecure).toContain('--insecure');
    expect(insecure!.filter((a) => a.startsWith('--ca'))).toEqual([]);
  });

  it('a CA directory without a certificate: says so, asks nothing', () => {
    answers('0 200 ');
    const cas = path.join(dir, 'CAs');
    mkdirSync(cas);
    writeFileSync(path.join(cas, 'README'), 'put the CA here\n');
    const r = ask(apiArgs('ready', { ...target, ca: cas }, 5));
    expect(r.out).toBe(`@api 77 000 no CA certificate in ${cas}\n`);
    expect(parseApiAnswer(r.out.trim()).problem).toBe(`no HTTP answer (curl exit 77: no CA certificate in ${cas})`);
    expect(calls()).toEqual([]);
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
