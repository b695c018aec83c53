# What test/nix/module.test.ts asserts on, for one evaluation of nix/module.nix through
# ../shared/nix-eval/eval.nix (--arg query). Derivations print as their store paths.
{ config, render, ... }:
let
  mesh = config.services.osmoda-mesh;
  unit = config.systemd.services.osmoda-mesh or null;
in
{
  unit = if unit == null then null else {
    inherit (unit) wantedBy after wants path environment serviceConfig;
    unitText = render.service unit;
  };
  configJson = if mesh.enable then mesh.configFile.text else null;
  # Text of every package in environment.systemPackages that is a generated script.
  scripts = map (p: p.text or null) config.environment.systemPackages;
  firewall = { inherit (config.networking.firewall) allowedTCPPorts allowedUDPPorts; };
  resolver = {
    inherit (config.networking) nameservers search;
    resolved = { inherit (config.services.resolved) enable domains; };
  };
  users = builtins.mapAttrs (_: u: { inherit (u) isSystemUser group; }) config.users.users;
  groups = builtins.attrNames config.users.groups;
}
