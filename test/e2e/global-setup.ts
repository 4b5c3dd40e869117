// Boots the lab fleet once for the whole suite and takes it down afterwards.
// ROLLOUT_LAB_KEEP=1 leaves it up (and reuses a running one) while developing.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LAB_SECRET } from '../helpers/lab.js';

const lab = path.join(fileURLToPath(new URL('../../', import.meta.url)), 'lab/lab.sh');
const keep = process.env.ROLLOUT_LAB_KEEP === '1';

function labUp(): boolean {
  try {
    const status = execFileSync('bash', [lab, 'status'], { encoding: 'utf8' });
    return /kms-3/.test(status) && !/down|not running/i.test(status);
  } catch {
    return false;
  }
}

export default function setup(): () => void {
  if (!(keep && labUp())) execFileSync('bash', [lab, 'up', '3'], { stdio: 'inherit' });
  // The Vault double the nodes' minkms really logs in to; the role's secret is the tests' own.
  execFileSync('bash', [lab, 'vault-up'], { stdio: 'inherit', env: { ...process.env, MINKMS_VAULT_SECRET_ID: LAB_SECRET } });
  return () => {
    if (!keep) execFileSync('bash', [lab, 'down'], { stdio: 'inherit' });
  };
}
