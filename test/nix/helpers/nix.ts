/**
 * Runs nix-instantiate for the Nix tests: parse checks (nix-instantiate only) and evaluations of
 * nix/module.nix and nix/package.nix through ../shared/nix-eval (also needs nixpkgs' lib/).
 * A suite that cannot run says so on stderr in one loud line and is skipped, never passed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'vitest';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const NIX_EVAL_DIR = resolve(REPO_ROOT, '../shared/nix-eval');
export const QUERY_NIX = join(REPO_ROOT, 'test/nix/helpers/query.nix');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): RunResult {
  const r = spawnSync(command, args, { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') return { code: null, stdout: '', stderr: `${command}: not found` };
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** As a non-root user nix-instantiate needs a store it may use; evaluation never writes to it. */
const STORE_ARGS = process.getuid?.() === 0 ? [] : ['--store', 'dummy://'];

const hasNixInstantiate = run('nix-instantiate', ['--version']).code === 0;

/** nixpkgs lib/ as the harness finds it: $NIXPKGS_LIB, else ../shared/nixpkgs-lib/lib. */
function findNixpkgsLib(): { path: string } | { reason: string } {
  const fromEnv = process.env.NIXPKGS_LIB;
  if (fromEnv) {
    return existsSync(join(fromEnv, 'default.nix')) ? { path: fromEnv } : { reason: `NIXPKGS_LIB=${fromEnv} has no default.nix` };
  }
  const shared = resolve(REPO_ROOT, '../shared/nixpkgs-lib/lib');
  if (existsSync(join(shared, 'default.nix'))) return { path: shared };
  return { reason: 'NIXPKGS_LIB not set' };
}
const nixpkgsLib = findNixpkgsLib();

const LIB_HINT = 'see ../shared/nixpkgs-lib/README.md';

/**
 * Whether a suite can run. 'parse' needs nix-instantiate (CI installs nix-bin, so there a missing
 * one registers a failing test); 'eval' also needs nixpkgs lib/ (CI has none: skipped, said loudly).
 */
export function nixGate(suite: string, needs: 'parse' | 'eval'): boolean {
  // One failing test for a CI image without nix-bin is enough: the parse suite registers it.
  const isFailing = process.env.CI === 'true' && needs === 'parse';
  if (!hasNixInstantiate) {
    console.error(
      `!!!!! NIX ${needs === 'parse' ? 'PARSE CHECKS' : 'MODULE EVALUATION'} NOT RUN (${suite}): nix-instantiate not found (apt-get install nix-bin)` +
        (isFailing ? ' — failing because CI=true' : ' — skipped, not passed'),
    );
    if (isFailing) {
      it(`nix-instantiate is installed (CI=true): ${suite}`, () => {
        throw new Error(`${suite}: nix-instantiate not found; .ci/run installs nix-bin`);
      });
    }
    return false;
  }
  if (needs === 'eval' && 'reason' in nixpkgsLib) {
    console.error(`!!!!! NIX MODULE EVALUATION NOT RUN (${suite}): ${nixpkgsLib.reason} (${LIB_HINT}) — skipped, not passed`);
    return false;
  }
  return true;
}

/**
 * As root, Nix 2.8 opens its store with `build-users-group = nixbld` and prints a warning on every
 * call when that group does not exist; nix-bin alone does not create it (a multi-user install
 * does), and the checks here expect an empty stderr. Nothing here builds, so no build users.
 */
const NO_BUILD_USERS = 'build-users-group =';

function nixEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env, NIX_CONFIG: [process.env.NIX_CONFIG, NO_BUILD_USERS].filter(Boolean).join('\n') };
  return 'path' in nixpkgsLib ? { ...env, NIXPKGS_LIB: nixpkgsLib.path } : env;
}

export function nixInstantiate(args: readonly string[]): RunResult {
  return run('nix-instantiate', [...STORE_ARGS, ...args], nixEnv());
}

/** `--eval --strict --json` of `file` with `--arg name expr` pairs; throws with nix's stderr on failure. */
export function evalJson<T>(file: string, args: Record<string, string>): T {
  const r = nixInstantiate(evalArgs(file, args));
  if (r.code !== 0) throw new Error(`nix-instantiate ${file} failed (${r.code}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Like evalJson but the evaluation must fail: returns nix's stderr. */
export function evalError(file: string, args: Record<string, string>): string {
  const r = nixInstantiate(evalArgs(file, args));
  if (r.code === 0) throw new Error(`nix-instantiate ${file} evaluated, expected it to fail:\n${r.stdout.slice(0, 2000)}`);
  if (r.code === null) throw new Error(`nix-instantiate ${file} did not run: ${r.stderr}`);
  return r.stderr;
}

function evalArgs(file: string, args: Record<string, string>): string[] {
  return ['--eval', '--strict', '--json', file, ...Object.entries(args).flatMap(([name, expr]) => ['--arg', name, expr])];
}

/** nix/module.nix with a configuration.nix body (`{ ... }` attrs), through the shared harness. */
export function evalModuleArgs(config: string, extra: Record<string, string> = {}): Record<string, string> {
  return { module: join(REPO_ROOT, 'nix/module.nix'), config, ...extra };
}

export const EVAL_NIX = join(NIX_EVAL_DIR, 'eval.nix');
export const EVAL_PACKAGE_NIX = join(NIX_EVAL_DIR, 'eval-package.nix');
