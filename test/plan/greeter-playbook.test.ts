// The second shipped playbook (greeter-settings) planned from in-memory files:
// yaml.set and env.set on greeter's own files, no MinKMS anywhere.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { ResolvedVars } from '../../src/inventory/secrets.js';
import { loadPlaybook } from '../../src/playbook/load.js';
import { computeNode } from '../../src/plan/build.js';
import { node, reader } from '../helpers/plan-inputs.js';

const greeter = () => loadPlaybook(fileURLToPath(new URL('../../playbooks/greeter-settings.yaml', import.meta.url)));
const CONFIG = 'version: v1\n# greeter configuration (keep comments)\nlog:\n  level: info\n';
const ENV = '# greeter environment\nGREETER_WORKERS=2\nGREETER_LOG=info\n';
const files = { '/etc/greeter/config.yaml': CONFIG, '/etc/default/greeter': ENV };
const vars = (greeting: unknown): ResolvedVars => ({ values: { greeting, disableLocalHsm: false }, secrets: [] });

describe('the greeter-settings playbook', () => {
  it('appends greeting.text from the var, sets GREETER_WORKERS in place, and restarts greeter; no KMS API', async () => {
    const { phases, api } = await computeNode(reader(files), node, await greeter(), vars('Hello from rollout'));
    expect(api).toBeNull();
    expect(phases).toHaveLength(1);
    const [config, env] = phases[0]!.changes;
    expect(config!.path).toBe('/etc/greeter/config.yaml');
    expect(config!.after).toBe(`${CONFIG}greeting:\n  text: Hello from rollout\n`);
    expect(env!.path).toBe('/etc/default/greeter');
    expect(env!.after).toBe('# greeter environment\nGREETER_WORKERS=4\nGREETER_LOG=info\n');
    expect(phases[0]!.restart).toEqual({ kind: 'restart', unit: 'greeter' });
  });

  it('a node already set has no change and no restart, each file saying why', async () => {
    const done = { '/etc/greeter/config.yaml': `${CONFIG}greeting:\n  text: Hi\n`, '/etc/default/greeter': 'GREETER_WORKERS="4"\n' };
    const { phases } = await computeNode(reader(done), node, await greeter(), vars('Hi'));
    expect(phases[0]!.changes).toEqual([]);
    expect(phases[0]!.restart).toBeNull();
    expect(phases[0]!.unchanged).toContainEqual('/etc/default/greeter: GREETER_WORKERS already has this value');
  });

  it('appends GREETER_WORKERS to an env file without it', async () => {
    const { phases } = await computeNode(reader({ ...files, '/etc/default/greeter': 'GREETER_LOG=info' }), node, await greeter(), vars('Hi'));
    expect(phases[0]!.changes[1]!.after).toBe('GREETER_LOG=info\nGREETER_WORKERS=4\n');
  });

  it('a missing env file stops the node with the path and what to do', async () => {
    const err = await computeNode(reader({ '/etc/greeter/config.yaml': CONFIG }), node, await greeter(), vars('Hi')).catch((e: Error) => e);
    expect(String(err)).toContain('/etc/default/greeter does not exist (path from the playbook default); create it on the node, or fix the path in the playbook');
  });
});

describe('env.set values from vars', () => {
  const playbook = async () => {
    const p = await greeter();
    return { ...p, phases: [{ ...p.phases[0]!, tasks: [{ kind: 'env.set' as const, file: 'env', key: 'GREETER_WORKERS', value: { var: 'workers' } }, { kind: 'service.restart' as const }] }] };
  };
  const plan = async (workers: unknown) => computeNode(reader(files), node, await playbook(), { values: { workers }, secrets: [] });

  it.each([[8, 'GREETER_WORKERS=8'], ['8', 'GREETER_WORKERS=8'], [true, 'GREETER_WORKERS=true'], ['two words', 'GREETER_WORKERS="two words"']])('%j is written as %s', async (workers, line) => {
    expect((await plan(workers)).phases[0]!.changes[0]!.after).toContain(`\n${line}\n`);
  });

  it.each([
    [{ n: 1 }, 'var "workers" is a mapping'],
    [[1, 2], 'var "workers" is a list'],
    ['a\nb', 'holds a line break'],
  ])('%j is refused, naming the file and key', async (workers, message) => {
    const err = await plan(workers).catch((e: Error) => e);
    expect(String(err)).toContain('/etc/default/greeter: ');
    expect(String(err)).toContain(message);
  });
});
