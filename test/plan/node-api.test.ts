// Where each node's own KMS API listens, as planning reads it from the node's
// files (--host in the env file's options, tls.ca in the config): a table of
// fixtures in test/plan/node-api/, one case a file.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { planNode } from '../../src/plan/build.js';
import { node, reader, shippedPlaybook, vars } from '../helpers/plan-inputs.js';

type Case = { name: string; env: string; config: string; workingDirectory?: string; api?: unknown; error?: string };
const dir = new URL('./node-api/', import.meta.url);
const cases: Case[] = readdirSync(fileURLToPath(dir)).filter((f) => f.endsWith('.yaml')).sort()
  .map((f) => ({ name: f.replace(/\.yaml$/, ''), ...(parse(readFileSync(new URL(f, dir), 'utf8')) as Omit<Case, 'name'>) }));

describe('the plan carries each node\'s API address and CA', () => {
  it.each(cases)('$name', async ({ env, config, workingDirectory, api, error }) => {
    const files = { '/etc/default/minkms': env, '/etc/minkms/config.yaml': config };
    const read = reader(files);
    const plan = await planNode({ node, reader: { read, workingDirectory: async () => workingDirectory ?? '' } }, await shippedPlaybook(), vars());
    if (error !== undefined) {
      expect(plan).toMatchObject({ status: 'error' });
      expect(plan.status === 'error' && plan.error).toContain(error);
    } else {
      expect(plan).toMatchObject({ status: 'ready', api });
    }
  });
});
