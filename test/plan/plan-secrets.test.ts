import { describe, expect, it } from 'vitest';
import { Output } from '../../src/cli/output.js';
import { showPlan } from '../../src/cli/show-plan.js';
import { computePhases } from '../../src/plan/build.js';
import { toPlanFile } from '../../src/plan/plan-file.js';
import { envSecretValues, planSecrets, yamlSecretValues, credentialFingerprints } from '../../src/plan/plan-secrets.js';
import { renderPlan } from '../../src/plan/render.js';
import type { Plan } from '../../src/plan/types.js';
import { buildReport, renderReportMarkdown } from '../../src/report/audit-report.js';
import type { RunState } from '../../src/state/run-state.js';
import { createRedactor } from '../../src/util/redact.js';
import { CONFIG, SECRET, node, reader, shippedPlaybook, vars } from '../helpers/plan-inputs.js';
import { captureOutput } from '../helpers/capture-output.js';

// A node whose files hold what redaction used to miss: an HSM key continued on a
// second line, a block-scalar token in the diff's context lines (its key line
// outside the hunk), and a comment with terminal escape sequences.
const KEY_HEAD = 'hsm:aes256:QUJDREVGR0hJSktMTU5P';
const KEY_TAIL = 'UFFSU1RVVldYWVo0NTY3ODk=';
const ENV = `# MinIO KMS environment\nMINIO_KMS_HSM_KEY=${KEY_HEAD}\\\n${KEY_TAIL}\nMINIO_KMS_VOLUME=/var/lib/minkms\nMINIO_KMS_OPTS="--host kms-1:7373 --config /etc/minkms/config.yaml"\n`;
const TOKEN_A = 'tok-first-half-5d1e93';
const TOKEN_B = 'tok-second-half-a0c47b';
const OSC = '\x1b]0;pwned-title\x07 \x1b]52;c;cHduZWQ=\x07 \x1b[2K\rfake ok line';
const CONFIG_WITH = `${CONFIG}extra:\n  token: >-\n    ${TOKEN_A}\n    ${TOKEN_B}\n# ${OSC}\n`;
const LEAKS = [KEY_HEAD, KEY_TAIL, TOKEN_A, TOKEN_B, SECRET];

async function planned(): Promise<{ plan: Plan; redact: (s: string) => string }> {
  const playbook = await shippedPlaybook();
  const v = vars(true);
  const phases = await computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': CONFIG_WITH }), node, playbook, v);
  const nodes: Plan['nodes'] = [{ node, status: 'ready', phases }];
  // As prepareSession builds it.
  const redact = createRedactor({ secrets: [...v.secrets, ...planSecrets(nodes, playbook)], ...playbook.secrets });
  const plan: Plan = {
    playbookName: playbook.name,
    phases: [
      { name: 'vault-hsm', description: '', enabled: true },
      { name: 'disable-local-hsm', description: '', enabled: true, when: 'disableLocalHsm' },
    ],
    nodes,
  };
  return { plan, redact };
}

const capture = captureOutput;

describe('planSecrets', () => {
  it('collects every line of secret YAML values (block, nested, aliased, quoted) and of env values (continued)', () => {
    const yaml = 'a: &x anchored-value\ntoken: >-\n  folded one\n  folded two\nnested:\n  secret: |\n    literal-1\n    literal-2\n  jwt: "quoted-1\n    quoted-2"\n  token: *x\nlist:\n  - token:\n      inner: deep-value\nplain: not-a-secret\n';
    expect(new Set(yamlSecretValues(yaml, ['secret', 'jwt', 'token']))).toEqual(new Set([
      'folded one folded two', 'folded one', 'folded two', 'literal-1', 'literal-2', 'quoted-1 quoted-2', '"quoted-1', 'quoted-2"', 'anchored-value', 'deep-value',
    ]));
    // A file that does not parse gives what its parse recovered.
    expect(yamlSecretValues('key: [unclosed-value', ['key'])).toEqual(['unclosed-value']);
    expect(new Set(envSecretValues(ENV, ['MINIO_KMS_HSM_KEY']))).toEqual(new Set([KEY_HEAD + KEY_TAIL, KEY_HEAD, KEY_TAIL]));
  });

  it('reads the files of every change, before and after', async () => {
    const { plan } = await planned();
    const found = planSecrets(plan.nodes, await shippedPlaybook());
    expect(found).toEqual(expect.arrayContaining([TOKEN_A, TOKEN_B, KEY_HEAD, KEY_TAIL, SECRET]));
    expect(found).not.toContain('on');
  });
});

describe('a plan of files holding multi-line secrets and escape sequences', () => {
  it('never shows a line of a secret, nor a raw control character, in the diff, --out, --json or the report', async () => {
    const { plan, redact } = await planned();
    const text = renderPlan(plan, redact);
    // The token's key line is outside the hunk: only its value lines are context.
    expect(text).toContain('     <redacted>\n     <redacted>\n # \\x1b]0;pwned-title\\x07 \\x1b]52;c;cHduZWQ=\\x07 \\x1b[2K\\rfake ok line\n+hsm:');
    expect(text).toContain('-MINIO_KMS_HSM_KEY=<redacted>\\\n-<redacted>\n');

    const out = capture();
    const io = new Output();
    io.useRedactor(redact);
    io.color = true;
    showPlan(io, plan, redact);
    io.mode = 'json';
    showPlan(io, plan, redact);
    const saved = JSON.stringify(toPlanFile(plan, '/inv/prod.yaml', 'a', 'b', renderPlan(plan, redact)));
    const state: RunState = { version: 1, runId: 'R', inventory: '/inv/prod.yaml', startedAt: '', user: 'alice', host: 'ops-1', status: 'stopped', steps: [] };
    const report = buildReport({ state, plan, outcomes: [], exitCode: 1, message: null, finishedAt: new Date(0), version: '0.1.0', inventory: { file: '/inv/prod.yaml', sha256: 'a' }, playbook: { file: '/pb.yaml', sha256: 'b' }, redact });
    const shown = [text, out.join(''), saved, JSON.stringify(report), renderReportMarkdown(report)];
    for (const s of shown) {
      for (const leak of LEAKS) expect(s).not.toContain(leak);
      expect(s).not.toContain('pwned-title\x07');
      expect(s).not.toMatch(/\x1b\]|\x1b\[2K|\r(?!\n)/);
    }
    // rollout's own colour is still there, outside the node's text; redacting the diff again loses no line.
    expect(out.join('')).toContain('\x1b[32m+hsm:\x1b[0m');
    expect(out.join('')).toContain('\x1b[31m-MINIO_KMS_HSM_KEY=<redacted>\\\x1b[0m\n\x1b[31m-<redacted>\x1b[0m\n');
  });

  it('redacts a line of a planned file\'s secret shown alone, away from its key (a journal line)', async () => {
    const { redact } = await planned();
    expect(redact(`unseal failed for ${KEY_TAIL} (token ${TOKEN_B})`)).toBe('unseal failed for <redacted> (token <redacted>)');
  });
});

describe('credentialFingerprints', () => {
  const fp = (v: string) => `fp(${v})`;
  it('each secret under the path as SUBPATH:FP; none outside it, none when absent or unparsable', () => {
    const text = 'version: v1\nhsm:\n  vault:\n    server: https://v\n    approle: { id: r, secret: "s-1" }\n    kubernetes:\n      jwt: j-2\nother:\n  secret: not-this\n';
    expect(credentialFingerprints(text, ['hsm', 'vault'], ['secret', 'jwt'], fp)).toEqual(['approle.secret:fp(s-1)', 'kubernetes.jwt:fp(j-2)']);
    expect(credentialFingerprints('version: v1\n', ['hsm', 'vault'], ['secret'], fp)).toEqual([]);
    expect(credentialFingerprints('a: [\n', ['hsm', 'vault'], ['secret'], fp)).toEqual([]);
  });
});
