// The cluster's answers as data: `minkms stat --json` (kms-go's StatusResponse
// names) parsed, compared with the inventory, and the leader moved last.
import { describe, expect, it } from 'vitest';
import { cliProblem, leaderLast, leaderNode, membershipProblems, normalizeAddress, parseClusterStatus, type ClusterView } from '../../src/rollout/cluster.js';

const STAT = JSON.stringify({
  nodes_up: {
    '0': { version: '2025-03-12T09-35-18Z', address: 'kms-1.example.net:7373', state: 'Follower', node_id: 0, leader_id: 1 },
    '1': { version: '2025-03-12T09-35-18Z', address: 'KMS-2.example.net:7373', state: 'Leader', node_id: 1, leader_id: 1 },
  },
  nodes_down: { '2': 'kms-3.example.net:7373' },
});
const INVENTORY = new Map([['kms-1', 'kms-1.example.net:7373'], ['kms-2', 'kms-2.example.net'], ['kms-3', 'kms-3.example.net:7373']]);

const view = (text: string) => parseClusterStatus([text]) as ClusterView;

describe('parseClusterStatus', () => {
  it('members up and down, addresses lower case with their port, the leader marked', () => {
    expect(view(STAT).members).toEqual([
      { id: '0', address: 'kms-1.example.net:7373', up: true, leader: false },
      { id: '1', address: 'kms-2.example.net:7373', up: true, leader: true },
      { id: '2', address: 'kms-3.example.net:7373', up: false, leader: false },
    ]);
  });

  it('the leader from leader_id when no state says so; warnings before the JSON are passed over', () => {
    const v = parseClusterStatus(['Warning: something', JSON.stringify({ nodes_up: { '4': { address: 'a:1', node_id: 4, leader_id: 4 } } })]) as ClusterView;
    expect(v.members).toEqual([{ id: '4', address: 'a:1', up: true, leader: true }]);
  });

  it.each([
    [['Error: x'], /no JSON in its answer/],
    [['{not json'], /not JSON/],
    [['{"nodes_up": 3}'], /no nodes_up\/nodes_down objects/],
    [['{"nodes_up": {"0": {"state": "Leader"}}}'], /member 0 of nodes_up has no address/],
    [['{"nodes_down": {"0": 7}}'], /member 0 of nodes_down has no address/],
  ])('%j: a problem, not a view', (lines, problem) => {
    expect(parseClusterStatus(lines)).toMatch(problem);
  });
});

describe('membershipProblems', () => {
  it('every node a member and up: none', () => {
    const v = view(JSON.stringify({ nodes_up: { '0': { address: 'kms-1.example.net:7373' }, '1': { address: 'kms-2.example.net:7373' }, '2': { address: 'kms-3.example.net:7373' } } }));
    expect(membershipProblems(v, INVENTORY, true)).toEqual([]);
  });

  it('a node down, a member the inventory lacks, a node that is no member', () => {
    const v = view(JSON.stringify({ nodes_up: { '0': { address: 'kms-1.example.net:7373' }, '5': { address: 'kms-9.example.net:7373' } }, nodes_down: { '2': 'kms-3.example.net:7373' } }));
    expect(membershipProblems(v, INVENTORY, true)).toEqual([
      'kms-2 (kms-2.example.net:7373) is not a member of the cluster',
      'kms-3 (kms-3.example.net:7373) is down (nodes_down)',
      'member kms-9.example.net:7373 is no node of the inventory',
    ]);
  });

  it('under --limit a member outside the selection is fine while up, a problem while down', () => {
    const v = view(JSON.stringify({ nodes_up: { '0': { address: 'kms-1.example.net:7373' }, '1': { address: 'kms-2.example.net:7373' } }, nodes_down: { '2': 'kms-3.example.net:7373' } }));
    const selected = new Map([['kms-1', 'kms-1.example.net:7373']]);
    expect(membershipProblems(v, selected, false)).toEqual(['member kms-3.example.net:7373 is down (nodes_down)']);
  });
});

describe('leader last', () => {
  it('the leading node of the inventory moves to the end; others keep their order', () => {
    expect(leaderNode(view(STAT), INVENTORY)).toBe('kms-2');
    expect(leaderLast(['kms-1', 'kms-2', 'kms-3'], 'kms-2')).toEqual(['kms-1', 'kms-3', 'kms-2']);
    expect(leaderLast(['kms-1', 'kms-3'], 'kms-2')).toEqual(['kms-1', 'kms-3']);
    expect(leaderLast(['kms-1', 'kms-3'], null)).toEqual(['kms-1', 'kms-3']);
  });

  it('a leader that is down or not in the inventory is no node', () => {
    expect(leaderNode(view(JSON.stringify({ nodes_up: { '0': { address: 'x:1', state: 'Leader' } } })), INVENTORY)).toBeNull();
  });
});

describe('cliProblem and addresses', () => {
  it('a refused key is told apart from a network failure', () => {
    expect(cliProblem(1, ['Error: not authorized: invalid API key'])).toEqual({ problem: 'exit 1: not authorized: invalid API key', auth: true });
    expect(cliProblem(1, ['Error: dial tcp 127.0.0.1:7373: connect: connection refused'])).toEqual({ problem: 'exit 1: dial tcp 127.0.0.1:7373: connect: connection refused', auth: false });
    expect(cliProblem(127, ['/usr/local/bin/minkms: not found or not executable on this node']).auth).toBe(false);
  });

  it('normalizeAddress: scheme dropped, lower case, 7373 when no port', () => {
    expect(normalizeAddress('https://KMS-1.Example.net')).toBe('kms-1.example.net:7373');
    expect(normalizeAddress('kms-1:7301')).toBe('kms-1:7301');
  });
});
