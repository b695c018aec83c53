import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { ErrorCodes, MeshError } from '../errors.js';
import { display, hasUnresolved, interpolate, InterpolationError, unresolvedNames } from './interpolate.js';
import type { ComposeModel, ComposeNetwork, ComposeService, EnvFileRef, EnvVar, Located, PortSpec, ServiceNetworkRef } from './model.js';
import {
  closestKey, DEPENDS_ON_KEYS, ENV_FILE_KEYS, NETWORK_KEYS, PORT_KEYS, SERVICE_KEYS, SERVICE_NETWORK_KEYS, TOP_LEVEL_KEYS,
} from './spec.js';

/**
 * Compose file text → ComposeModel. Pure (the caller reads the file). Every error is a MeshError
 * COMPOSE_INVALID whose message starts with `file:line:` and names the key, what it found and what
 * it expected.
 */

/** YAML aliases can expand exponentially ("billion laughs"): stop after this many nodes. */
const MAX_NODES = 50_000;
const MAX_DEPTH = 64;
/** A container port range larger than this is not expanded (a warning, not translated). */
export const MAX_PORT_RANGE = 256;
const SERVICE_NAME = /^[a-zA-Z0-9._-]+$/;

// A small located tree: the YAML document with aliases and merge keys (`<<: *common`) resolved,
// every node carrying its line.
type TreeNode = TreeMap | TreeSeq | TreeScalar;
interface TreeMap {
  kind: 'map';
  line: number;
  entries: Map<string, TreeEntry>;
}
interface TreeEntry {
  key: string;
  keyLine: number;
  value: TreeNode;
}
interface TreeSeq {
  kind: 'seq';
  line: number;
  items: TreeNode[];
}
interface TreeScalar {
  kind: 'scalar';
  line: number;
  value: string | number | boolean | null;
}

class Reader {
  readonly file: string;
  usesInterpolation = false;
  readonly issues: { line: number; message: string }[] = [];

  constructor(file: string) {
    this.file = file;
  }

  fail(line: number, message: string): never {
    throw new MeshError(ErrorCodes.COMPOSE_INVALID, `${this.file}:${Math.max(1, line)}: ${message}`);
  }

  interpolate(text: string, line: number, what: string): { text: string; unresolved: string[] } {
    try {
      const result = interpolate(text);
      if (result.isInterpolated) this.usesInterpolation = true;
      return result;
    } catch (err) {
      if (err instanceof InterpolationError) this.fail(line, `${what}: ${err.message}`);
      throw err;
    }
  }
}

export function parseCompose(text: string, file: string): ComposeModel {
  const reader: Reader = new Reader(file);
  const root = readTree(text, reader);
  if (root === null) reader.fail(1, 'empty file: expected a Compose mapping with a `services` key');
  const top = asMap(root, reader, 'the file', 'a Compose mapping with a `services` key');
  const untranslated: Located<string>[] = [];
  for (const entry of top.entries.values()) {
    if (entry.key.startsWith('x-')) continue;
    if (!TOP_LEVEL_KEYS.has(entry.key)) reader.fail(entry.keyLine, `unknown top-level key '${entry.key}'${suggestion(entry.key, TOP_LEVEL_KEYS)}`);
    if (entry.key === 'include' || entry.key === 'secrets' || entry.key === 'configs') untranslated.push({ value: entry.key, line: entry.keyLine });
  }
  const networks = readNetworks(top.entries.get('networks'), reader);
  const servicesEntry = top.entries.get('services');
  if (servicesEntry === undefined) reader.fail(top.line, 'no `services` key: expected the services to import');
  const servicesMap = asMap(servicesEntry.value, reader, 'services', 'a mapping of service name → service');
  const services: ComposeService[] = [];
  for (const entry of servicesMap.entries.values()) services.push(readService(entry, networks, reader));
  if (services.length === 0) reader.fail(servicesEntry.keyLine, 'services: expected at least one service, got none');
  const names = new Set(services.map((s) => s.name));
  for (const service of services) {
    for (const dep of service.dependsOn) {
      if (!names.has(dep.value)) reader.fail(dep.line, `service '${service.name}' depends_on '${dep.value}', which is not a service in this file${suggestion(dep.value, names)}`);
    }
  }
  return { file, services, networks, untranslated, usesInterpolation: reader.usesInterpolation, issues: reader.issues };
}

// ---- YAML → located tree ----

function readTree(text: string, reader: Reader): TreeNode | null {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error !== undefined) {
    const line = error.linePos?.[0]?.line ?? 1;
    const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    reader.fail(line, `invalid YAML: ${message}`);
  }
  if (doc.contents === null) return null;
  const state = { count: 0 };
  // Alias.resolve searches the document; an alias expanded many times is looked up once.
  const resolved = new Map<unknown, unknown>();
  const lineOf = (node: unknown): number => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range === undefined ? 1 : lineCounter.linePos(range[0]).line;
  };
  const convert = (node: unknown, depth: number, fallbackLine: number): TreeNode => {
    if (++state.count > MAX_NODES) reader.fail(fallbackLine, `the document expands to more than ${MAX_NODES} nodes (through aliases): refusing it`);
    if (depth > MAX_DEPTH) reader.fail(fallbackLine, `nested more than ${MAX_DEPTH} deep (or a recursive alias)`);
    if (node === null || node === undefined) return { kind: 'scalar', line: fallbackLine, value: null };
    if (isAlias(node)) {
      if (!resolved.has(node)) resolved.set(node, node.resolve(doc as Document.Parsed));
      const target = resolved.get(node);
      if (target === undefined) reader.fail(lineOf(node), `unknown alias *${node.source}`);
      return convert(target, depth + 1, lineOf(node));
    }
    const line = lineOf(node);
    if (isScalar(node)) {
      const value = node.value;
      if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return { kind: 'scalar', line, value };
      return reader.fail(line, `unsupported YAML value ${JSON.stringify(String(value))}: expected a string, number, boolean or null`);
    }
    if (isSeq(node)) return { kind: 'seq', line, items: node.items.map((item) => convert(item, depth + 1, line)) };
    if (isMap(node)) {
      const entries = new Map<string, TreeEntry>();
      const merges: { node: unknown; line: number }[] = [];
      for (const pair of node.items) {
        const key = pair.key;
        const keyLine = key === null ? line : lineOf(key);
        if (isScalar(key) && (typeof key.value === 'symbol' || (key.value === '<<' && key.type === 'PLAIN'))) {
          merges.push({ node: pair.value, line: keyLine });
          continue;
        }
        if (!isScalar(key) || key.value === null || typeof key.value === 'object') reader.fail(keyLine, 'expected a plain key (a string)');
        const name = String(key.value);
        entries.set(name, { key: name, keyLine, value: convert(pair.value, depth + 1, keyLine) });
      }
      // YAML merge keys: keys written in the mapping win, then earlier merged mappings over later ones.
      for (const merge of merges) {
        const source = convert(merge.node, depth + 1, merge.line);
        const sources = source.kind === 'seq' ? source.items : [source];
        for (const s of sources) {
          if (s.kind !== 'map') reader.fail(merge.line, `merge key '<<': expected a mapping or a list of mappings, got ${describe(s)}`);
          for (const [k, v] of s.entries) if (!entries.has(k)) entries.set(k, v);
        }
      }
      return { kind: 'map', line, entries };
    }
    return reader.fail(line, 'unsupported YAML node');
  };
  return convert(doc.contents, 0, 1);
}

// ---- typed readers ----

function describe(node: TreeNode): string {
  if (node.kind === 'map') return 'a mapping';
  if (node.kind === 'seq') return 'a list';
  if (node.value === null) return 'nothing (null)';
  if (typeof node.value === 'string') return `'${node.value.length > 60 ? node.value.slice(0, 60) + '…' : node.value}'`;
  return String(node.value);
}

function asMap(node: TreeNode, reader: Reader, what: string, expected: string): TreeMap {
  if (node.kind !== 'map') reader.fail(node.line, `${what}: expected ${expected}, got ${describe(node)}`);
  return node;
}

/** A mapping or null (`back:` with nothing under it). */
function asOptionalMap(node: TreeNode, reader: Reader, what: string, expected: string): TreeMap | null {
  if (node.kind === 'scalar' && node.value === null) return null;
  return asMap(node, reader, what, expected);
}

function asSeq(node: TreeNode, reader: Reader, what: string, expected: string): TreeSeq {
  if (node.kind !== 'seq') reader.fail(node.line, `${what}: expected ${expected}, got ${describe(node)}`);
  return node;
}

/** A string (numbers are taken as written, as Compose does for e.g. ports). */
function asString(node: TreeNode, reader: Reader, what: string, allowNumber = false): string {
  if (node.kind === 'scalar' && typeof node.value === 'string') return node.value;
  if (allowNumber && node.kind === 'scalar' && typeof node.value === 'number') return String(node.value);
  return reader.fail(node.line, `${what}: expected a string, got ${describe(node)}`);
}

function stringList(node: TreeNode, reader: Reader, what: string): Located<string>[] {
  return asSeq(node, reader, what, 'a list of strings').items.map((item) => ({ value: asString(item, reader, what), line: item.line }));
}

function checkKeys(map: TreeMap, allowed: ReadonlySet<string>, reader: Reader, what: string): void {
  for (const entry of map.entries.values()) {
    if (entry.key.startsWith('x-') || allowed.has(entry.key)) continue;
    reader.fail(entry.keyLine, `unknown key '${entry.key}' in ${what}${suggestion(entry.key, allowed)}`);
  }
}

function suggestion(key: string, keys: Iterable<string>): string {
  const best = closestKey(key, keys);
  return best === undefined ? '' : ` (did you mean '${best}'?)`;
}

function isTrue(node: TreeNode | undefined): boolean {
  if (node === undefined) return false;
  if (node.kind === 'map') return true; // legacy `external: { name: … }`
  return node.kind === 'scalar' && (node.value === true || node.value === 'true');
}

// ---- top-level networks ----

function readNetworks(entry: TreeEntry | undefined, reader: Reader): Map<string, ComposeNetwork> {
  const networks = new Map<string, ComposeNetwork>();
  if (entry !== undefined) {
    const map = asOptionalMap(entry.value, reader, 'networks', 'a mapping of network name → network');
    for (const net of map?.entries.values() ?? []) {
      if (!SERVICE_NAME.test(net.key)) reader.fail(net.keyLine, `network name '${net.key}': expected letters, digits, '.', '_' and '-'`);
      const body = asOptionalMap(net.value, reader, `network '${net.key}'`, 'a mapping of network options or nothing');
      if (body !== null) checkKeys(body, NETWORK_KEYS, reader, `network '${net.key}'`);
      networks.set(net.key, { name: net.key, line: net.keyLine, isExternal: isTrue(body?.entries.get('external')?.value) });
    }
  }
  if (!networks.has('default')) networks.set('default', { name: 'default', line: 0, isExternal: false });
  return networks;
}

// ---- services ----

function readService(entry: TreeEntry, networks: Map<string, ComposeNetwork>, reader: Reader): ComposeService {
  const name = entry.key;
  if (!SERVICE_NAME.test(name)) reader.fail(entry.keyLine, `service name '${name}': expected letters, digits, '.', '_' and '-'`);
  const body = asMap(entry.value, reader, `service '${name}'`, 'a mapping of service options');
  for (const e of body.entries.values()) {
    if (e.key.startsWith('x-')) continue;
    if (!SERVICE_KEYS.has(e.key)) reader.fail(e.keyLine, `unknown service key '${e.key}' in service '${name}'${suggestion(e.key, SERVICE_KEYS)}`);
  }
  const service: ComposeService = {
    name,
    line: entry.keyLine,
    image: null,
    ports: [],
    networks: null,
    networkMode: null,
    links: [],
    externalLinks: [],
    dependsOn: [],
    environment: [],
    envFiles: [],
    profiles: [],
    containerName: null,
    untranslated: [],
  };
  const get = (key: string): TreeNode | undefined => body.entries.get(key)?.value;
  const what = (key: string): string => `service '${name}' ${key}`;
  const interpolated = (node: TreeNode, key: string): string => display(reader.interpolate(asString(node, reader, what(key)), node.line, what(key)).text);

  const image = get('image');
  if (image !== undefined) service.image = { value: interpolated(image, 'image'), line: image.line };
  const ports = get('ports');
  if (ports !== undefined) {
    for (const item of asSeq(ports, reader, what('ports'), 'a list of port mappings').items) service.ports.push(readPort(item, name, reader));
  }
  const expose = get('expose');
  if (expose !== undefined) {
    for (const item of asSeq(expose, reader, what('expose'), 'a list of ports').items) service.ports.push(readExpose(item, name, reader));
  }
  const nets = get('networks');
  if (nets !== undefined) service.networks = readServiceNetworks(nets, name, networks, reader);
  const mode = get('network_mode');
  if (mode !== undefined) service.networkMode = { value: interpolated(mode, 'network_mode'), line: mode.line };
  const links = get('links');
  if (links !== undefined) service.links = stringList(links, reader, what('links'));
  const externalLinks = get('external_links');
  if (externalLinks !== undefined) service.externalLinks = stringList(externalLinks, reader, what('external_links'));
  const dependsOn = get('depends_on');
  if (dependsOn !== undefined) service.dependsOn = readDependsOn(dependsOn, name, reader);
  const environment = get('environment');
  if (environment !== undefined) service.environment = readEnvironment(environment, name, reader);
  const envFile = get('env_file');
  if (envFile !== undefined) service.envFiles = readEnvFiles(envFile, name, reader);
  const profiles = get('profiles');
  if (profiles !== undefined) service.profiles = stringList(profiles, reader, what('profiles')).map((p) => p.value);
  const containerName = get('container_name');
  if (containerName !== undefined) service.containerName = { value: interpolated(containerName, 'container_name'), line: containerName.line };
  for (const key of ['extends', 'secrets', 'configs']) {
    const e = body.entries.get(key);
    if (e !== undefined) service.untranslated.push({ value: key, line: e.keyLine });
  }
  return service;
}

const PORT_FORMAT = 'expected [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. "8080:80", "5432" or "127.0.0.1:8080:80/tcp"';

function readPort(node: TreeNode, service: string, reader: Reader): PortSpec {
  const what = `service '${service}' ports`;
  if (node.kind === 'map') {
    checkKeys(node, PORT_KEYS, reader, `${what} entry`);
    const target = node.entries.get('target');
    if (target === undefined) reader.fail(node.line, `${what} entry: expected a 'target' (the container port), got none`);
    const targetText = reader.interpolate(asString(target.value, reader, `${what} target`, true), target.value.line, `${what} target`).text;
    const protocolNode = node.entries.get('protocol')?.value;
    const protocol = protocolNode === undefined ? 'tcp' : readProtocol(asString(protocolNode, reader, `${what} protocol`), protocolNode.line, what, reader);
    const publishedNode = node.entries.get('published')?.value;
    const published = publishedNode === undefined ? null : display(reader.interpolate(asString(publishedNode, reader, `${what} published`, true), publishedNode.line, `${what} published`).text);
    const hostIpNode = node.entries.get('host_ip')?.value;
    const hostIp = hostIpNode === undefined ? null : display(reader.interpolate(asString(hostIpNode, reader, `${what} host_ip`), hostIpNode.line, `${what} host_ip`).text);
    const text = `${display(targetText)}${protocol === 'tcp' ? '' : `/${protocol}`}`;
    const spec: PortSpec = { line: node.line, source: 'ports', text, targets: [], protocol, published, hostIp, unresolved: [] };
    return fillTargets(spec, targetText, `${what} target`, 'expected a container port 1..65535 or a range such as 3000-3002', reader);
  }
  const raw = asString(node, reader, `${what} entry`, true);
  if (node.kind === 'scalar' && typeof node.value === 'number' && !Number.isInteger(node.value)) reader.fail(node.line, `${what} entry ${raw}: ${PORT_FORMAT}`);
  const text = reader.interpolate(raw, node.line, `${what} entry`).text;
  const { body, protocol } = splitProtocol(text, node.line, what, reader);
  let hostIp: string | null = null;
  let parts: string[];
  if (body.startsWith('[')) {
    const close = body.indexOf(']');
    if (close === -1 || body[close + 1] !== ':') reader.fail(node.line, `${what} entry '${display(raw)}': ${PORT_FORMAT}`);
    hostIp = body.slice(1, close);
    parts = body.slice(close + 2).split(':');
    if (parts.length !== 2) reader.fail(node.line, `${what} entry '${display(raw)}': ${PORT_FORMAT}`);
  } else {
    parts = body.split(':');
    if (parts.length > 3) {
      // an unbracketed IPv6 host address: the last two parts are the ports
      hostIp = parts.slice(0, -2).join(':');
      parts = parts.slice(-2);
    } else if (parts.length === 3) {
      hostIp = parts.shift()!;
    }
  }
  const container = parts[parts.length - 1]!;
  const published = parts.length === 2 ? display(parts[0]!) : null;
  const spec: PortSpec = {
    line: node.line,
    source: 'ports',
    text: display(text),
    targets: [],
    protocol,
    published,
    hostIp: hostIp === null ? null : display(hostIp),
    unresolved: [],
  };
  return fillTargets(spec, container, `${what} entry '${display(raw)}'`, PORT_FORMAT, reader);
}

function readExpose(node: TreeNode, service: string, reader: Reader): PortSpec {
  const what = `service '${service}' expose`;
  const raw = asString(node, reader, `${what} entry`, true);
  const text = reader.interpolate(raw, node.line, `${what} entry`).text;
  const { body, protocol } = splitProtocol(text, node.line, what, reader);
  const spec: PortSpec = { line: node.line, source: 'expose', text: display(text), targets: [], protocol, published: null, hostIp: null, unresolved: [] };
  return fillTargets(spec, body, `${what} entry '${display(raw)}'`, 'expected a port 1..65535 or a range such as 3000-3002, optionally with /tcp or /udp', reader);
}

/** `8080/udp` → body `8080`, protocol `udp`; no suffix means tcp (ports and expose alike). */
function splitProtocol(text: string, line: number, what: string, reader: Reader): { body: string; protocol: string } {
  const slash = text.lastIndexOf('/');
  if (slash === -1) return { body: text, protocol: 'tcp' };
  return { body: text.slice(0, slash), protocol: readProtocol(text.slice(slash + 1), line, what, reader) };
}

function readProtocol(text: string, line: number, what: string, reader: Reader): string {
  const protocol = text.toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') reader.fail(line, `${what}: protocol '${display(text)}': expected tcp, udp or sctp`);
  return protocol;
}

/** The container side: a port or a range, or unresolved interpolation (a warning later). */
function fillTargets(spec: PortSpec, container: string, what: string, expected: string, reader: Reader): PortSpec {
  if (hasUnresolved(container)) {
    spec.unresolved = unresolvedNames(container);
    return spec;
  }
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(container.trim());
  const first = m ? Number(m[1]) : NaN;
  const last = m?.[2] === undefined ? first : Number(m[2]);
  if (!m || first < 1 || last > 65535 || last < first) reader.fail(spec.line, `${what}: ${expected}`);
  if (last - first + 1 > MAX_PORT_RANGE) {
    reader.issues.push({ line: spec.line, message: `${what}: a range of ${last - first + 1} ports; at most ${MAX_PORT_RANGE} are translated, so none of it is (list the ports you need with --port)` });
    return spec;
  }
  for (let p = first; p <= last; p++) spec.targets.push(p);
  return spec;
}

function readServiceNetworks(node: TreeNode, service: string, networks: Map<string, ComposeNetwork>, reader: Reader): ServiceNetworkRef[] {
  const what = `service '${service}' networks`;
  const refs: ServiceNetworkRef[] = [];
  const check = (name: string, line: number): void => {
    if (!networks.has(name)) {
      const declared = [...networks.keys()].join(', ');
      reader.fail(line, `${what}: network '${name}' is not declared under the top-level networks (declared: ${declared})${suggestion(name, networks.keys())}`);
    }
  };
  if (node.kind === 'seq') {
    for (const item of stringList(node, reader, what)) {
      check(item.value, item.line);
      refs.push({ name: item.value, line: item.line, aliases: [] });
    }
    return refs;
  }
  const map = asMap(node, reader, what, 'a list of network names or a mapping of network name → options');
  for (const entry of map.entries.values()) {
    check(entry.key, entry.keyLine);
    const body = asOptionalMap(entry.value, reader, `${what} '${entry.key}'`, 'a mapping (aliases, ipv4_address, …) or nothing');
    if (body !== null) checkKeys(body, SERVICE_NETWORK_KEYS, reader, `${what} '${entry.key}'`);
    const aliases = body?.entries.get('aliases');
    refs.push({ name: entry.key, line: entry.keyLine, aliases: aliases === undefined ? [] : stringList(aliases.value, reader, `${what} '${entry.key}' aliases`) });
  }
  return refs;
}

function readDependsOn(node: TreeNode, service: string, reader: Reader): Located<string>[] {
  const what = `service '${service}' depends_on`;
  if (node.kind === 'seq') return stringList(node, reader, what);
  const map = asMap(node, reader, what, 'a list of service names or a mapping of service name → { condition }');
  return [...map.entries.values()].map((entry) => {
    const body = asMap(entry.value, reader, `${what} '${entry.key}'`, 'a mapping { condition, required, restart }');
    checkKeys(body, DEPENDS_ON_KEYS, reader, `${what} '${entry.key}'`);
    return { value: entry.key, line: entry.keyLine };
  });
}

function readEnvironment(node: TreeNode, service: string, reader: Reader): EnvVar[] {
  const what = `service '${service}' environment`;
  if (node.kind === 'seq') {
    return node.items.map((item) => {
      const text = asString(item, reader, what);
      const eq = text.indexOf('=');
      const key = eq === -1 ? text : text.slice(0, eq);
      const value = eq === -1 ? null : display(reader.interpolate(text.slice(eq + 1), item.line, `${what} ${key}`).text);
      return { key, value, line: item.line };
    });
  }
  const map = asMap(node, reader, what, 'a mapping of NAME: value or a list of NAME=value');
  return [...map.entries.values()].map((entry) => {
    const v = entry.value;
    if (v.kind !== 'scalar') reader.fail(v.line, `${what} ${entry.key}: expected a string, number, boolean or nothing, got ${describe(v)}`);
    const value = v.value === null ? null : display(reader.interpolate(String(v.value), v.line, `${what} ${entry.key}`).text);
    return { key: entry.key, value, line: entry.keyLine };
  });
}

function readEnvFiles(node: TreeNode, service: string, reader: Reader): EnvFileRef[] {
  const what = `service '${service}' env_file`;
  const one = (item: TreeNode): EnvFileRef => {
    if (item.kind === 'map') {
      checkKeys(item, ENV_FILE_KEYS, reader, what);
      const path = item.entries.get('path');
      if (path === undefined) reader.fail(item.line, `${what}: expected a 'path', got none`);
      const required = item.entries.get('required')?.value;
      const isRequired = required === undefined || !(required.kind === 'scalar' && (required.value === false || required.value === 'false'));
      return { path: display(reader.interpolate(asString(path.value, reader, `${what} path`), path.value.line, what).text), line: path.value.line, isRequired };
    }
    return { path: display(reader.interpolate(asString(item, reader, what), item.line, what).text), line: item.line, isRequired: true };
  };
  if (node.kind === 'seq') return node.items.map(one);
  return [one(node)];
}

/** The environment variables of a .env-format file (KEY=VALUE lines, `#` comments, optional quotes). */
export function parseEnvFile(text: string): EnvVar[] {
  const vars: EnvVar[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=\s*(.*))?$/.exec(line);
    if (!m) return;
    let value = m[2] ?? null;
    if (value !== null) {
      const quoted = /^(['"])([\s\S]*)\1$/.exec(value);
      if (quoted) value = quoted[2]!;
      else value = value.replace(/\s+#.*$/, '');
    }
    vars.push({ key: m[1]!, value, line: i + 1 });
  });
  return vars;
}
