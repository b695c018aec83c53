import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS, agentShebang } from '../../src/daemon/process-settings.js';
import { ensureStateDir, loadOrCreateIdentity } from '../../src/mesh/index.js';
import { freePort } from '../integration/helpers.js';

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
  let unusedPort: number;

  beforeAll(async () => {
    expect(existsSync(MAIN), 'dist/src/main.js (npm test builds it first)').toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'osm-start-'));
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    blockedPort = (blocker.address() as { port: number }).port;
    unusedPort = await freePort('127.0.0.1');
  });

  afterAll(() => {
    blocker?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const base = (name: string): string[] => ['--state-dir', join(dir, name), '--control', join(dir, `${name}.sock`), '--dns', 'off', '--listen', `127.0.0.1:${unusedPort}`];

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
    // main.ts's first line, kept by the bundler (test/unit/daemon/process-settings.test.ts runs it)
    expect(code.split('\n')[0]).toBe(agentShebang());
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
    // node:http only through require(): an ES import of it loads undici on Node 22 and 24, 10-12 MB
    // (src/util/http.ts, test/unit/util/http.test.ts)
    expect(imported.filter((m) => m === 'node:http' || m === 'http')).toEqual([]);
    expect(required).toContain('node:http');
  });

  it('carries no protobuf library: the wire codec is its own (src/wire/proto-codec.ts)', () => {
    // protobufjs at run time cost a fresh agent 5 MB (README, Libraries and why); it is a dev
    // dependency now, for proto/generate.mjs and the codec tests
    const code = readFileSync(MAIN, 'utf8');
    const bundled = new Set([...code.matchAll(/^\/\/ node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)].map((m) => m[1]!));
    expect(bundled).toContain('ws');
    expect([...bundled].filter((name) => name === 'protobufjs' || name === 'long' || name.startsWith('@protobufjs/'))).toEqual([]);
    expect(code).toContain('// dist/src/wire/proto-codec.js');
  });

  it('is ASCII only, so V8 holds its source at one byte per character (rolldown.config.mjs, charset)', () => {
    const code = readFileSync(MAIN, 'utf8');
    const nonAscii = [...new Set(code.match(/[^\x00-\x7f]/g) ?? [])];
    expect(nonAscii).toEqual([]);
    // the code it came from does have such characters (the ellipsis of a shortened value in an
    // error message): the setting is what escapes them
    expect(readFileSync(resolve('dist/src/mux/session.js'), 'utf8')).toContain("'…'");
    expect(code).toContain('\\u2026');
  });
});

/**
 * Run as a program (the npm bin is main.js itself), the agent starts with the V8 flags and the
 * environment it is tuned for, from main.js's first line; started as `node main.js agent`, it runs
 * but says which of them it lacks.
 */
describe('the agent process settings', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'osm-settings-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Starts an agent, waits for its start-up log, returns that log and the process's argv and environment. */
  async function startAndInspect(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ log: string; cmdline: string[]; environ: string[] }> {
    const logPath = join(dir, `${name}.log`);
    writeFileSync(logPath, '', { mode: 0o600 });
    const fd = openSync(logPath, 'a');
    const port = await freePort('127.0.0.1');
    const argv = [...args, 'agent', '--state-dir', join(dir, name), '--control', join(dir, `${name}.sock`), '--dns', 'off', '--listen', `127.0.0.1:${port}`];
    const child = spawn(command, argv, { env: { OSMODA_MESH_NODE_NAME: name, ...env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      // the last start-up line: after it, every warning about the process has been logged
      for (let i = 0; i < 400 && !readFileSync(logPath, 'utf8').includes('"msg":"tunnel cipher'); i++) {
        expect(child.exitCode, `agent exited: ${readFileSync(logPath, 'utf8')}`).toBeNull();
        await sleep(50);
      }
      // env -S execs node in the same process: the pid is the agent's
      const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0');
      const log = readFileSync(logPath, 'utf8');
      expect(log, 'the agent logged its cipher at start-up').toContain('"msg":"tunnel cipher');
      return { log, cmdline, environ };
    } finally {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  it('main.js run as a program: the flags and MALLOC_ARENA_MAX are in effect, and nothing is reported missing', async () => {
    // PATH: `env` finds this node, as it finds the system's for an installed bin
    const r = await startAndInspect('bin', MAIN, [], { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` });
    for (const flag of AGENT_NODE_FLAGS) expect(r.cmdline).toContain(flag);
    for (const [name, value] of Object.entries(AGENT_ENVIRONMENT)) expect(r.environ).toContain(`${name}=${value}`);
    expect(r.log).not.toContain('started without');
    // sodium-native loads here: X25519 and Ed25519 verification are libsodium's (crypto/keys/backend.ts)
    expect(r.log).toContain('"x25519":"libsodium"');
    expect(r.log).toContain('"ed25519Verify":"libsodium"');
  });

  it('node main.js without them: the agent runs and names the flags and the variables it lacks', async () => {
    const r = await startAndInspect('bare', process.execPath, [MAIN], { PATH: process.env['PATH'] ?? '/usr/bin:/bin' });
    expect(r.environ.some((v) => v.startsWith('MALLOC_ARENA_MAX='))).toBe(false);
    const warnings = r.log.split('\n').filter((line) => line.includes('started without'));
    expect(warnings).toHaveLength(2);
    expect(warnings.join('\n')).toContain('"missing":["--single-threaded-gc","--max-semi-space-size=1"]');
    expect(warnings.join('\n')).toContain('"missing":["MALLOC_ARENA_MAX"]');
  });
});
