{
  description = "osmoda-mesh: call your Compose services by name across servers through an encrypted mesh";

  # Follow your own nixpkgs with `inputs.osmoda-mesh.inputs.nixpkgs.follows = "nixpkgs";`.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        osmoda-mesh = pkgs.callPackage ./nix/package.nix { };
        default = osmoda-mesh;
      });

      # services.osmoda-mesh, with this flake's package as the default `package`.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.osmoda-mesh.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      # Three VMs: create a mesh, join with token files, psql -h db by name (needs KVM).
      checks = forAllSystems (pkgs: {
        vm = import ./nix/tests/mesh.nix { inherit pkgs; module = self.nixosModules.default; };
      });
    };
}
