/**
 * nix/module.nix evaluated by nixpkgs' module system against typed stubs of the NixOS options it
 * sets (../shared/nix-eval): the unit, users, firewall and resolver it produces, the agent config
 * it writes (fed back through the agent's own validateConfig), and the messages bad values get.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig, type AgentConfig } from '../../src/config/index.js';
import { EVAL_NIX, QUERY_NIX, REPO_ROOT, evalError, evalJson, evalModuleArgs, nixGate } from './helpers/nix.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface MeshEval {
  unit: {
    wantedBy: string[];
    after: string[];
    wants: string[];
    path: string[];
    environment: Record<string, string>;
    serviceConfig: Record<string, unknown>;
    unitText: string;
  } | null;
  configJson: string | null;
  scripts: (string | null)[];
  firewall: { allowedTCPPorts: number[]; allowedUDPPorts: number[] };
  resolver: { nameservers: string[]; search: string[]; resolved: { enable: boolean; domains: string[] } };
  users: Record<string, { isSystemUser: boolean; group: string }>;
  groups: string[];
}

/** Evaluates the module with this configuration.nix body, e.g. `services.osmoda-mesh.enable = true;`. */
function evalMesh(config: string): MeshEval {
  return evalJson<MeshEval>(EVAL_NIX, evalModuleArgs(`{ ${config} }`, { query: `import ${QUERY_NIX}` }));
}

/** Evaluated on first use: describe bodies run even when the suite is skipped. */
function lazyMesh(config: string): () => MeshEval {
  let result: MeshEval | undefined;
  return () => (result ??= evalMesh(config));
}

function unitOf(e: MeshEval): NonNullable<MeshEval['unit']> {
  expect(e.unit, 'systemd.services.osmoda-mesh').not.toBeNull();
  return e.unit!;
}

/** The generated JSON through the agent's own validator, as the agent reads it at start. */
function agentConfig(e: MeshEval): AgentConfig {
  expect(e.configJson).not.toBeNull();
  return validateConfig(JSON.parse(e.configJson!), 'fallback-host-name');
}

const ENABLE = 'services.osmoda-mesh.enable = true;';

const HARDENING = {
  NoNewPrivileges: true,
  ProtectSystem: 'strict',
  ProtectHome: true,
  PrivateTmp: true,
  PrivateDevices: true,
  PrivateMounts: true,
  DevicePolicy: 'closed',
  ProtectKernelTunables: true,
  ProtectKernelModules: true,
  ProtectKernelLogs: true,
  ProtectControlGroups: true,
  ProtectClock: true,
  ProtectHostname: true,
  ProtectProc: 'invisible',
  ProcSubset: 'pid',
  RestrictAddressFamilies: ['AF_UNIX', 'AF_INET', 'AF_INET6', 'AF_NETLINK'],
  RestrictNamespaces: true,
  RestrictRealtime: true,
  RestrictSUIDSGID: true,
  RemoveIPC: true,
  LockPersonality: true,
  SystemCallArchitectures: 'native',
  SystemCallFilter: ['@system-service', '@pkey', '~@privileged', '~@resources'],
  SystemCallErrorNumber: 'EPERM',
  UMask: '0077',
  // V8's JIT; capabilities in the host's network namespace
  MemoryDenyWriteExecute: false,
  PrivateUsers: false,
};

const DEFAULT_AGENT_CONFIG: AgentConfig = {
  nodeName: 'nixos',
  stateDir: '/var/lib/osmoda-mesh',
  listen: '0.0.0.0:18800',
  publicEndpoints: [],
  control: '/run/osmoda-mesh/control.sock',
  dns: { enable: true, listen: '127.77.0.53:53', upstreams: null, domain: 'mesh' },
  vipRange: '127.77.0.0/16',
  forwardMode: 'nat',
  logLevel: 'info',
  tags: [],
  services: {},
  joinTokenFile: null,
  bootstrap: { meshName: null },
  metricsListen: null,
  hostsFile: null,
};

describe.skipIf(!nixGate('nix/module.nix', 'eval'))('nix/module.nix', () => {
  it('adds nothing while disabled', () => {
    const e = evalMesh('');
    expect(e.unit).toBeNull();
    expect(e.configJson).toBeNull();
    expect(e.scripts).toEqual([]);
    expect(e.users).toEqual({});
  });

  describe('minimal: enable = true', () => {
    const e = lazyMesh(ENABLE);

    it('starts the agent with the generated config after the network is online', () => {
      const unit = unitOf(e());
      expect(unit.wantedBy).toEqual(['multi-user.target']);
      expect(unit.after).toContain('network-online.target');
      expect(unit.wants).toContain('network-online.target');
      expect(unit.serviceConfig['ExecStart']).toMatch(
        new RegExp(`^"/nix/store/[^"]+-osmoda-mesh-${VERSION}/bin/osmoda-mesh" "agent" "--config" "/nix/store/[^"]+-osmoda-mesh\\.json"$`),
      );
      expect(unit.serviceConfig).toMatchObject({ Type: 'exec', Restart: 'always', RestartSec: '5s' });
      expect(unit.unitText).toContain('After=network-online.target\n');
      expect(unit.unitText).toContain('Wants=network-online.target\n');
    });

    it('runs as the system user osmoda-mesh with a 0700 state dir and a 0750 runtime dir', () => {
      expect(unitOf(e()).serviceConfig).toMatchObject({
        User: 'osmoda-mesh',
        Group: 'osmoda-mesh',
        StateDirectory: 'osmoda-mesh',
        StateDirectoryMode: '0700',
        RuntimeDirectory: 'osmoda-mesh',
        RuntimeDirectoryMode: '0750',
      });
      expect(e().users['osmoda-mesh']).toEqual({ isSystemUser: true, group: 'osmoda-mesh' });
      expect(e().groups).toContain('osmoda-mesh');
    });

    it('is hardened', () => {
      expect(unitOf(e()).serviceConfig).toMatchObject(HARDENING);
      // one line per filter entry: `~` only works at the start of a SystemCallFilter= value
      expect(unitOf(e()).unitText).toContain('SystemCallFilter=@system-service\nSystemCallFilter=@pkey\nSystemCallFilter=~@privileged\n');
    });

    it('nat mode (the default): CAP_NET_ADMIN and nft on PATH', () => {
      const unit = unitOf(e());
      expect(unit.serviceConfig['AmbientCapabilities']).toEqual(['CAP_NET_BIND_SERVICE', 'CAP_NET_ADMIN']);
      expect(unit.serviceConfig['CapabilityBoundingSet']).toEqual(['CAP_NET_BIND_SERVICE', 'CAP_NET_ADMIN']);
      expect(unit.path).toEqual([expect.stringMatching(/-nftables$/)]);
    });

    it('passes no token and leaves the firewall and the resolver alone', () => {
      const unit = unitOf(e());
      expect(unit.serviceConfig).not.toHaveProperty('LoadCredential');
      expect(unit.serviceConfig).not.toHaveProperty('SetCredential');
      expect(e().firewall).toEqual({ allowedTCPPorts: [], allowedUDPPorts: [] });
      expect(e().resolver).toEqual({ nameservers: [], search: [], resolved: { enable: false, domains: [] } });
    });

    it('installs the CLI pointed at the unit’s control socket (unless the caller says otherwise)', () => {
      expect(e().scripts).toHaveLength(1);
      const script = e().scripts[0]!;
      // lib.escapeShellArg quotes only where needed (newer lib) or always (older)
      expect(script).toMatch(/\nif \[ -z "\$\{OSMODA_MESH_CONTROL-\}" \]; then export OSMODA_MESH_CONTROL='?\/run\/osmoda-mesh\/control\.sock'?; fi\n/);
      expect(script).toMatch(new RegExp(`\nexec '?/nix/store/[^' ]+-osmoda-mesh-${VERSION}/bin/osmoda-mesh'? "\\$@"\n$`));
    });

    it('writes a config the agent accepts, with the defaults of SPEC §4a under NixOS', () => {
      expect(agentConfig(e())).toEqual(DEFAULT_AGENT_CONFIG);
    });
  });

  describe('joinTokenFile, services with allowFrom, bind mode', () => {
    const e = lazyMesh(`${ENABLE}
      services.osmoda-mesh = {
        joinTokenFile = "/run/secrets/mesh-token";
        forwardMode = "bind";
        nodeName = "web1";
        tags = [ "app" ];
        publicEndpoints = [ "ws://203.0.113.11:18800" ];
        metricsListen = "127.0.0.1:9877";
        logLevel = "debug";
        services.db = { port = 5432; allowFrom = [ "web2" "tag:app" ]; };
        services.api = { port = 80; targetHost = "10.0.0.5"; targetPort = 8080; };
      };`);

    it('hands the token file to the unit as a credential, with a fallback when it is gone', () => {
      const unit = unitOf(e());
      expect(unit.serviceConfig['LoadCredential']).toEqual(['join-token:/run/secrets/mesh-token']);
      expect(unit.unitText).toContain('LoadCredential=join-token:/run/secrets/mesh-token\n');
      expect(unit.unitText).toContain('SetCredential=join-token:\\n\n');
    });

    it('bind mode: CAP_NET_BIND_SERVICE only, no nft', () => {
      const unit = unitOf(e());
      expect(unit.serviceConfig['AmbientCapabilities']).toEqual(['CAP_NET_BIND_SERVICE']);
      expect(unit.serviceConfig['CapabilityBoundingSet']).toEqual(['CAP_NET_BIND_SERVICE']);
      expect(unit.path).toEqual([]);
    });

    it('writes a config the agent accepts: the credential path, services and access rules', () => {
      expect(agentConfig(e())).toEqual({
        ...DEFAULT_AGENT_CONFIG,
        nodeName: 'web1',
        forwardMode: 'bind',
        tags: ['app'],
        publicEndpoints: ['ws://203.0.113.11:18800'],
        metricsListen: '127.0.0.1:9877',
        logLevel: 'debug',
        joinTokenFile: '/run/credentials/osmoda-mesh.service/join-token',
        services: {
          db: { port: 5432, targetHost: '127.0.0.1', targetPort: 5432, allowFrom: ['web2', 'tag:app'] },
          api: { port: 80, targetHost: '10.0.0.5', targetPort: 8080, allowFrom: null },
        },
      });
    });
  });

  describe('bootstrap, openFirewall, custom port, settings, extraArgs', () => {
    const e = lazyMesh(`${ENABLE}
      services.osmoda-mesh = {
        bootstrap.meshName = "prod";
        openFirewall = true;
        port = 19000;
        listenAddress = "::";
        settings = { dns.upstreams = [ "192.0.2.53" ]; vipRange = "127.78.0.0/16"; };
        extraArgs = [ "--public-endpoint" "ws://%H:19000" ];
      };`);

    it('opens only the tunnel port (TCP)', () => {
      expect(e().firewall).toEqual({ allowedTCPPorts: [19000], allowedUDPPorts: [] });
    });

    it('appends extraArgs escaped for systemd (a % stays literal)', () => {
      expect(unitOf(e()).serviceConfig['ExecStart']).toMatch(/"--config" "[^"]+-osmoda-mesh\.json" "--public-endpoint" "ws:\/\/%%H:19000"$/);
    });

    it('writes a config the agent accepts: settings merged into the generated values', () => {
      expect(agentConfig(e())).toEqual({
        ...DEFAULT_AGENT_CONFIG,
        listen: '[::]:19000',
        bootstrap: { meshName: 'prod' },
        vipRange: '127.78.0.0/16',
        dns: { ...DEFAULT_AGENT_CONFIG.dns, upstreams: ['192.0.2.53'] },
      });
    });
  });

  describe('dns.setSystemResolver', () => {
    const base = `${ENABLE} services.osmoda-mesh.dns.setSystemResolver = true; networking.nameservers = [ "192.0.2.1" ];`;

    it('with systemd-resolved: mesh is a search and routing domain, served by the mesh DNS', () => {
      const e = evalMesh(`${base} services.resolved.enable = true;`);
      expect(e.resolver).toEqual({
        nameservers: ['127.77.0.53', '192.0.2.1'],
        search: [],
        resolved: { enable: true, domains: ['mesh', '~mesh'] },
      });
      expect(agentConfig(e).dns.upstreams).toBeNull();
    });

    it('without it: the mesh DNS first in resolv.conf, search mesh', () => {
      const e = evalMesh(base);
      expect(e.resolver).toEqual({
        nameservers: ['127.77.0.53', '192.0.2.1'],
        search: ['mesh'],
        resolved: { enable: false, domains: [] },
      });
      // forwards other names to the nameservers after itself in /etc/resolv.conf
      expect(agentConfig(e).dns.upstreams).toBeNull();
    });

    it('follows dns.listen and dns.domain', () => {
      const e = evalMesh(`${base} services.osmoda-mesh.dns = { listen = "127.77.0.54:53"; domain = "internal"; };`);
      expect(e.resolver.nameservers[0]).toBe('127.77.0.54');
      expect(e.resolver.search).toEqual(['internal']);
      expect(agentConfig(e).dns).toMatchObject({ listen: '127.77.0.54:53', domain: 'internal' });
    });
  });

  describe('bad values fail evaluation with a message naming the option', () => {
    const fails = (config: string): string => evalError(EVAL_NIX, evalModuleArgs(`{ ${ENABLE} ${config} }`));

    it('port "abc"', () => {
      expect(fails('services.osmoda-mesh.port = "abc";')).toMatch(
        /A definition for option `services\.osmoda-mesh\.port' is not of type `16 bit unsigned integer/,
      );
    });

    it('port 0', () => {
      expect(fails('services.osmoda-mesh.services.db.port = 0;')).toMatch(
        /Failed assertions:[\s\S]*services\.osmoda-mesh\.services\.db\.port, services\.osmoda-mesh\.services\.db\.targetPort: expected a port 1\.\.65535, got 0/,
      );
    });

    it('a service name with a space', () => {
      expect(fails('services.osmoda-mesh.services."my db".port = 5432;')).toMatch(
        /Failed assertions:\n\s*- services\.osmoda-mesh\.services: a service name must be a DNS label: 1-63 of a-z, 0-9 and -, not starting or ending with -; bad: 'my db'/,
      );
    });

    it('joinTokenFile inside the Nix store', () => {
      expect(fails('services.osmoda-mesh.joinTokenFile = "/nix/store/0000-mesh-token";')).toMatch(
        /services\.osmoda-mesh\.joinTokenFile: expected an absolute path outside the Nix store \(the store is world-readable and the token is a secret\), got '\/nix\/store\/0000-mesh-token'/,
      );
    });

    it('joinTokenFile as a Nix path (it would be copied into the store)', () => {
      expect(fails('services.osmoda-mesh.joinTokenFile = ./mesh-token;')).toMatch(
        /A definition for option `services\.osmoda-mesh\.joinTokenFile' is not of type `null or string'/,
      );
    });

    it('joinTokenFile relative', () => {
      expect(fails('services.osmoda-mesh.joinTokenFile = "secrets/mesh-token";')).toMatch(
        /joinTokenFile: expected an absolute path outside the Nix store .*got 'secrets\/mesh-token'/,
      );
    });

    it('a host name that is no node name', () => {
      expect(fails('networking.hostName = "Web_1";')).toMatch(
        /services\.osmoda-mesh\.nodeName: expected a DNS label: .*, got 'Web_1' \(it defaults to networking\.hostName; set it explicitly\)/,
      );
    });

    it('an allowFrom entry that is neither a node name nor tag:<tag>', () => {
      expect(fails('services.osmoda-mesh.services.db = { port = 5432; allowFrom = [ "web1" "tag:" ]; };')).toMatch(
        /services\.osmoda-mesh\.services\.<name>\.allowFrom: entries are node names or 'tag:<tag>' \(DNS labels\); bad: db: 'tag:'/,
      );
    });

    it('bootstrap and joinTokenFile together', () => {
      expect(fails('services.osmoda-mesh = { bootstrap.meshName = "prod"; joinTokenFile = "/run/secrets/t"; };')).toMatch(
        /services\.osmoda-mesh: set bootstrap\.meshName \(create a mesh\) or joinTokenFile \(join one\), not both/,
      );
    });

    it('setSystemResolver with the mesh DNS off port 53', () => {
      expect(fails('services.osmoda-mesh.dns = { setSystemResolver = true; listen = "127.77.0.53:5353"; };')).toMatch(
        /dns\.setSystemResolver needs dns\.enable and dns\.listen on an IPv4 address with port 53 .*got dns\.enable = true, dns\.listen = '127\.77\.0\.53:5353'/,
      );
    });

    it('settings moving the state dir', () => {
      expect(fails('services.osmoda-mesh.settings.stateDir = "/srv/mesh";')).toMatch(/services\.osmoda-mesh\.settings: stateDir and control are fixed by the module/);
    });

    it('an unknown forwardMode', () => {
      expect(fails('services.osmoda-mesh.forwardMode = "tun";')).toMatch(/services\.osmoda-mesh\.forwardMode' is not of type `one of "bind", "nat"'/);
    });
  });

  it('every option is in the README NixOS section', () => {
    const names = evalJson<string[]>(
      EVAL_NIX,
      evalModuleArgs('{ }', {
        query: `{ options, lib, ... }: map (o: lib.removePrefix "services.osmoda-mesh." o.name)
          (lib.filter (o: o.visible && !o.internal) (lib.optionAttrSetToDocList options.services.osmoda-mesh))`,
      }),
    );
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const section = /\n## NixOS\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
    expect(names.length).toBeGreaterThan(20);
    expect(names.filter((name) => !section.includes(`\`${name}\``))).toEqual([]);
  });
});
