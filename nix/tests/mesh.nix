# NixOS VM test: three machines form a mesh from their configuration alone, and psql on one
# reaches PostgreSQL on another by the bare name `db`.
#
#   nix build .#checks.x86_64-linux.vm                                  (flake)
#   nix-build nix/tests/mesh.nix                                        (<nixpkgs> on NIX_PATH)
#
# Needs a real Nix with nixpkgs and KVM: it builds the package and boots VMs, so it does not run on
# the Debian machines of `npm test` (there it is only parse-checked).
{ pkgs ? import <nixpkgs> { }, module ? ../module.nix }:
let
  tokenFile = "/run/secrets/mesh-token";
  # The node names are not `db`: the test network's /etc/hosts lists every machine, and would
  # answer a machine called db before the mesh DNS does.
  meshNode = name: {
    imports = [ module ];
    services.osmoda-mesh = {
      enable = true;
      publicEndpoints = [ "ws://${name}:18800" ];
      openFirewall = true;
      dns.setSystemResolver = true;
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "osmoda-mesh";

  nodes = {
    # Creates the mesh on first start and issues the join token.
    admin = { pkgs, ... }: {
      imports = [ (meshNode "admin") ];
      services.osmoda-mesh.bootstrap.meshName = "test";
      environment.systemPackages = [ pkgs.postgresql ];
      users.users.alice = { isNormalUser = true; extraGroups = [ "osmoda-mesh" ]; };
      users.users.bob.isNormalUser = true;
    };

    # Runs PostgreSQL and offers it to the mesh as `db`, to the client only.
    server = {
      imports = [ (meshNode "server") ];
      services.osmoda-mesh.joinTokenFile = tokenFile;
      services.osmoda-mesh.services.db = { port = 5432; allowFrom = [ "client" ]; };
      services.postgresql = {
        enable = true;
        # The agent connects from 127.0.0.1 on behalf of mesh clients.
        authentication = "host all all 127.0.0.1/32 trust";
      };
    };

    client = { pkgs, ... }: {
      imports = [ (meshNode "client") ];
      services.osmoda-mesh.joinTokenFile = tokenFile;
      environment.systemPackages = [ pkgs.postgresql ];
    };
  };

  testScript = ''
    start_all()

    admin.wait_for_unit("osmoda-mesh.service")
    admin.wait_until_succeeds("osmoda-mesh services", timeout=60)
    token = admin.succeed("osmoda-mesh token create --ttl 1h --uses 2").strip()

    for machine in (server, client):
        # Started although the token file is missing (the SetCredential fallback), not joined yet.
        machine.wait_for_unit("osmoda-mesh.service")
        machine.succeed(f"install -d -m 0700 /run/secrets && (umask 077; echo '{token}' > ${tokenFile})")
        machine.succeed("systemctl restart osmoda-mesh.service")

    server.wait_for_unit("postgresql.service")
    client.wait_until_succeeds("osmoda-mesh resolve db", timeout=60)
    client.wait_until_succeeds("psql -h db -U postgres -tAc 'select 42' | grep -qx 42", timeout=60)

    # allowFrom = [ "client" ]: the admin is a member of the mesh but may not reach db.
    admin.wait_until_succeeds("osmoda-mesh resolve db", timeout=60)
    admin.fail("timeout 20 psql -h db -U postgres -tAc 'select 1'")

    # The control socket is 0660, group osmoda-mesh, in a 0750 directory.
    admin.succeed("su -l alice -c 'osmoda-mesh services'")
    admin.fail("su -l bob -c 'osmoda-mesh services'")

    # A joined node no longer needs its token: delete it, restart, still in the mesh.
    server.succeed("rm ${tokenFile} && systemctl restart osmoda-mesh.service")
    server.wait_for_unit("osmoda-mesh.service")
    client.wait_until_succeeds("psql -h db -U postgres -tAc 'select 42' | grep -qx 42", timeout=60)

    # The exposure score the README states (2.0 or lower, on a scale of 100 here).
    admin.succeed("systemd-analyze security --threshold=20 osmoda-mesh.service")
  '';
}
