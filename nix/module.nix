# NixOS module: services.osmoda-mesh runs one mesh agent as a hardened systemd service.
# The agent's JSON config (src/config/schema.ts) is generated from the options below.
{ config, lib, pkgs, utils, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.osmoda-mesh;
  opt = "services.osmoda-mesh";

  stateDir = "/var/lib/osmoda-mesh";
  runtimeDir = "/run/osmoda-mesh";
  # systemd copies the LoadCredential= file here for the unit (readable by its user only).
  tokenCredential = "/run/credentials/osmoda-mesh.service/join-token";

  # The agent's own checks (src/config/validate.ts), repeated so a bad value fails at evaluation
  # with the option's name instead of at run time in the journal.
  isDnsLabel = s: builtins.match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" s != null;
  isAccessRule = s: isDnsLabel (lib.removePrefix "tag:" s);
  dnsLabelRule = "a DNS label: 1-63 of a-z, 0-9 and -, not starting or ending with -";

  bracketed = host: if lib.hasInfix ":" host then "[${host}]" else host;

  generated = {
    nodeName = cfg.nodeName;
    inherit stateDir;
    control = "${runtimeDir}/control.sock";
    listen = "${bracketed cfg.listenAddress}:${toString cfg.port}";
    inherit (cfg) publicEndpoints vipRange forwardMode logLevel tags metricsListen;
    dns = { inherit (cfg.dns) enable listen upstreams domain; };
    services = lib.mapAttrs (_: s: { inherit (s) port targetHost targetPort allowFrom; }) cfg.services;
    joinTokenFile = if cfg.joinTokenFile == null then null else tokenCredential;
    bootstrap.meshName = cfg.bootstrap.meshName;
  };
  # What the agent reads; everything derived below (capabilities, resolver, CLI socket) follows it,
  # so a `settings` override cannot leave the unit and the config disagreeing.
  final = lib.recursiveUpdate generated cfg.settings;
  configFile = pkgs.writeText "osmoda-mesh.json" (builtins.toJSON final);

  isNat = final.forwardMode == "nat";
  # Port 53 and service ports below 1024 need CAP_NET_BIND_SERVICE; nat mode (SPEC §4a) runs `nft`
  # to install DNAT rules, which needs CAP_NET_ADMIN (ambient, so the nft child inherits it).
  capabilities = [ "CAP_NET_BIND_SERVICE" ] ++ lib.optional isNat "CAP_NET_ADMIN";

  dnsMatch = builtins.match "([0-9.]+):([0-9]+)" final.dns.listen;
  dnsAddress = if dnsMatch == null then final.dns.listen else lib.head dnsMatch;
  setResolver = cfg.dns.setSystemResolver;

  # The CLI, pointed at this agent's control socket (an OSMODA_MESH_CONTROL of the caller wins).
  cli = pkgs.writeShellScriptBin "osmoda-mesh" ''
    if [ -z "''${OSMODA_MESH_CONTROL-}" ]; then export OSMODA_MESH_CONTROL=${lib.escapeShellArg final.control}; fi
    exec ${lib.escapeShellArg (lib.getExe cfg.package)} "$@"
  '';

  serviceModule = { name, config, ... }: {
    options = {
      port = mkOption {
        type = types.port;
        description = "Port of the service in the mesh: clients connect to `${name}:PORT` (its virtual IP).";
      };
      targetHost = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "Where this node connects for the service.";
      };
      targetPort = mkOption {
        type = types.port;
        default = config.port;
        defaultText = lib.literalExpression "port";
        description = "Port on targetHost.";
      };
      allowFrom = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        example = [ "web1" "tag:app" ];
        description = ''
          Who may connect, checked by this node against the caller's certificate: node names and
          `tag:<tag>` entries. null: every mesh member; [ ]: no other node.
        '';
      };
    };
  };

  storePrefixes = lib.unique [ "/nix/store/" "${builtins.storeDir}/" ];
  isInStore = path: lib.any (p: lib.hasPrefix p path) storePrefixes;
  zeroPorts =
    lib.optional (cfg.port == 0) "${opt}.port"
    ++ lib.concatLists (lib.mapAttrsToList (n: s:
      lib.optional (s.port == 0) "${opt}.services.${n}.port"
      ++ lib.optional (s.targetPort == 0) "${opt}.services.${n}.targetPort") cfg.services);
in
{
  options.services.osmoda-mesh = {
    enable = lib.mkEnableOption "the osmoda-mesh agent (encrypted service mesh)";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The osmoda-mesh package (agent and CLI).";
    };

    nodeName = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "This node's name in the mesh (${dnsLabelRule}).";
    };

    listenAddress = mkOption {
      type = types.str;
      default = "0.0.0.0";
      description = "Address the tunnel server listens on.";
    };

    port = mkOption {
      type = types.port;
      default = 18800;
      description = "TCP port of the tunnel server (WebSocket).";
    };

    publicEndpoints = mkOption {
      type = types.listOf (types.strMatching "wss?://[^[:space:]]+");
      default = [ ];
      example = [ "ws://203.0.113.10:18800" ];
      description = ''
        URLs other nodes dial to reach this one. Without one, a node listening on 0.0.0.0 is
        reachable only through connections it makes, and tokens it creates name no endpoint.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` (TCP) in the firewall.";
    };

    joinTokenFile = mkOption {
      # Not types.path: a path value would be copied into the world-readable Nix store.
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/osmoda-mesh-token";
      description = ''
        File with a join token (`osmoda-mesh token create`), outside the Nix store, readable by root
        (systemd hands a copy to the unit with LoadCredential). Read at start while this node has
        not joined; ignored afterwards, and the file may then be deleted.
      '';
    };

    bootstrap.meshName = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "prod";
      description = "Create a mesh of this name on first start (this node becomes its admin).";
    };

    services = mkOption {
      type = types.attrsOf (types.submodule serviceModule);
      default = { };
      example = lib.literalExpression ''{ db = { port = 5432; allowFrom = [ "tag:app" ]; }; }'';
      description = "Services this node provides to the mesh, by name (${dnsLabelRule}).";
    };

    tags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "app" ];
      description = "Tags this node asks for in its certificate (used by allowFrom `tag:` rules).";
    };

    dns = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run the mesh DNS server (answers `db` and `db.mesh`, forwards other names).";
      };
      listen = mkOption {
        type = types.str;
        default = "127.77.0.53:53";
        description = "host:port of the mesh DNS server.";
      };
      domain = mkOption {
        type = types.str;
        default = "mesh";
        description = "Domain of mesh names (`db.mesh`).";
      };
      upstreams = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        example = [ "192.0.2.53" ];
        description = ''
          Resolvers for names outside the mesh. null: the nameservers of /etc/resolv.conf other
          than the mesh DNS itself, read when the agent starts.
        '';
      };
      setSystemResolver = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Make this host resolve mesh names by bare name (`psql -h db`). With
          services.resolved: the domain becomes a search and routing domain of the resolved DNS
          server set, with the mesh DNS in it. Without: the mesh DNS goes first in
          networking.nameservers and the domain into networking.search. Off by default: it
          changes the host's resolver.
        '';
      };
    };

    vipRange = mkOption {
      type = types.str;
      default = "127.77.0.0/16";
      description = "Virtual IPs of mesh services, inside 127.0.0.0/8.";
    };

    forwardMode = mkOption {
      type = types.enum [ "bind" "nat" ];
      default = "nat";
      description = ''
        nat: the agent listens on ports of its own on 127.0.0.1 and DNATs VIP:port to them with
        nftables (CAP_NET_ADMIN), so it never clashes with a local server on 0.0.0.0:port. bind:
        listen on VIP:port itself (SPEC §4a).
      '';
    };

    logLevel = mkOption {
      type = types.enum [ "fatal" "error" "warn" "info" "debug" "trace" "silent" ];
      default = "info";
      description = "Log level (pino JSON on stdout, i.e. the journal).";
    };

    metricsListen = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "127.0.0.1:9877";
      description = "host:port for Prometheus /metrics and /healthz over plain HTTP; null: off.";
    };

    settings = mkOption {
      type = (pkgs.formats.json { }).type;
      default = { };
      example = { dns.upstreams = [ "192.0.2.53" ]; };
      description = "Merged (lib.recursiveUpdate) over the generated agent config JSON.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra arguments appended to `osmoda-mesh agent --config FILE`.";
    };

    configFile = mkOption {
      type = types.package;
      readOnly = true;
      internal = true;
      default = configFile;
      description = "The generated agent config file.";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      assertions = [
        {
          assertion = isDnsLabel cfg.nodeName;
          message = "${opt}.nodeName: expected ${dnsLabelRule}, got '${cfg.nodeName}' (it defaults to networking.hostName; set it explicitly)";
        }
        {
          assertion = lib.all isDnsLabel (lib.attrNames cfg.services);
          message = "${opt}.services: a service name must be ${dnsLabelRule}; bad: ${lib.concatMapStringsSep ", " (n: "'${n}'") (lib.filter (n: !isDnsLabel n) (lib.attrNames cfg.services))}";
        }
        {
          assertion = lib.all isDnsLabel cfg.tags;
          message = "${opt}.tags: each tag must be ${dnsLabelRule}; bad: ${lib.concatMapStringsSep ", " (t: "'${t}'") (lib.filter (t: !isDnsLabel t) cfg.tags)}";
        }
        {
          assertion = lib.all (s: s.allowFrom == null || lib.all isAccessRule s.allowFrom) (lib.attrValues cfg.services);
          message = "${opt}.services.<name>.allowFrom: entries are node names or 'tag:<tag>' (DNS labels); bad: ${lib.concatStringsSep ", " (lib.concatLists (lib.mapAttrsToList (n: s: map (r: "${n}: '${r}'") (lib.filter (r: !isAccessRule r) (if s.allowFrom == null then [ ] else s.allowFrom))) cfg.services))}";
        }
        {
          assertion = cfg.bootstrap.meshName == null || isDnsLabel cfg.bootstrap.meshName;
          message = "${opt}.bootstrap.meshName: expected ${dnsLabelRule}, got '${toString cfg.bootstrap.meshName}'";
        }
        {
          assertion = cfg.bootstrap.meshName == null || cfg.joinTokenFile == null;
          message = "${opt}: set bootstrap.meshName (create a mesh) or joinTokenFile (join one), not both";
        }
        {
          assertion = cfg.joinTokenFile == null || (lib.hasPrefix "/" cfg.joinTokenFile && !isInStore cfg.joinTokenFile);
          message = "${opt}.joinTokenFile: expected an absolute path outside the Nix store (the store is world-readable and the token is a secret), got '${toString cfg.joinTokenFile}'; use a secrets file such as /run/secrets/osmoda-mesh-token";
        }
        {
          assertion = zeroPorts == [ ];
          message = "${lib.concatStringsSep ", " zeroPorts}: expected a port 1..65535, got 0";
        }
        {
          assertion = !setResolver || (final.dns.enable && dnsMatch != null && lib.last dnsMatch == "53");
          message = "${opt}.dns.setSystemResolver needs dns.enable and dns.listen on an IPv4 address with port 53 (resolv.conf cannot name a port), got dns.enable = ${lib.boolToString final.dns.enable}, dns.listen = '${final.dns.listen}'";
        }
        {
          assertion = final.stateDir == stateDir && final.control == "${runtimeDir}/control.sock";
          message = "${opt}.settings: stateDir and control are fixed by the module (${stateDir}, ${runtimeDir}/control.sock: the unit's StateDirectory and RuntimeDirectory, the only writable places under ProtectSystem=strict)";
        }
      ];

      users.users.osmoda-mesh = {
        isSystemUser = true;
        group = "osmoda-mesh";
        description = "osmoda-mesh agent";
      };
      # Members of this group may use the CLI: the control socket is 0660, group osmoda-mesh.
      users.groups.osmoda-mesh = { };

      environment.systemPackages = [ cli ];

      networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];

      systemd.services.osmoda-mesh = {
        description = "osmoda-mesh agent";
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ];
        wants = [ "network-online.target" ];
        path = lib.optional isNat pkgs.nftables;

        serviceConfig = {
          Type = "exec";
          ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe cfg.package) "agent" "--config" configFile ] ++ cfg.extraArgs);
          User = "osmoda-mesh";
          Group = "osmoda-mesh";
          Restart = "always";
          # Slower than the default 100 ms, so a failing start never reaches the start limit.
          RestartSec = "5s";

          StateDirectory = "osmoda-mesh";
          StateDirectoryMode = "0700";
          # The control socket lives here; the agent chmods it to 0660 after listen, so members
          # of the group reach it through this 0750 directory despite UMask=0077.
          RuntimeDirectory = "osmoda-mesh";
          RuntimeDirectoryMode = "0750";

          AmbientCapabilities = capabilities;
          CapabilityBoundingSet = capabilities;
          NoNewPrivileges = true;

          ProtectSystem = "strict";
          ProtectHome = true;
          PrivateTmp = true;
          PrivateDevices = true;
          PrivateMounts = true;
          DevicePolicy = "closed";
          ProtectKernelTunables = true;
          ProtectKernelModules = true;
          ProtectKernelLogs = true;
          ProtectControlGroups = true;
          ProtectClock = true;
          ProtectHostname = true;
          ProtectProc = "invisible";
          ProcSubset = "pid";
          # AF_NETLINK: nft, and glibc's getaddrinfo (AI_ADDRCONFIG) when dialling a peer by name.
          RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          RemoveIPC = true;
          LockPersonality = true;
          SystemCallArchitectures = "native";
          # @pkey: V8 (Node 20) calls pkey_alloc/pkey_mprotect at start-up, outside @system-service.
          SystemCallFilter = [ "@system-service" "@pkey" "~@privileged" "~@resources" ];
          # A call outside the filter fails with EPERM instead of killing the agent.
          SystemCallErrorNumber = "EPERM";
          UMask = "0077";
          # V8's JIT needs writable+executable memory: MemoryDenyWriteExecute would kill Node.
          MemoryDenyWriteExecute = false;
          # A user namespace confines the capabilities to it: binding port 53 and installing
          # nftables rules in the host's network namespace would then fail.
          PrivateUsers = false;
          # A network daemon: no IPAddressDeny=, no PrivateNetwork=.
        };
      };
    }

    (lib.mkIf (cfg.joinTokenFile != null) {
      systemd.services.osmoda-mesh.serviceConfig = {
        LoadCredential = [ "join-token:${cfg.joinTokenFile}" ];
        # Used when the file is missing at start (systemd.exec(5)): a node that has joined no
        # longer needs it, so deleting the secret must not stop the unit from starting. A node
        # that has not joined reads an empty token and logs why it cannot join.
        SetCredential = [ "join-token:\\n" ];
      };
    })

    # The agent keeps dns.upstreams null here: it forwards other names to the nameservers of
    # /etc/resolv.conf other than itself.
    (lib.mkIf (setResolver && config.services.resolved.enable) {
      # `mesh` is both a search domain (a bare `db` is tried as `db.mesh`) and a routing domain;
      # `~mesh` says the second explicitly. networking.nameservers is resolved's DNS= list.
      services.resolved.domains = [ final.dns.domain "~${final.dns.domain}" ];
      networking.nameservers = lib.mkBefore [ dnsAddress ];
    })
    (lib.mkIf (setResolver && !config.services.resolved.enable) {
      networking.nameservers = lib.mkBefore [ dnsAddress ];
      networking.search = [ final.dns.domain ];
    })
  ]);
}
