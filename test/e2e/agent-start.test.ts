import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../src/daemon/node-flags.js';
import { ensureStateDir, loadOrCreateIdentity } from '../../src/mesh/index.js';

/**
 * The agent refuses to start on bad input with one clear line naming the problem, and leaves no
 * half-written state: a bad config field, a key file others can read, a tunnel port in use.
 */

const MAIN = resolve('dist/src/main.js');

function agent(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string; stdout: string } {
  const result = spawnSync(process.execPath, [MAIN, 'agent', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, OSMODA_MESH_NODE_NAME: 'starter', ...env },
  });
  return { status: result.status, stderr: result.stderr, stdout: result.stdout };
}

describe('agent start-up refusals', () => {
  let dir: string;
  let blocker: Server;
  let blockedPort: number;
  let freePort: number;

  beforeAll(async () => {
    expect(existsSync(MAIN), 'dist/src/main.js (npm test builds it first)').toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'osm-start-'));
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    blockedPort = (blocker.address() as { port: number }).port;
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    freePort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
  });

  afterAll(() => {
    blocker?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const base = (name: string): string[] => ['--state-dir', join(dir, name), '--control', join(dir, `${name}.sock`), '--dns', 'off', '--listen', `127.0.0.1:${freePort}`];

  it('a bad config field: exit 1 and a message naming the field and what it expected', () => {
    const config = join(dir, 'bad.json');
    writeFileSync(config, JSON.stringify({ services: { 'my db': { port: 5432 } } }));
    const r = agent(['--config', config, ...base('badcfg')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/config services\.my db: expected a DNS label/);
    const typo = join(dir, 'typo.json');
    writeFileSync(typo, JSON.stringify({ listne: '0.0.0.0:18800' }));
    const r2 = agent(['--config', typo, ...base('typo')]);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/config listne: expected no such option/);
    const port = join(dir, 'port.json');
    writeFileSync(port, JSON.stringify({ services: { db: { port: 'abc' } } }));
    const r3 = agent(['--config', port, ...base('port')]);
    expect(r3.status).toBe(1);
    expect(r3.stderr).toMatch(/config services\.db\.port: expected a port 1\.\.65535, got 'abc'/);
  });

  it('a key file that others can read: refuses, naming the file and the fix', () => {
    const stateDir = join(dir, 'loose');
    // the identity an earlier start would have written (same code as the agent's)
    ensureStateDir(stateDir);
    loadOrCreateIdentity(stateDir);
    const keyFile = join(stateDir, 'identity.key');
    expect(existsSync(keyFile)).toBe(true);
    chmodSync(keyFile, 0o644);
    const r = agent(base('loose'));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${keyFile} is readable by others`);
    expect(r.stderr).toContain(`chmod 600 ${keyFile}`);
  });

  it('a tunnel port in use: exit 1 naming the address, no temp files left in the state dir', () => {
    const r = agent([...base('busy').slice(0, -2), '--listen', `127.0.0.1:${blockedPort}`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`127.0.0.1:${blockedPort}`);
    expect(r.stderr).toMatch(/EADDRINUSE|in use/);
    const leftovers = readdirSync(join(dir, 'busy')).filter((f) => f.endsWith('.tmp'));
    expect(leftovers).toEqual([]);
  });
});

/**
 * What `osmoda-mesh` runs is one file (rolldown.config.mjs): every module of ours and every
 * JavaScript dependency inside it, only Node's own modules and the native addons loaded at run
 * time. An import that escaped the bundle would load as separate modules again and bring back the
 * 3.5-7 MB that bundling saved a fresh agent (README, Libraries and why).
 */
describe('the entry point is one bundle', () => {
  const EXTERNAL_ADDONS = ['sodium-native', 'bufferutil', 'utf-8-validate'];

  it('imports and requires only Node built-ins and the native addons', () => {
    const code = readFileSync(MAIN, 'utf8');
    // main.ts's first line, kept by the bundler (test/unit/daemon/node-flags.test.ts pins it to the flags)
    expect(code.split('\n')[0]).toBe(`#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
    const imported = [...code.matchAll(/^import\b[^;]*?from\s*"([^"]+)"/gm)].map((m) => m[1]!);
    // require("x") in the bundled CommonJS dependencies, createRequire(import.meta.url)("x") in ours
    const required = [...code.matchAll(/(?:\brequire|createRequire\(import\.meta\.url\))\("([^"]+)"\)/g)].map((m) => m[1]!);
    const dynamic = [...code.matchAll(/\bimport\(\s*["'`]([^"'`]+)/g)].map((m) => m[1]!);
    // the bundle does reach them: the patterns above still match what rolldown writes
    expect(imported).toContain('node:net');
    expect(required).toContain('sodium-native');
    expect(imported.filter((m) => !m.startsWith('node:'))).toEqual([]);
    expect(required.filter((m) => !isBuiltin(m) && !EXTERNAL_ADDONS.includes(m))).toEqual([]);
    expect(dynamic.filter((m) => !isBuiltin(m))).toEqual([]);
  });
});
