import { describe, expect, it } from 'vitest';
import { parseReach } from '../../src/preflight/node-checks.js';

describe('parseReach', () => {
  it.each([
    ['curl 0 200 ', 'pass', 'localhost resolves and TLS to localhost:8200 works from this node (sys/health HTTP 200)'],
    ['curl 0 503 ', 'pass', 'sys/health HTTP 503'],
    ['resolve-failed', 'fail', 'localhost does not resolve on this node'],
    ['curl 7 000 curl: (7) Failed to connect to localhost port 8200 after 0 ms: Couldn\'t connect to server', 'fail', 'from this node: connection to localhost:8200 refused or unreachable (curl: (7) Failed to connect'],
    ['curl 60 000 curl: (60) SSL certificate problem: unable to get local issuer certificate', 'fail', 'the TLS certificate is not trusted by the node'],
    ['tcp-ok', 'pass', 'TLS was not checked'],
    ['no-tool', 'warn', 'neither curl nor bash'],
  ])('%s', (line, status, detail) => {
    const check = parseReach('kms-1', 'localhost', 8200, true, line);
    expect(check.status).toBe(status);
    expect(check.detail).toContain(detail);
  });
});
