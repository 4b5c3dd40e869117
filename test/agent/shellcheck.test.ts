import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AGENT_FILES } from '../../src/agent/scripts.js';

const dir = fileURLToPath(new URL('../../src/agent/', import.meta.url));

describe('the node-side agent scripts', () => {
  it('are all part of the agent', () => {
    expect(readdirSync(dir).filter((f) => f.endsWith('.sh')).sort()).toEqual([...AGENT_FILES].sort());
  });

  // CI installs shellcheck (.ci/run): a missing one fails here rather than skipping.
  it('are shellcheck-clean in the sh dialect (the node runs them with /bin/sh, dash)', () => {
    const r = spawnSync('shellcheck', ['-s', 'sh', '-f', 'gcc', ...AGENT_FILES], { cwd: dir, encoding: 'utf8' });
    if (r.error) throw new Error(`cannot run shellcheck (${r.error.message}): install it (apt-get install shellcheck)`);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
