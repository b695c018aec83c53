import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AGENT_ENVIRONMENT,
  AGENT_NODE_FLAGS,
  agentShebang,
  missingAgentEnvironment,
  missingAgentNodeFlags,
} from '../../../src/daemon/process-settings.js';

const MAIN_TS = new URL('../../../src/main.ts', import.meta.url);

describe('how the agent process is started', () => {
  const dir = mkdtempSync(join(tmpdir(), 'osmoda-shebang-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('main.ts starts with agentShebang(): the environment, then node with AGENT_NODE_FLAGS', () => {
    const shebang = readFileSync(MAIN_TS, 'utf8').split('\n')[0];
    expect(shebang).toBe(agentShebang());
    expect(shebang).toBe(`#!/usr/bin/env -S MALLOC_ARENA_MAX=1 node ${AGENT_NODE_FLAGS.join(' ')}`);
  });

  it('this Node accepts every flag (CI runs this file under Node 20 and 24)', () => {
    const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', 'process.stdout.write(JSON.stringify(process.execArgv))'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as string[]).slice(0, AGENT_NODE_FLAGS.length)).toEqual([...AGENT_NODE_FLAGS]);
  });

  it('a script with that first line runs node with the flags, the variables and its own arguments', () => {
    // the kernel hands the whole line to env as one argument; `env -S` splits it (coreutils >= 8.30)
    const script = join(dir, 'probe.js');
    writeFileSync(
      script,
      `${agentShebang()}\nprocess.stdout.write(JSON.stringify({ execArgv: process.execArgv, argv: process.argv.slice(2), env: process.env }));\n`,
    );
    chmodSync(script, 0o700);
    // the node found on PATH is this one, as for an installed bin
    const r = spawnSync(script, ['agent', '--config', 'x.json'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const seen = JSON.parse(r.stdout) as { execArgv: string[]; argv: string[]; env: Record<string, string> };
    expect(seen.execArgv).toEqual([...AGENT_NODE_FLAGS]);
    expect(seen.argv).toEqual(['agent', '--config', 'x.json']);
    for (const [name, value] of Object.entries(AGENT_ENVIRONMENT)) expect(seen.env[name]).toBe(value);
  });

  it('names the flags a process was started without', () => {
    expect(missingAgentNodeFlags([...AGENT_NODE_FLAGS])).toEqual([]);
    expect(missingAgentNodeFlags(['--inspect'])).toEqual([...AGENT_NODE_FLAGS]);
    expect(missingAgentNodeFlags([])).toEqual([...AGENT_NODE_FLAGS]);
  });

  it('names the variables a process was started without, and takes an operator\'s own value as set', () => {
    expect(missingAgentEnvironment({ ...AGENT_ENVIRONMENT })).toEqual([]);
    expect(missingAgentEnvironment({})).toEqual(['MALLOC_ARENA_MAX']);
    expect(missingAgentEnvironment({ MALLOC_ARENA_MAX: '' })).toEqual(['MALLOC_ARENA_MAX']);
    expect(missingAgentEnvironment({ MALLOC_ARENA_MAX: '2' })).toEqual([]);
  });
});
