// The lab nodes' simulated MinKMS over real HTTPS, asked from the node itself
// as rollout's readiness check does: curl to its --host, trusting the lab CA.
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODES, NODE_LAB_CA, clearKnob, kmsHost, onNode, resetLab, restartMinkms, seedFile, setKnob } from '../helpers/lab.js';

/** `curl` on the node; resolves with the HTTP status (000: no answer) and the body. */
async function curlOnNode(node: (typeof NODES)[number], url: string): Promise<{ code: string; body: string }> {
  const out = await onNode(node, `curl -sS --max-time 5 --cacert ${NODE_LAB_CA} -w '\\n%{http_code}' '${url}' 2>&1; true`);
  const cut = out.lastIndexOf('\n');
  return { code: out.slice(cut + 1).trim(), body: out.slice(0, cut) };
}

describe('minkms HTTPS API on the lab nodes', () => {
  beforeEach(async () => {
    await resetLab();
  });
  afterEach(() => {
    for (const n of NODES) for (const k of ['ready-503', 'no-https']) clearKnob(n, k);
  });
  afterAll(async () => {
    await resetLab();
  });

  it('each node is seeded with its own --host port', () => {
    for (const n of NODES) expect(seedFile(n, 'minkms.env').toString()).toContain(`--host ${kmsHost(n)} --config`);
  });

  it('after reset, kms-1 answers 200 on its own --host with the lab CA; ?write is 200 with every node up', async () => {
    const ready = await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/v1/health/ready`);
    expect(ready).toEqual({ code: '200', body: '' });
    expect((await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/v1/health/ready?write`)).code).toBe('200');
    const version = await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/version`);
    expect(version.code).toBe('200');
    expect(JSON.parse(version.body)).toEqual({ version: expect.any(String) });
  });

  it('with the ready-503 knob, kms-1 logs its ready line but answers 503 with a JSON message', async () => {
    setKnob('kms-1', 'ready-503');
    await restartMinkms('kms-1');
    const ready = await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/v1/health/ready`);
    expect(ready.code).toBe('503');
    expect(JSON.parse(ready.body)).toEqual({ message: expect.stringContaining('ready-503') });
    expect((await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/v1/health/live`)).code).toBe('200');
  });

  it('with the no-https knob on kms-3, kms-3 does not answer and kms-1\'s ?write is 503 naming it', async () => {
    setKnob('kms-3', 'no-https');
    await restartMinkms('kms-3');
    expect((await curlOnNode('kms-3', `https://${kmsHost('kms-3')}/v1/health/live`)).code).toBe('000');
    const write = await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/v1/health/ready?write`);
    expect(write.code).toBe('503');
    expect(JSON.parse(write.body)).toEqual({ message: expect.stringContaining(kmsHost('kms-3')) });
    expect((await curlOnNode('kms-1', `https://${kmsHost('kms-1')}/v1/health/ready`)).code).toBe('200');
  });
});
