/**
 * nix/package.nix, flake.nix and the NixOS VM test (nix/tests/mesh.nix), as far as a Debian
 * machine can check them: they parse (nix-instantiate only), the package calls buildNpmPackage
 * with dependencies from importNpmLock, and the flake's outputs wire the package into the module.
 * The real build and the VM test need a real Nix with nixpkgs (README, NixOS section).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS, agentShebang } from '../../src/daemon/process-settings.js';
import { EVAL_NIX, EVAL_PACKAGE_NIX, NIX_EVAL_DIR, REPO_ROOT, evalError, evalJson, nixGate, nixInstantiate } from './helpers/nix.js';

const PACKAGE_JSON = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

describe.skipIf(!nixGate('nix parse checks', 'parse'))('Nix files parse', () => {
  it.each(['nix/package.nix', 'nix/module.nix', 'nix/tests/mesh.nix', 'flake.nix'])('%s', (file) => {
    const r = nixInstantiate(['--parse', join(REPO_ROOT, file)]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a file with a syntax error does not', () => {
    const r = nixInstantiate(['--parse', '-E', '{ a = 1; b = ; }']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/syntax error/);
  });
});

/**
 * package.nix builds from an allow-list of top-level paths (topLevel), so a file the build script
 * reads but the list misses breaks the Nix build, which this machine cannot run: read both and
 * compare. Plain text, so it runs everywhere, Nix or not.
 */
describe('nix/package.nix source allow-list', () => {
  it('holds every file `npm run build` reads', () => {
    const nix = readFileSync(join(REPO_ROOT, 'nix/package.nix'), 'utf8');
    const list = /topLevel = \[([^\]]*)\]/.exec(nix)?.[1];
    expect(list, 'topLevel = [ ... ] in nix/package.nix').toBeDefined();
    const topLevel = [...list!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
    const build = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['build']!;
    const inputs = [...build.matchAll(/[\w./-]+\.(?:mjs|json)\b/g)].map((m) => m[0]);
    expect(inputs).toEqual(expect.arrayContaining(['tsconfig.json', 'rolldown.config.mjs', 'native/build.mjs']));
    for (const input of ['package.json', 'package-lock.json', 'src', 'proto', ...inputs]) expect(topLevel, input).toContain(input.split('/')[0]);
  });
});

/**
 * A recording importNpmLock (the shared fake one cannot be called): its store name says whether
 * it got this repository's source as npmRoot and a lockfile with a registry URL for every package
 * (importNpmLock fetches each package from its `resolved` URL).
 */
const IMPORT_NPM_LOCK = `{ mkFake, lib, ... }: {
  importNpmLock = {
    __functor = _: a:
      let
        # as importNpmLock reads it: the packageLock argument, else npmRoot's package-lock.json
        lock = a.packageLock or (lib.importJSON "\${toString a.npmRoot.origSrc}/package-lock.json");
        packages = removeAttrs lock.packages [ "" ];
        unresolved = lib.filter (m: !(m ? resolved)) (lib.attrValues packages);
        url = name: short: "https://registry.npmjs.org/\${name}/-/\${short}-\${packages."node_modules/\${name}".version}.tgz";
        verdict =
          if !(a.npmRoot._isLibCleanSourceWith or false) then "npmRoot-not-the-source"
          else if unresolved != [ ] then "unresolved-\${toString (builtins.length unresolved)}"
          else if packages."node_modules/ws".resolved != url "ws" "ws" then "wrong-url"
          else if packages."node_modules/@types/node".resolved != url "@types/node" "node" then "wrong-scoped-url"
          else "ok";
      in mkFake { name = "npm-deps-from-importNpmLock-\${verdict}"; };
    npmConfigHook = mkFake { name = "importNpmLock-npm-config-hook"; };
  };
}`;

interface PackageEval {
  name: string;
  pname: string;
  version: string;
  builder: string;
  meta: { mainProgram: string; license: { spdxId: string }; description: string };
  args: Record<string, unknown>;
  errors: string[];
  warnings: string[];
}

describe.skipIf(!nixGate('nix/package.nix', 'eval'))('nix/package.nix', () => {
  const evalPackage = (): PackageEval =>
    evalJson<PackageEval>(EVAL_PACKAGE_NIX, {
      package: join(REPO_ROOT, 'nix/package.nix'),
      extraPkgs: IMPORT_NPM_LOCK,
      warningsAreErrors: 'true',
    });

  it('is buildNpmPackage of this repository at the package.json version', () => {
    const p = evalPackage();
    expect(p.builder).toBe('buildNpmPackage');
    expect(p.pname).toBe('osmoda-mesh');
    expect(p.version).toBe(PACKAGE_JSON.version);
    expect(p.name).toBe(`osmoda-mesh-${PACKAGE_JSON.version}`);
    expect(p.args['src']).toBe(`<cleanSource ${REPO_ROOT}>`);
    expect(p.args['npmBuildScript']).toBe('build');
    expect(p.errors).toEqual([]);
    expect(p.warnings).toEqual([]);
  });

  it('takes its dependencies from importNpmLock, with no hash kept by hand', () => {
    const p = evalPackage();
    expect(p.args['npmDeps']).toMatch(/-npm-deps-from-importNpmLock-ok$/);
    expect(p.args['npmConfigHook']).toMatch(/-importNpmLock-npm-config-hook$/);
    expect(p.args).not.toHaveProperty('npmDepsHash');
  });

  it('runs on Node 22 (pkgs.nodejs would be whatever nixpkgs calls current)', () => {
    expect(evalPackage().args['nodejs']).toMatch(/-nodejs-22$/);
  });

  it('wraps the bin as node <the agent\'s V8 flags> main.js with its environment, both from main.ts\'s first line', () => {
    const { args } = evalPackage();
    const flags = AGENT_NODE_FLAGS.join(' ');
    expect(readFileSync(join(REPO_ROOT, 'src/main.ts'), 'utf8').split('\n')[0]).toBe(agentShebang());
    expect(args['nativeBuildInputs']).toEqual([expect.stringMatching(/-make-wrapper-hook$/)]);
    const script = String(args['postInstall']);
    expect(script).toMatch(/makeWrapper \/nix\/store\/[a-z0-9]+-nodejs-22\/bin\/node \$out\/bin\/osmoda-mesh/);
    // escapeShellArg quotes only when needed; --set-default leaves an operator's own value alone
    for (const [name, value] of Object.entries(AGENT_ENVIRONMENT)) expect(script).toMatch(new RegExp(`--set-default '?${name}'? '?${value}'? `));
    expect(script).toMatch(new RegExp(`--add-flags '?${flags}'? `));
    expect(script).toContain('--add-flags $out/lib/node_modules/osmoda-mesh/dist/src/main.js');
    // the flags come before the script: node would hand them to main.js as arguments otherwise
    expect(script.indexOf(flags)).toBeLessThan(script.indexOf('dist/src/main.js'));
  });

  it('refuses a first line of main.ts it cannot read the settings from, saying what it expects', () => {
    const copy = mkdtempSync(join(tmpdir(), 'osmoda-pkg-'));
    try {
      // package.nix reads package.json, the lockfile and src/main.ts from its repository root
      mkdirSync(join(copy, 'nix'));
      mkdirSync(join(copy, 'src'));
      for (const file of ['nix/package.nix', 'package.json', 'package-lock.json']) copyFileSync(join(REPO_ROOT, file), join(copy, file));
      const line = '#!/usr/bin/env -S node MALLOC_ARENA_MAX=1 --single-threaded-gc';
      writeFileSync(join(copy, 'src/main.ts'), `${line}\n`);
      const stderr = evalError(EVAL_PACKAGE_NIX, { package: join(copy, 'nix/package.nix'), extraPkgs: IMPORT_NPM_LOCK, warningsAreErrors: 'true' });
      expect(stderr).toContain('src/main.ts must start with `#!/usr/bin/env -S [NAME=value ...] node <flags>`');
      expect(stderr).toContain(line);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('has the meta NixOS needs: mainProgram (lib.getExe), MIT license, description', () => {
    const { meta } = evalPackage();
    expect(meta.mainProgram).toBe('osmoda-mesh');
    expect(meta.license.spdxId).toBe('MIT');
    expect(meta.description.length).toBeGreaterThan(10);
  });
});

/**
 * Nix 2.8 cannot evaluate a flake, but flake.nix is a plain attribute set: its `outputs` function
 * is called here with a stand-in nixpkgs input (nixpkgs' lib, the harness's fake pkgs).
 */
const FLAKE_OUTPUTS = `
let
  lib = import (builtins.getEnv "NIXPKGS_LIB");
  pkgs = import ${NIX_EVAL_DIR}/stubs/pkgs.nix { inherit lib; extraPkgs = ${IMPORT_NPM_LOCK}; };
  nixpkgs = { inherit lib; legacyPackages = { x86_64-linux = pkgs; aarch64-linux = pkgs; }; };
  self = (import ${REPO_ROOT}/flake.nix).outputs { inherit self nixpkgs; };
  module = import ${EVAL_NIX} {
    module = self.nixosModules.default;
    config = { services.osmoda-mesh.enable = true; };
    query = { options, config, ... }: {
      packagePriority = options.services.osmoda-mesh.package.highestPrio;
      execStart = config.systemd.services.osmoda-mesh.serviceConfig.ExecStart;
    };
  };
in {
  packages = lib.mapAttrs (_: p: lib.mapAttrs (_: d: d.pname) p) self.packages;
  checks = lib.mapAttrs (_: builtins.attrNames) self.checks;
  inherit module;
}`;

describe.skipIf(!nixGate('flake.nix', 'eval'))('flake.nix outputs', () => {
  interface FlakeEval {
    packages: Record<string, Record<string, string>>;
    checks: Record<string, string[]>;
    module: { packagePriority: number; execStart: string };
  }

  it('packages.<system>.default for x86_64-linux and aarch64-linux, a VM check, and a module using the package', () => {
    const r = nixInstantiate(['--eval', '--strict', '--json', '-E', FLAKE_OUTPUTS]);
    expect(r.stderr).toBe('');
    const flake = JSON.parse(r.stdout) as FlakeEval;
    expect(flake.packages).toEqual({
      'x86_64-linux': { default: 'osmoda-mesh', 'osmoda-mesh': 'osmoda-mesh' },
      'aarch64-linux': { default: 'osmoda-mesh', 'osmoda-mesh': 'osmoda-mesh' },
    });
    expect(flake.checks).toEqual({ 'x86_64-linux': ['vm'], 'aarch64-linux': ['vm'] });
    // mkDefault (1000) beats the module's own option default (1500): the flake's package is used.
    expect(flake.module.packagePriority).toBe(1000);
    expect(flake.module.execStart).toMatch(new RegExp(`^"/nix/store/[^"]+-osmoda-mesh-${PACKAGE_JSON.version}/bin/osmoda-mesh" "agent"`));
  });
});
