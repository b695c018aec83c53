import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../src/daemon/process-settings.js';

/**
 * Key generation must not hang the process. On Node 20, a key from generateKeyPairSync stays tied
 * to its dead key-generation job, and a garbage collection that finalises the job while the key is
 * exported deadlocks the main thread (see X25519Private.generate). Agents hung that way at
 * start-up, a few in a hundred under load, and the same could strike any handshake, which makes a
 * fresh ephemeral key. This runs the built key modules in a separate process with the agent's V8
 * flags and a 1 MB young generation (more collections, so more chances to hit the window), with
 * the allocation churn that made the old code hang within seconds every time; it must finish.
 */

const KEYS_DIR = fileURLToPath(new URL('../../dist/src/crypto/keys/', import.meta.url));
const KEYS_PER_KIND = 10_000;
const DEADLINE_MS = 30_000;

const CHURN = `
const { X25519Private } = await import(${JSON.stringify(`${KEYS_DIR}x25519.js`)});
const { Ed25519Private } = await import(${JSON.stringify(`${KEYS_DIR}ed25519.js`)});
let keep = [];
const seen = new Set();
for (let i = 0; i < ${2 * KEYS_PER_KIND}; i++) {
  const key = (i % 2 ? Ed25519Private : X25519Private).generate();
  seen.add(Buffer.from(key.publicKey).toString('hex'));
  // Short-lived objects between keys, as an agent's start-up has: collections land at varied points.
  for (let j = 0; j < (i % 7) * 50; j++) keep.push({ j, s: 'x' + j });
  if (keep.length > 5000) keep = [];
}
process.stdout.write(JSON.stringify({ keys: ${2 * KEYS_PER_KIND}, distinct: seen.size }));
`;

describe('key generation under garbage collection', () => {
  it(`generates ${KEYS_PER_KIND} X25519 and ${KEYS_PER_KIND} Ed25519 keys with allocation churn without hanging`, () => {
    const started = Date.now();
    const run = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '--max-semi-space-size=1', '--input-type=module', '-e', CHURN], {
      encoding: 'utf8',
      timeout: DEADLINE_MS,
      killSignal: 'SIGKILL',
    });
    const elapsed = Date.now() - started;
    expect(run.signal, `the key-generation process was killed after ${elapsed} ms: it hung (stderr: ${run.stderr})`).toBeNull();
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ keys: 2 * KEYS_PER_KIND, distinct: 2 * KEYS_PER_KIND });
  }, DEADLINE_MS + 10_000);
});
