// The cluster verb (src/agent/cluster.sh) under /bin/sh, with a stand-in minkms
// that logs its arguments and the environment it was given, and answers as the
// test says: the key must reach it only through MINIO_KMS_API_KEY.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseClusterOutput } from '../../src/rollout/cluster.js';
import { runSh, standIn, verbScript } from './run-verb.js';

const KEY = 'k1:agent-test-key-Zx81';
let dir: string;
let cli: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-agent-cluster-'));
  mkdirSync(path.join(dir, 'bin'));
  cli = path.join(dir, 'bin', 'minkms');
  // Logs argv (one line), then the env it cares about; answers from $dir/answer (exit code, then lines).
  standIn(path.join(dir, 'bin'), 'minkms', `printf '%s|' "$@" >> ${dir}/argv; echo >> ${dir}/argv
printf 'server=%s key=%s file=%s dir=%s\\n' "$MINIO_KMS_SERVER" "$MINIO_KMS_API_KEY" "\${SSL_CERT_FILE:-}" "\${SSL_CERT_DIR:-}" >> ${dir}/env
if [ "$1" = backup ] && [ -f ${dir}/backup-content ]; then cp ${dir}/backup-content "$2"; fi
rc=$(head -n1 ${dir}/answer); tail -n +2 ${dir}/answer; exit "$rc"`);
});

const answer = (rc: number, ...lines: string[]) => writeFileSync(path.join(dir, 'answer'), `${rc}\n${lines.join('\n')}\n`);
// Both trust variables set in the login's environment: the verb must replace them with the node's CA.
const ask = (args: string[], stdin = `${KEY}\n`) => runSh(verbScript('cluster'), { name: 'rollout-cluster', args, stdin, env: { SSL_CERT_FILE: '/inherited.pem', SSL_CERT_DIR: '/inherited' } });
const argv = () => readFileSync(path.join(dir, 'argv'), 'utf8');
const env = () => readFileSync(path.join(dir, 'env'), 'utf8');

describe('cluster (minkms on the node, the key on stdin)', () => {
  it('stat: the JSON as @out lines, the key in the environment only, the CA dir as SSL_CERT_DIR', () => {
    answer(0, '{"nodes_up":{"0":{"address":"kms-1:7373","state":"Leader"}},"nodes_down":{}}');
    const r = ask(['stat', 'kms-1:7373', dir, '0', cli]);
    expect(r.code).toBe(0);
    const out = parseClusterOutput(r.out);
    expect(out.rc).toBe(0);
    expect(out.lines).toEqual(['{"nodes_up":{"0":{"address":"kms-1:7373","state":"Leader"}},"nodes_down":{}}']);
    expect(argv()).toBe('stat|--json|\n');
    expect(env()).toBe(`server=https://kms-1:7373 key=${KEY} file= dir=${dir}\n`);
    expect(r.out + r.err).not.toContain(KEY);
  });

  it('a CA file is SSL_CERT_FILE; insecure adds --insecure', () => {
    answer(0, '{}');
    ask(['stat', 'kms-2:7302', '/etc/minkms/ca.pem', '1', cli]);
    expect(argv()).toBe('stat|--json|--insecure|\n');
    expect(env()).toContain('file=/etc/minkms/ca.pem dir=\n');
  });

  it('a refusal: the exit code and the message, never the key', () => {
    answer(1, 'Error: not authorized: invalid API key');
    const out = parseClusterOutput(ask(['stat', 'kms-1:7373', '', '0', cli]).out);
    expect(out).toEqual({ rc: 1, lines: ['Error: not authorized: invalid API key'] });
  });

  it('no CLI at the path: 127 naming it; no key on stdin: 2', () => {
    expect(parseClusterOutput(ask(['stat', 'kms-1:7373', '', '0', '/nonexistent/minkms']).out)).toEqual({ rc: 127, lines: ['/nonexistent/minkms: not found or not executable on this node'] });
    expect(parseClusterOutput(ask(['stat', 'kms-1:7373', '', '0', cli], '').out).rc).toBe(2);
  });

  it('backup: the path from stdin, the directory made 0700, the CLI given the name inside it; the file\'s sha256 and size', () => {
    writeFileSync(path.join(dir, 'backup-content'), 'gzip bytes of the KMS state');
    answer(0, 'minkms-run.db.gzip');
    const file = path.join(dir, 'backups', 'new', 'minkms-run.db.gzip');
    const r = ask(['backup', 'kms-1:7373', '', '0', cli], `${KEY}\n${file}\n`);
    const out = parseClusterOutput(r.out);
    expect(out.rc).toBe(0);
    expect(out.sha).toEqual({ sha256: createHash('sha256').update('gzip bytes of the KMS state').digest('hex'), bytes: 27 });
    expect(argv()).toBe('backup|minkms-run.db.gzip|\n');
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it('backup: a directory others can write is refused before the CLI runs', () => {
    const open = path.join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    answer(0, 'x');
    const out = parseClusterOutput(ask(['backup', 'kms-1:7373', '', '0', cli], `${KEY}\n${open}/b.gz\n`).out);
    expect(out.rc).toBe(3);
    expect(out.lines.join(' ')).toContain(`backup directory ${open} is not a root-only directory`);
    expect(existsSync(path.join(dir, 'argv'))).toBe(false);
  });

  it('a failed backup reports no sha', () => {
    answer(1, 'Error: backup failed: simulated');
    const out = parseClusterOutput(ask(['backup', 'kms-1:7373', '', '0', cli], `${KEY}\n${path.join(dir, 'b', 'x.gz')}\n`).out);
    expect(out).toEqual({ rc: 1, lines: ['Error: backup failed: simulated'] });
  });
});
