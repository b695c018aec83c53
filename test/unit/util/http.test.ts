import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import * as http from '../../../src/util/http.js';

const dir = mkdtempSync(join(tmpdir(), 'osmoda-http-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** In a fresh Node (this one): whether undici, Node's fetch and WebSocket client, got loaded. */
function loadsUndici(moduleSource: string): boolean {
  const file = join(dir, `m${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, `${moduleSource}\nprocess.stdout.write(JSON.stringify(process.moduleLoadList.some((m) => m.includes('undici'))));\n`);
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 20_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as boolean;
}

describe('node:http for the agent (src/util/http.ts)', () => {
  it('is the real node:http', async () => {
    const real = await import('node:http');
    expect(http.createServer).toBe(real.createServer);
    expect(http.request).toBe(real.request);
  });

  it("leaves undici unloaded, where an ES import of node:http loads it on Node 22 and 24", () => {
    // the module as it is, compiled to JavaScript as tsc does for dist/
    const source = readFileSync(resolve('src/util/http.ts'), 'utf8');
    const compiled = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    expect(loadsUndici(`${compiled}\ncreateServer(() => {}).close();`)).toBe(false);
    // the premise, on the Node versions it holds for (not Node 20, whose node:http has no such getter)
    const major = Number.parseInt(process.versions.node, 10);
    expect(loadsUndici("import { createServer } from 'node:http';\ncreateServer(() => {}).close();")).toBe(major >= 22);
  });
});
