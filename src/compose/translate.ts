import { isDnsLabel } from '../config/index.js';
import { ErrorCodes, MeshError } from '../errors.js';
import type { ComposeModel, ComposeService, EnvVar } from './model.js';
import { parseEnvFile } from './parse.js';
import { findReferences } from './references.js';
import { wellKnownImagePort } from './spec.js';
import { compareText } from '../util/compare.js';

/**
 * ComposeModel + placements → what each node's agent must declare (nodeName, tags, services with
 * allowFrom), plus a summary and a warning for everything that does not translate. Pure: env_file
 * contents come through `readEnvFile`.
 *
 * The translation:
 * - a Compose service `db` that other containers reach at `db:5432` becomes mesh service `db` on
 *   port 5432 (the container port) with target 127.0.0.1:5432: the service is assumed to run
 *   natively on its node, listening on its container port;
 * - network aliases become extra mesh names with the same port and target;
 * - Compose networks are the access boundary: a node gets the tag `net-<network>` for every network
 *   of the services placed on it, and every exposed service allows `tag:net-<n>` for each of its
 *   networks, so two services that share no network cannot reach each other.
 */

export interface Placement {
  service: string;
  node: string;
}

export interface PortOverride {
  service: string;
  port: number;
}

export interface TranslateOptions {
  placements: readonly Placement[];
  /** `--port svc=PORT`: replaces the ports found in the file for that service. */
  ports?: readonly PortOverride[];
  /** `--profile NAME`: services with profiles are imported only when one of theirs is selected. */
  profiles?: readonly string[];
  /** Reads an env_file (path as written in the Compose file); null when it does not exist. */
  readEnvFile?: (path: string) => string | null;
}

export interface MeshServicePlan {
  name: string;
  port: number;
  targetHost: string;
  targetPort: number;
  allowFrom: string[];
  /** The Compose service it came from. */
  composeService: string;
}

export interface NodePlan {
  node: string;
  tags: string[];
  services: MeshServicePlan[];
  /** The Compose services placed on this node (some may expose nothing). */
  composeServices: string[];
}

export interface ServiceSummary {
  service: string;
  /** Empty: not placed. */
  nodes: string[];
  /** Mesh names: the service name first, then aliases. */
  names: string[];
  ports: number[];
  allowFrom: string[];
  notes: string[];
}

export interface ServiceReference {
  from: string;
  /** As written: name or name:port. */
  to: string;
  /** Where it was found, e.g. "environment DATABASE_URL" or "env_file app.env DATABASE_URL". */
  origin: string;
  /** Why it will not work through the mesh; null when it will. */
  problem: string | null;
}

export interface ImportPlan {
  file: string;
  /** Sorted by node name. */
  nodes: NodePlan[];
  /** In file order, active services only. */
  services: ServiceSummary[];
  references: ServiceReference[];
  notes: string[];
  warnings: string[];
}

export const TARGET_HOST = '127.0.0.1';

/** A DNS label from any name: lower case, other characters → '-', trimmed, at most 63. */
export function toDnsLabel(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
}

/** The node tag for a Compose network. */
export function networkTag(network: string): string {
  return toDnsLabel(`net-${network}`);
}

interface ServiceState {
  service: ComposeService;
  /** Networks that translate (not external), by name. */
  meshNetworks: string[];
  isTranslated: boolean;
  /** Mesh name → networks on which Compose resolves it (the service name: all its networks). */
  names: Map<string, string[]>;
  port: number | null;
  nodes: string[];
  summary: ServiceSummary;
}

export function translateCompose(model: ComposeModel, options: TranslateOptions): ImportPlan {
  const { file } = model;
  const warnings: string[] = [];
  const notes: string[] = [];
  const warn = (line: number | null, message: string): void => {
    warnings.push(line === null || line < 1 ? message : `${file}:${line}: ${message}`);
  };
  const byName = new Map(model.services.map((s) => [s.name, s]));
  const serviceList = model.services.map((s) => s.name).join(', ');

  // ---- arguments against the file ----
  const placements = new Map<string, string[]>();
  for (const { service, node } of options.placements) {
    if (!byName.has(service)) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--place ${service}=${node}: no service '${service}' in ${file} (services: ${serviceList})`);
    if (!isDnsLabel(node)) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--place ${service}=${node}: the node name must be a DNS label (1-63 of a-z, 0-9 and -), got '${node}'`);
    const nodes = placements.get(service) ?? [];
    if (!nodes.includes(node)) nodes.push(node);
    placements.set(service, nodes);
  }
  const portOverrides = new Map<string, number[]>();
  for (const { service, port } of options.ports ?? []) {
    if (!byName.has(service)) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--port ${service}=${port}: no service '${service}' in ${file} (services: ${serviceList})`);
    const ports = portOverrides.get(service) ?? [];
    if (!ports.includes(port)) ports.push(port);
    portOverrides.set(service, ports);
  }

  // ---- profiles ----
  const selected = new Set(options.profiles ?? []);
  const isActive = (s: ComposeService): boolean => s.profiles.length === 0 || s.profiles.some((p) => selected.has(p));
  const leftOut = model.services.filter((s) => !isActive(s));
  if (leftOut.length > 0) {
    notes.push(`left out by profile: ${leftOut.map((s) => `${s.name} (${s.profiles.join(', ')})`).join(', ')}; include them with --profile NAME`);
  }
  for (const s of leftOut) {
    if (placements.has(s.name)) warn(s.line, `service '${s.name}' is placed but only in profile(s) ${s.profiles.join(', ')}, none selected: not imported (add --profile ${s.profiles[0]})`);
  }
  for (const p of selected) {
    if (!model.services.some((s) => s.profiles.includes(p))) warn(null, `--profile ${p}: no service in ${file} has this profile`);
  }

  // ---- top level ----
  for (const issue of model.issues) warn(issue.line, issue.message);
  for (const key of model.untranslated) {
    if (key.value === 'include') warn(key.line, 'include: the included Compose files are not read; import each of them on its own');
    else warn(key.line, `${key.value}: not translated (the mesh carries connections, not files)`);
  }
  const externalNetworks = new Set([...model.networks.values()].filter((n) => n.isExternal).map((n) => n.name));
  const usedNetworks = new Set<string>();

  // ---- each active service ----
  const states: ServiceState[] = [];
  for (const service of model.services.filter(isActive)) {
    const summary: ServiceSummary = { service: service.name, nodes: [], names: [], ports: [], allowFrom: [], notes: [] };
    const state: ServiceState = { service, meshNetworks: [], isTranslated: true, names: new Map(), port: null, nodes: placements.get(service.name) ?? [], summary };
    states.push(state);
    summary.nodes = [...state.nodes];
    const what = `service '${service.name}'`;

    const mode = service.networkMode;
    if (mode !== null) {
      state.isTranslated = false;
      const v = mode.value;
      if (v === 'host') warn(mode.line, `${what} network_mode: host: not translated (it uses the host's network and ports directly; expose it on its node with \`osmoda-mesh expose NAME PORT\`)`);
      else if (v.startsWith('service:') || v.startsWith('container:')) warn(mode.line, `${what} network_mode: ${v}: not translated (it shares another container's network, so its ports belong to that one; expose them there)`);
      else if (v === 'none') warn(mode.line, `${what} network_mode: none: not translated (no network: nothing can reach it)`);
      else warn(mode.line, `${what} network_mode: ${v}: not translated (only Compose networks are; services reach each other by name only on those)`);
      summary.notes.push(`network_mode ${v}: not translated`);
    } else {
      for (const ref of service.networks ?? [{ name: 'default', line: service.line, aliases: [] }]) {
        usedNetworks.add(ref.name);
        if (!externalNetworks.has(ref.name)) state.meshNetworks.push(ref.name);
      }
    }

    // names: the service name on all its networks, each alias on the networks that declare it
    if (state.isTranslated) {
      const primary = meshName(service.name, `${what}`, service.line, warn);
      if (primary !== null) state.names.set(primary, [...state.meshNetworks]);
      for (const ref of service.networks ?? []) {
        if (externalNetworks.has(ref.name)) continue;
        for (const alias of ref.aliases) {
          const name = meshName(alias.value, `${what} alias '${alias.value}' on network '${ref.name}'`, alias.line, warn);
          if (name === null) continue;
          const nets = state.names.get(name) ?? [];
          if (!nets.includes(ref.name)) nets.push(ref.name);
          state.names.set(name, nets);
        }
      }
      summary.names = [...state.names.keys()];
    }

    // ports: the container side of `ports`, and `expose`
    const found: number[] = [];
    const published: string[] = [];
    for (const spec of service.ports) {
      const entry = `${what} ${spec.source} '${spec.text}'`;
      if (spec.unresolved.length > 0) {
        warn(spec.line, `${entry}: the container port is \${${spec.unresolved[0]}} with no default (the environment is not read; write \${${spec.unresolved[0]}:-PORT} or pass --port ${service.name}=PORT): not translated`);
        continue;
      }
      if (spec.protocol !== 'tcp') {
        warn(spec.line, `${entry}: ${spec.protocol.toUpperCase()} is not carried by the mesh (TCP only): not translated`);
        continue;
      }
      for (const p of spec.targets) if (!found.includes(p)) found.push(p);
      if (spec.published !== null) {
        const host = `${spec.hostIp === null ? '' : `${spec.hostIp}:`}${spec.published === '' ? '(random)' : spec.published}`;
        published.push(`${host}→${portRanges(spec.targets)}`);
      }
    }
    if (published.length > 0) {
      summary.notes.push(`publishes ${published.join(', ')} on the host: not mesh business, open ${published.length === 1 ? 'it' : 'them'} in the host's firewall yourself`);
    }
    let ports = found;
    const override = portOverrides.get(service.name);
    if (override !== undefined) {
      ports = override;
      summary.notes.push(found.length === 0 || sameList(found, override) ? 'port from --port' : `port from --port (the file has ${found.join(', ')})`);
    } else if (found.length === 0 && service.image !== null) {
      const imagePort = wellKnownImagePort(service.image.value);
      if (imagePort !== undefined) {
        ports = [imagePort];
        summary.notes.push(`port ${imagePort} from the image ${service.image.value} (its EXPOSE): check it`);
      }
    }
    if (state.isTranslated) {
      if (ports.length === 0) {
        const image = service.image === null ? '' : ` and the port of its image '${service.image.value}' is not known`;
        warn(service.line, `${what} has no port (ports/expose)${image}: not exposed in the mesh; pass --port ${service.name}=PORT if other services connect to it`);
        summary.notes.push('no port: not exposed');
      } else {
        state.port = ports[0]!;
        summary.ports = [state.port];
        summary.allowFrom = [...new Set(state.meshNetworks.map((n) => `tag:${networkTag(n)}`))].sort();
        if (ports.length > 1) {
          const rest = portRanges(ports.slice(1));
          warn(service.line, `${what} has ports ${portRanges(ports)}: the agent config holds one port per service name, so only ${state.port} is translated (choose it with --port ${service.name}=PORT); expose ${rest} on its node with \`osmoda-mesh expose ${[...state.names.keys()][0] ?? service.name} PORT\``);
        }
        if (state.meshNetworks.length === 0) {
          warn(service.line, `${what} is only on external networks: its allowFrom is empty, so no node may reach it (add node names or tag:<tag> entries by hand)`);
        }
      }
    }

    // things that do not translate
    if (service.containerName !== null && service.containerName.value !== service.name) {
      warn(service.containerName.line, `${what} container_name '${service.containerName.value}' is not a mesh name: services that call it '${service.containerName.value}' must use '${service.name}' (or add it as a network alias)`);
    }
    for (const link of service.links) {
      const [target, alias] = link.value.split(':');
      warn(link.line, `${what} links '${link.value}': not translated (legacy links; the mesh reaches '${target}' by its service name${alias !== undefined && alias !== target ? `, not by the link alias '${alias}': make that a network alias` : ''})`);
    }
    for (const link of service.externalLinks) {
      warn(link.line, `${what} external_links '${link.value}': not translated (that container is outside this Compose file)`);
    }
    for (const key of service.untranslated) {
      if (key.value === 'extends') warn(key.line, `${what} extends: not followed, so what it inherits (ports, networks, environment) is not seen; copy those keys into the service`);
      else warn(key.line, `${what} ${key.value}: not translated (the mesh carries connections, not files)`);
    }
    if (state.nodes.length === 0) {
      warn(service.line, `${what} has no placement (--place ${service.name}=NODE): not in the output`);
      summary.notes.push('not placed: not in the output');
    }
  }

  for (const name of externalNetworks) {
    if (!usedNetworks.has(name)) continue;
    const users = states.filter((s) => s.service.networks?.some((r) => r.name === name)).map((s) => s.service.name);
    warn(model.networks.get(name)!.line, `network '${name}' is external (shared with containers outside this file): not translated, so it gives no tag and no allowFrom entry (used by ${users.join(', ')})`);
  }

  // ---- depends_on ----
  const stateOf = new Map(states.map((s) => [s.service.name, s]));
  let crossesNodes = false;
  for (const s of states) {
    for (const dep of s.service.dependsOn) {
      const target = stateOf.get(dep.value);
      if (target === undefined) {
        warn(dep.line, `service '${s.service.name}' depends_on '${dep.value}', which is left out by its profile (add --profile ${byName.get(dep.value)?.profiles[0] ?? 'NAME'})`);
      } else if (target.nodes.length === 0) {
        if (s.nodes.length > 0) warn(dep.line, `service '${s.service.name}' depends_on '${dep.value}', which has no placement (--place ${dep.value}=NODE)`);
      } else if (s.nodes.some((n) => !target.nodes.includes(n))) {
        crossesNodes = true;
      }
    }
  }

  // ---- node plans ----
  const nodePlans = new Map<string, NodePlan>();
  const tagSources = new Map<string, Set<string>>();
  for (const s of states) {
    for (const node of s.nodes) {
      let plan = nodePlans.get(node);
      if (plan === undefined) nodePlans.set(node, (plan = { node, tags: [], services: [], composeServices: [] }));
      plan.composeServices.push(s.service.name);
      for (const net of s.meshNetworks) {
        const tag = networkTag(net);
        if (!plan.tags.includes(tag)) plan.tags.push(tag);
        const sources = tagSources.get(tag) ?? new Set<string>();
        sources.add(net);
        tagSources.set(tag, sources);
      }
      if (!s.isTranslated || s.port === null) continue;
      for (const [name, nets] of s.names) {
        const clash = plan.services.find((e) => e.name === name);
        if (clash !== undefined) {
          warn(s.service.line, `node ${node}: mesh name '${name}' is given by both '${clash.composeService}' and '${s.service.name}': kept the first (${clash.composeService}); rename an alias`);
          continue;
        }
        const allowFrom = [...new Set(nets.map((n) => `tag:${networkTag(n)}`))].sort();
        plan.services.push({ name, port: s.port, targetHost: TARGET_HOST, targetPort: s.port, allowFrom, composeService: s.service.name });
      }
    }
  }
  for (const [tag, nets] of tagSources) {
    if (nets.size > 1) warn(null, `networks ${[...nets].join(', ')} all become the tag ${tag}: they merge into one access boundary; rename one`);
  }
  const plans = [...nodePlans.values()].sort((a, b) => compareText(a.node, b.node));
  for (const plan of plans) {
    plan.tags.sort();
    plan.services.sort((a, b) => compareText(a.name, b.name));
    // Natively run services on one host cannot share a port, unlike containers.
    const byPort = new Map<number, Set<string>>();
    for (const e of plan.services) byPort.set(e.targetPort, (byPort.get(e.targetPort) ?? new Set()).add(e.composeService));
    for (const [port, services] of byPort) {
      if (services.size > 1) warn(null, `node ${plan.node}: ${[...services].join(' and ')} both listen on port ${port} (their container port); on one host they clash: run one on another port and set its targetPort`);
    }
  }
  // One mesh name from several Compose services on different nodes: the mesh spreads connections over them.
  const providers = new Map<string, Set<string>>();
  for (const plan of plans) for (const e of plan.services) providers.set(e.name, (providers.get(e.name) ?? new Set()).add(e.composeService));
  for (const [name, services] of providers) {
    if (services.size > 1) warn(null, `mesh name '${name}' is given by ${[...services].join(' and ')} on different nodes: the mesh spreads connections over all of them; rename an alias unless they are replicas`);
  }

  // ---- references in environment and env_file ----
  const references = findServiceReferences(model, states, options, warn, notes);

  // ---- notes ----
  if (plans.some((p) => p.services.length > 0)) {
    notes.push(`every mesh service dials ${TARGET_HOST}:<container port> on its node: the service is assumed to run there natively, listening on its container port (change targetPort if it listens elsewhere)`);
  }
  if (plans.length > 0) {
    notes.push('access: each Compose network becomes a node tag net-<network> and an allowFrom entry tag:net-<network>; access is per node, so services placed on the same node share its identity and reach whatever any of them may reach');
    notes.push('tags are fixed in a node\'s certificate when it joins: a node that joined before it had these tags must join again (with a new token) for the tag:net-* rules to admit it');
  }
  if (crossesNodes) notes.push('depends_on orders start-up on one host only: across nodes a service may start before what it depends on is reachable, so it must retry');
  if (model.usesInterpolation) notes.push('interpolation: ${VAR:-default} took its default; the environment and .env files are not read, so ${VAR} without a default stays unresolved');

  return { file, nodes: plans, services: states.map((s) => s.summary), references, notes, warnings: byLine(warnings, file) };
}

/** Warnings that point into the file in line order, then the others in the order found. */
function byLine(warnings: string[], file: string): string[] {
  const prefix = `${file}:`;
  const lineOf = (w: string): number => (w.startsWith(prefix) ? Number(/^(\d+):/.exec(w.slice(prefix.length))?.[1] ?? Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER);
  return warnings.map((w, i) => ({ w, i, line: lineOf(w) })).sort((a, b) => a.line - b.line || a.i - b.i).map((x) => x.w);
}

function meshName(name: string, what: string, line: number, warn: (line: number | null, message: string) => void): string | null {
  const label = toDnsLabel(name);
  if (label === '') {
    warn(line, `${what}: '${name}' has no letters or digits to make a mesh name from: not translated`);
    return null;
  }
  if (label !== name.toLowerCase()) {
    warn(line, `${what}: '${name}' is not a DNS label, so the mesh calls it '${label}': clients that use '${name}' must use '${label}'`);
  }
  return label;
}

/** "80, 443, 3000-3002" (the ports in their order, consecutive runs joined). */
function portRanges(ports: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ports.length; ) {
    let j = i;
    while (j + 1 < ports.length && ports[j + 1] === ports[j]! + 1) j++;
    parts.push(j > i + 1 ? `${ports[i]}-${ports[j]}` : ports.slice(i, j + 1).join(', '));
    i = j + 1;
  }
  return parts.join(', ');
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

interface NameTarget {
  service: string;
  kind: 'service' | 'alias' | 'container_name';
  /** Compose networks on which the name resolves. */
  networks: string[];
}

function findServiceReferences(
  model: ComposeModel,
  states: ServiceState[],
  options: TranslateOptions,
  warn: (line: number | null, message: string) => void,
  notes: string[],
): ServiceReference[] {
  // Every name another container could use, including those of inactive services (to say why not).
  const index = new Map<string, NameTarget>();
  for (const s of model.services) {
    const nets = s.networkMode === null ? (s.networks ?? [{ name: 'default', aliases: [] }]).map((r) => r.name) : [];
    if (!index.has(s.name.toLowerCase())) index.set(s.name.toLowerCase(), { service: s.name, kind: 'service', networks: nets });
  }
  for (const s of model.services) {
    for (const ref of s.networks ?? []) {
      for (const alias of ref.aliases) {
        const key = alias.value.toLowerCase();
        const existing = index.get(key);
        if (existing === undefined) index.set(key, { service: s.name, kind: 'alias', networks: [ref.name] });
        else if (existing.service === s.name && existing.kind === 'alias' && !existing.networks.includes(ref.name)) existing.networks.push(ref.name);
      }
    }
    if (s.containerName !== null && !index.has(s.containerName.value.toLowerCase())) {
      index.set(s.containerName.value.toLowerCase(), { service: s.name, kind: 'container_name', networks: [] });
    }
  }
  const known = new Set(index.keys());
  const stateOf = new Map(states.map((s) => [s.service.name, s]));
  const references: ServiceReference[] = [];
  const seen = new Set<string>();

  for (const s of states) {
    const sources: { vars: EnvVar[]; origin: string; line: (v: EnvVar) => number | null }[] = [
      { vars: s.service.environment, origin: 'environment', line: (v) => v.line },
    ];
    for (const envFile of s.service.envFiles) {
      const text = options.readEnvFile?.(envFile.path) ?? null;
      if (text === null) {
        notes.push(`${model.file}:${envFile.line}: env_file '${envFile.path}' of service '${s.service.name}' ${options.readEnvFile === undefined ? 'was not read' : 'was not found next to the Compose file'}: not scanned for references to other services`);
        continue;
      }
      sources.push({ vars: parseEnvFile(text), origin: `env_file ${envFile.path}`, line: () => envFile.line });
    }
    for (const source of sources) {
      for (const v of source.vars) {
        if (v.value === null) continue;
        for (const ref of findReferences(v.value, known)) {
          const target = index.get(ref.host)!;
          if (target.service === s.service.name) continue;
          const to = ref.port === null ? ref.host : `${ref.host}:${ref.port}`;
          const origin = `${source.origin} ${v.key}`;
          const key = `${s.service.name}|${to}|${origin}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const problem = referenceProblem(s, ref.host, ref.port, target, stateOf);
          references.push({ from: s.service.name, to, origin, problem });
          if (problem !== null && s.nodes.length > 0) warn(source.line(v), `${s.service.name} → ${to} (from ${origin}): ${problem}`);
        }
      }
    }
  }
  return references;
}

function referenceProblem(from: ServiceState, host: string, port: number | null, target: NameTarget, stateOf: Map<string, ServiceState>): string | null {
  const t = stateOf.get(target.service);
  if (t === undefined) return `'${target.service}' is left out by its profile`;
  if (target.kind === 'container_name') return `'${host}' is the container_name of '${target.service}', not a mesh name: use '${target.service}'`;
  if (t.nodes.length === 0) return `'${target.service}' has no placement (--place ${target.service}=NODE)`;
  if (!t.isTranslated || t.port === null) return `'${target.service}' is not exposed in the mesh (no translated port)`;
  const shared = target.networks.filter((n) => from.meshNetworks.includes(n) && t.meshNetworks.includes(n));
  if (shared.length === 0) {
    const allowed = [...new Set(target.networks.filter((n) => t.meshNetworks.includes(n)).map((n) => `tag:${networkTag(n)}`))];
    return `${from.service.name} shares no network with '${host}', so its allowFrom (${allowed.join(', ') || 'empty'}) does not admit ${from.service.name}'s node`;
  }
  if (port !== null && port !== t.port) return `'${host}' is exposed on port ${t.port}, not ${port}`;
  return null;
}
