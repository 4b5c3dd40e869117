import { readFile } from 'node:fs/promises';
import { checkOffline, checkPlaybookOffline, looksLikePlaybook, renderFindings, type CheckFinding } from '../../inventory/check.js';
import { EXIT } from '../../exit-codes.js';
import type { Playbook } from '../../playbook/schema.js';
import { playbookVars } from '../../playbook/load.js';
import type { Output } from '../output.js';

/**
 * `rollout check INVENTORY|PLAYBOOK`: validates an inventory and its playbook,
 * or a playbook alone (a mapping with `phases` and no `nodes`), offline (no
 * node, no Vault contacted) and prints every problem at once as
 * `file:line: key: message`. Exit 0 when there is no error (warnings allowed), 2 otherwise.
 */
export async function checkCommand(file: string, io: Output): Promise<number> {
  // An unreadable file is the inventory check's to report, as it always was.
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text !== null && looksLikePlaybook(text)) {
    const { findings, playbook } = await checkPlaybookOffline(file);
    if (!report(findings, io)) return EXIT.invalidInput;
    io.result(`${file}: valid playbook ${playbookSummary(playbook!)}. Nothing was contacted; \`rollout check\` an inventory that names it to check the vars it gets.`);
    return EXIT.ok;
  }
  const { findings, inventory, playbook } = await checkOffline(file);
  if (!report(findings, io)) return EXIT.invalidInput;
  const inv = inventory!;
  const vars = inv.vars as Record<string, unknown>;
  const phases = playbook!.phases.filter((p) => p.when === undefined || vars[p.when] === true).map((p) => p.name);
  io.result(`${inv.file}: valid. ${inv.nodes.length} node(s): ${inv.nodes.map((n) => n.name).join(', ')}; playbook ${inv.playbookFile}; phases: ${phases.join(', ')}. Nothing was contacted (rollout plan reads the nodes).`);
  return EXIT.ok;
}

// Prints the findings (on stderr when any is an error); false when there is an error.
function report(findings: readonly CheckFinding[], io: Output): boolean {
  const errors = findings.filter((f) => f.level === 'error');
  if (findings.length > 0) (errors.length > 0 ? io.err.bind(io) : io.out.bind(io))(renderFindings(findings));
  if (errors.length === 0) return true;
  io.err(`\n${errors.length} problem(s): fix them, then run rollout check again. Nothing was contacted.`);
  return false;
}

// Pure. `"name": phases a, b (when X); files: config, env; vars: v` for the success line.
function playbookSummary(p: Playbook): string {
  const phases = p.phases.map((ph) => (ph.when ? `${ph.name} (when ${ph.when})` : ph.name));
  const vars = playbookVars(p);
  return `"${p.name}": phases ${phases.join(', ')}; files: ${Object.keys(p.files).join(', ')}; unit ${p.service.unit}; vars it uses: ${vars.size > 0 ? [...vars].join(', ') : 'none'}`;
}
