/**
 * What `compose import` reads from a Compose file: only the parts that bear on the mesh (names,
 * ports, networks, references between services), each with the line it came from so that every
 * warning can point at the file. Keys that are valid Compose but not the mesh's business (image
 * build, volumes, command, healthcheck, deploy, …) are checked for spelling and then dropped.
 */

export interface Located<T> {
  value: T;
  /** 1-based line in the Compose file. */
  line: number;
}

/** One entry of `ports` or `expose`, a range already expanded. */
export interface PortSpec {
  line: number;
  source: 'ports' | 'expose';
  /** The entry as written, for messages (long syntax is shown as target[/protocol]). */
  text: string;
  /** Container ports; empty when the container side is an interpolation with no default. */
  targets: number[];
  /** tcp, udp or sctp (lower case). */
  protocol: string;
  /** Host side as written ("8080", "8080-8082", "" for a random host port); null: not published. */
  published: string | null;
  hostIp: string | null;
  /** `${VAR}` names in the container side that have no default (the environment is not read). */
  unresolved: string[];
}

export interface ServiceNetworkRef {
  name: string;
  line: number;
  aliases: Located<string>[];
}

export interface EnvVar {
  key: string;
  /** null: `KEY` alone (taken from the environment by Compose, so unknown here). */
  value: string | null;
  line: number;
}

export interface EnvFileRef {
  path: string;
  line: number;
  isRequired: boolean;
}

export interface ComposeService {
  name: string;
  line: number;
  image: Located<string> | null;
  ports: PortSpec[];
  /** null: no `networks` key, so the service is on `default` (unless network_mode says otherwise). */
  networks: ServiceNetworkRef[] | null;
  networkMode: Located<string> | null;
  links: Located<string>[];
  externalLinks: Located<string>[];
  dependsOn: Located<string>[];
  environment: EnvVar[];
  envFiles: EnvFileRef[];
  profiles: string[];
  containerName: Located<string> | null;
  /** Keys that do not translate and only get a warning: extends, secrets, configs. */
  untranslated: Located<string>[];
}

export interface ComposeNetwork {
  name: string;
  line: number;
  isExternal: boolean;
}

export interface ComposeIssue {
  line: number;
  message: string;
}

export interface ComposeModel {
  /** The file name as given, used as the prefix of every message. */
  file: string;
  /** In file order. */
  services: ComposeService[];
  /** The top-level `networks`, plus `default` (line 0 when implicit). */
  networks: Map<string, ComposeNetwork>;
  /** Top-level keys that do not translate: include, secrets, configs. */
  untranslated: Located<string>[];
  /** Whether any value used `${…}` or `$VAR` interpolation. */
  usesInterpolation: boolean;
  /** Things found while reading that are warnings, not errors (e.g. a port range too large). */
  issues: ComposeIssue[];
}
