# The osmoda-mesh agent and CLI, built from this repository.
#
#   nix-build -E 'with import <nixpkgs> { }; callPackage ./nix/package.nix { }'
#
# Dependencies come from package-lock.json through importNpmLock (one fixed-output fetch per
# package, checked against the lockfile's integrity hashes), so there is no npmDepsHash to keep in
# step by hand.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  makeWrapper,
  nodejs_22,
  # The Node.js the agent runs on. Measured (README, Benchmarks; docs/BENCHMARKS.md): in the four
  # full runs of 2026-11-27, 22 made more new connections through the mesh than 20 (past its end
  # of life since 2026-04-30, and the leanest in memory) in every run and moved more bytes in three,
  # and beat 24 on one stream and on idle memory in every run. Re-measure before changing.
  # Not called `nodejs`: callPackage would fill that from pkgs.nodejs and this default would never apply.
  agentNodejs ? nodejs_22,
}:
let
  root = ../.;
  packageJson = lib.importJSON (root + "/package.json");

  # What `npm run build` (tsc over src/, rolldown.config.mjs bundling the entry point into one file,
  # and native/build.mjs compiling the malloc_trim helper with stdenv's cc) and the installed
  # package (package.json "files") need. An allow-list, so tests, docs, benchmarks and nix/ itself
  # never change the source hash (test/nix/package.test.ts checks it against the build script).
  # lib.cleanSourceWith rather than lib.fileset: fileset needs builtins Nix 2.8 lacks.
  topLevel = [ "package.json" "package-lock.json" "tsconfig.json" "rolldown.config.mjs" "README.md" "LICENSE" "src" "proto" "native" ];
  src = lib.cleanSourceWith {
    name = "osmoda-mesh-source";
    src = root;
    filter = path: type:
      let rel = lib.removePrefix (toString root + "/") (toString path);
      in lib.elem (lib.head (lib.splitString "/" rel)) topLevel && lib.cleanSourceFilter path type;
  };

  # npm writes no `resolved` URLs when omit-lockfile-registry-resolved is set (as on the machines
  # this repository is developed on), and importNpmLock needs them: it fetches each package from
  # its `resolved` URL and reads it for every dependency in package.json. A registry package's
  # tarball URL follows from its name and version.
  registry = "https://registry.npmjs.org";
  lockedName = path: module: module.name or (lib.last (lib.splitString "node_modules/" path));
  withResolved = path: module:
    if path == "" || module ? resolved || module.link or false || module.inBundle or false then module
    else
      let name = lockedName path module;
      in module // { resolved = "${registry}/${name}/-/${baseNameOf name}-${module.version}.tgz"; };
  packageLock = lib.importJSON (root + "/package-lock.json");

  # How the agent's process is started (src/daemon/process-settings.ts): MALLOC_ARENA_MAX=1 (one
  # glibc malloc arena for every thread, less memory kept after busy spells), then node with the
  # V8 flags (--single-threaded-gc, 1.4-1.6x the throughput on 2 cores; --max-semi-space-size=1, a
  # smaller heap during and after bursts of connections). main.ts's first line carries them
  # (`#!/usr/bin/env -S NAME=value node FLAGS`), and a unit test keeps that line equal to
  # process-settings.ts; read them from there, not from a copy.
  shebang = lib.head (lib.splitString "\n" (builtins.readFile (root + "/src/main.ts")));
  shebangPrefix = "#!/usr/bin/env -S ";
  shebangWords = lib.filter (word: word != "") (lib.splitString " " (lib.removePrefix shebangPrefix shebang));
  isAssignment = word: builtins.match "[A-Za-z_][A-Za-z0-9_]*=.*" word != null;
  assignments = lib.filter isAssignment shebangWords;
  command = lib.filter (word: !isAssignment word) shebangWords;
  agentEnvironment =
    if lib.hasPrefix shebangPrefix shebang && command != [ ] && lib.head command == "node" && shebangWords == assignments ++ command
    then map (word: let parts = lib.splitString "=" word; in { name = lib.head parts; value = lib.concatStringsSep "=" (lib.tail parts); }) assignments
    else throw "nix/package.nix: src/main.ts must start with `${shebangPrefix}[NAME=value ...] node <flags>`, found `${shebang}`";
  agentNodeFlags = lib.concatStringsSep " " (lib.tail command);
in
buildNpmPackage {
  pname = packageJson.name;
  inherit (packageJson) version;
  inherit src;
  nodejs = agentNodejs;

  npmDeps = importNpmLock {
    npmRoot = src;
    packageLock = packageLock // { packages = lib.mapAttrs withResolved packageLock.packages; };
  };
  npmConfigHook = importNpmLock.npmConfigHook;
  # `tsc` into dist/, rolldown bundles dist/src/main.js (rolldown's prebuilt binary comes from the
  # lockfile, @rolldown/binding-linux-*), and the helper goes into dist/native/; the bin
  # osmoda-mesh is dist/src/main.js (package.json "bin"). proto/mesh.proto is installed beside
  # dist/ ("files") as the wire's description; the agent runs on src/wire/schema.ts, generated
  # from it during development (proto/generate.mjs), and never reads it.
  npmBuildScript = "build";

  # npmInstallHook wraps the bin as `node main.js`, which drops the shebang's environment and
  # flags: wrap it again with them, the flags in front of the script. --set-default: a variable
  # the operator set (systemd Environment=, the shell) wins.
  nativeBuildInputs = [ makeWrapper ];
  postInstall = ''
    makeWrapper ${agentNodejs}/bin/node $out/bin/osmoda-mesh \
      ${lib.concatMapStringsSep " " (v: "--set-default ${lib.escapeShellArg v.name} ${lib.escapeShellArg v.value}") agentEnvironment} \
      --add-flags ${lib.escapeShellArg agentNodeFlags} \
      --add-flags $out/lib/node_modules/${packageJson.name}/dist/src/main.js
  '';

  meta = {
    description = packageJson.description;
    license = lib.licenses.mit;
    mainProgram = "osmoda-mesh";
    platforms = lib.platforms.linux;
  };
}
