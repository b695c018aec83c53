import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS, missingAgentNodeFlags } from '../../../src/daemon/node-flags.js';

const MAIN_TS = new URL('../../../src/main.ts', import.meta.url);

describe('the V8 flags the agent runs with', () => {
  it('main.ts passes exactly AGENT_NODE_FLAGS on its first line', () => {
    const shebang = readFileSync(MAIN_TS, 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
  });

  it('this Node accepts every flag (CI runs this file under Node 20 and 24)', () => {
    const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', 'process.stdout.write(JSON.stringify(process.execArgv))'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as string[]).slice(0, AGENT_NODE_FLAGS.length)).toEqual([...AGENT_NODE_FLAGS]);
  });

  it('names the flags a process was started without', () => {
    expect(missingAgentNodeFlags([...AGENT_NODE_FLAGS])).toEqual([]);
    expect(missingAgentNodeFlags(['--inspect'])).toEqual([...AGENT_NODE_FLAGS]);
    expect(missingAgentNodeFlags([])).toEqual([...AGENT_NODE_FLAGS]);
  });
});
