import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * STYLE.md's dependency direction, checked on the real source: a layer imports only from layers
 * below it, mux and tunnel never import each other, cli talks to the agent only through control,
 * and another concern is imported only through its index.ts.
 */

const SRC = resolve('src');
const RANK: Record<string, number> = {
  util: 0,
  'errors.ts': 0,
  wire: 1,
  config: 1,
  // compose (Compose file → mesh config) is pure and sits just above config; only cli imports it
  compose: 1.5,
  crypto: 2,
  mux: 3,
  tunnel: 3,
  mesh: 4,
  names: 5,
  forward: 6,
  control: 7,
  daemon: 8,
};
const CLI_MAY_IMPORT = new Set(['control', 'config', 'compose', 'util', 'errors.ts']);
const COMPOSE_MAY_IMPORT = new Set(['config', 'util', 'errors.ts']);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

function concernOf(file: string): string {
  return relative(SRC, file).split('/')[0]!;
}

interface Import {
  from: string;
  to: string;
  spec: string;
}

function imports(): Import[] {
  const out: Import[] = [];
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/^(?:import|export)[^'"]*from\s+'(\.[^']+)'/gm)) {
      const spec = match[1]!;
      const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
      out.push({ from: file, to: target, spec });
    }
  }
  return out;
}

describe('source layering (STYLE.md)', () => {
  const all = imports();

  it('found the source and its imports', () => {
    expect(all.length).toBeGreaterThan(100);
  });

  it('every layer imports only from layers below it (or itself)', () => {
    const violations: string[] = [];
    for (const { from, to } of all) {
      const a = concernOf(from);
      const b = concernOf(to);
      if (a === b || a === 'main.ts' || a === 'cli') continue;
      const ra = RANK[a];
      const rb = RANK[b];
      if (ra === undefined || rb === undefined) {
        violations.push(`${relative(SRC, from)} -> ${relative(SRC, to)}: unknown layer`);
      } else if (rb >= ra) {
        violations.push(`${relative(SRC, from)} (${a}) imports ${relative(SRC, to)} (${b})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('compose depends only on config, util and errors', () => {
    const violations = all
      .filter(({ from, to }) => concernOf(from) === 'compose' && concernOf(to) !== 'compose' && !COMPOSE_MAY_IMPORT.has(concernOf(to)))
      .map(({ from, to }) => `${relative(SRC, from)} -> ${relative(SRC, to)}`);
    expect(violations).toEqual([]);
  });

  it('cli depends only on control, config, compose, util and errors', () => {
    const violations = all
      .filter(({ from, to }) => concernOf(from) === 'cli' && concernOf(to) !== 'cli' && !CLI_MAY_IMPORT.has(concernOf(to)))
      .map(({ from, to }) => `${relative(SRC, from)} -> ${relative(SRC, to)}`);
    expect(violations).toEqual([]);
  });

  it('another concern is imported only through its index.ts (util and errors have none)', () => {
    const violations = all
      .filter(({ from, to }) => {
        const a = concernOf(from);
        const b = concernOf(to);
        if (a === b || b === 'util' || b === 'errors.ts') return false;
        // crypto has two sub-concerns, keys and noise, each with its own index
        return !to.endsWith('/index.ts');
      })
      .map(({ from, spec }) => `${relative(SRC, from)} imports '${spec}'`);
    expect(violations).toEqual([]);
  });
});
