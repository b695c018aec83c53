import { ErrorCodes, MeshError } from '../errors.js';
import { defaultConfig, type AgentConfig, type ServiceConfig } from './schema.js';

/**
 * Validates a parsed JSON config against the schema and fills defaults. Unknown keys are errors
 * (a misspelt option must not be silently ignored); every message names the field, what it got and
 * what it expected.
 */

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function fail(field: string, got: unknown, expected: string): never {
  const shown = typeof got === 'string' ? `'${got}'` : JSON.stringify(got);
  throw new MeshError(ErrorCodes.INVALID_CONFIG, `config ${field}: expected ${expected}, got ${shown}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(obj: Record<string, unknown>, field: string, allowed: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(`${field}${field ? '.' : ''}${key}`, obj[key], `no such option (allowed: ${allowed.join(', ')})`);
  }
}

export function isDnsLabel(name: string): boolean {
  return DNS_LABEL.test(name);
}

export function validateNodeName(name: unknown, field = 'nodeName'): string {
  if (typeof name !== 'string' || !isDnsLabel(name)) {
    fail(field, name, 'a DNS label: 1-63 of a-z, 0-9 and -, not starting or ending with -');
  }
  return name;
}

export function validateServiceName(name: unknown, field = 'service name'): string {
  return validateNodeName(name, field);
}

export function parsePort(value: unknown, field: string): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) fail(field, value, 'a port 1..65535');
  return n;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(text: string): boolean {
  return IPV4.test(text);
}

/** Parses "host:port" (IPv4, a host name, or [IPv6]). */
export function parseHostPort(value: unknown, field: string, defaultPort?: number): { host: string; port: number } {
  if (typeof value !== 'string' || value.length === 0) fail(field, value, 'host:port');
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(value);
  if (bracketed) {
    const port = bracketed[2] ?? (defaultPort === undefined ? undefined : String(defaultPort));
    if (port === undefined) fail(field, value, 'host:port');
    return { host: bracketed[1]!, port: parsePort(port, field) };
  }
  const idx = value.lastIndexOf(':');
  const host = idx === -1 ? value : value.slice(0, idx);
  const portText = idx === -1 ? (defaultPort === undefined ? undefined : String(defaultPort)) : value.slice(idx + 1);
  if (portText === undefined) fail(field, value, 'host:port');
  if (!isIpv4(host) && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(host)) fail(field, value, 'host:port with an IPv4 address or host name');
  return { host, port: parsePort(portText, field) };
}

export function validateEndpoint(value: unknown, field: string): string {
  if (typeof value !== 'string') fail(field, value, 'a ws:// or wss:// URL');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    fail(field, value, 'a ws:// or wss:// URL');
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') fail(field, value, 'a ws:// or wss:// URL');
  if (url.username || url.password) fail(field, value, 'a URL without credentials');
  return value;
}

function stringList(value: unknown, field: string, check: (item: unknown, field: string) => string): string[] {
  if (!Array.isArray(value)) fail(field, value, 'a list');
  return value.map((item, i) => check(item, `${field}[${i}]`));
}

function validateService(name: string, value: unknown): ServiceConfig {
  const field = `services.${name}`;
  validateServiceName(name, field);
  if (!isObject(value)) fail(field, value, 'an object { port, targetHost?, targetPort?, allowFrom? }');
  checkKeys(value, field, ['port', 'targetHost', 'targetPort', 'allowFrom']);
  const port = parsePort(value['port'], `${field}.port`);
  const targetHost = value['targetHost'] ?? '127.0.0.1';
  if (typeof targetHost !== 'string' || targetHost.length === 0) fail(`${field}.targetHost`, targetHost, 'a host name or address');
  const targetPort = value['targetPort'] === undefined || value['targetPort'] === null ? port : parsePort(value['targetPort'], `${field}.targetPort`);
  return { port, targetHost, targetPort, allowFrom: validateAllowFrom(value['allowFrom'], `${field}.allowFrom`) };
}

/** An allowFrom entry: a node name, or `tag:` and a tag (both DNS labels, as in certificates). */
export function validateAccessRule(item: unknown, field: string): string {
  if (typeof item === 'string' && item.startsWith('tag:') && isDnsLabel(item.slice(4))) return item;
  if (typeof item === 'string' && isDnsLabel(item)) return item;
  fail(field, item, "a node name or 'tag:<tag>' (DNS labels)");
}

function validateAllowFrom(value: unknown, field: string): string[] | null {
  if (value === undefined || value === null) return null;
  return [...new Set(stringList(value, field, validateAccessRule))];
}

export function validateConfig(input: unknown, hostName: string): AgentConfig {
  if (!isObject(input)) fail('', input, 'a JSON object');
  const config = defaultConfig(hostName);
  checkKeys(input, '', [
    'nodeName', 'stateDir', 'listen', 'publicEndpoints', 'control', 'dns', 'vipRange', 'forwardMode',
    'logLevel', 'tags', 'services', 'joinTokenFile', 'bootstrap', 'metricsListen', 'hostsFile',
  ]);
  if (input['nodeName'] !== undefined && input['nodeName'] !== null) config.nodeName = validateNodeName(input['nodeName']);
  if (input['stateDir'] !== undefined) {
    const dir = input['stateDir'];
    if (typeof dir !== 'string' || !dir.startsWith('/')) fail('stateDir', dir, 'an absolute path');
    config.stateDir = dir;
  }
  if (input['listen'] !== undefined) {
    parseHostPort(input['listen'], 'listen');
    config.listen = input['listen'] as string;
  }
  if (input['publicEndpoints'] !== undefined) config.publicEndpoints = stringList(input['publicEndpoints'], 'publicEndpoints', validateEndpoint);
  if (input['control'] !== undefined) {
    const control = input['control'];
    if (typeof control !== 'string' || control.length === 0 || control.length > 100) fail('control', control, 'a socket path of at most 100 characters');
    config.control = control;
  }
  if (input['dns'] !== undefined) {
    const dns = input['dns'];
    if (!isObject(dns)) fail('dns', dns, 'an object { enable, listen, upstreams, domain }');
    checkKeys(dns, 'dns', ['enable', 'listen', 'upstreams', 'domain']);
    if (dns['enable'] !== undefined) {
      if (typeof dns['enable'] !== 'boolean') fail('dns.enable', dns['enable'], 'true or false');
      config.dns.enable = dns['enable'];
    }
    if (dns['listen'] !== undefined) {
      parseHostPort(dns['listen'], 'dns.listen');
      config.dns.listen = dns['listen'] as string;
    }
    if (dns['upstreams'] === null) config.dns.upstreams = null;
    else if (dns['upstreams'] !== undefined) {
      config.dns.upstreams = stringList(dns['upstreams'], 'dns.upstreams', (item, field) => {
        parseHostPort(item, field, 53);
        return item as string;
      });
    }
    if (dns['domain'] !== undefined) config.dns.domain = validateNodeName(dns['domain'], 'dns.domain');
  }
  if (input['vipRange'] !== undefined) {
    const range = input['vipRange'];
    if (typeof range !== 'string' || !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}\/(8|9|[12]\d|30)$/.test(range)) {
      fail('vipRange', range, 'a CIDR inside 127.0.0.0/8 with prefix 8..30, e.g. 127.77.0.0/16');
    }
    config.vipRange = range;
  }
  if (input['forwardMode'] !== undefined) {
    const mode = input['forwardMode'];
    if (mode !== 'bind' && mode !== 'nat') fail('forwardMode', mode, "'bind' or 'nat'");
    config.forwardMode = mode;
  }
  if (input['logLevel'] !== undefined) {
    const level = input['logLevel'];
    if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) fail('logLevel', level, `one of ${LOG_LEVELS.join(', ')}`);
    config.logLevel = level as AgentConfig['logLevel'];
  }
  if (input['tags'] !== undefined) config.tags = stringList(input['tags'], 'tags', (item, field) => validateNodeName(item, field));
  if (input['services'] !== undefined) {
    const services = input['services'];
    if (!isObject(services)) fail('services', services, 'an object of name → { port, targetHost?, targetPort? }');
    for (const [name, value] of Object.entries(services)) config.services[name] = validateService(name, value);
  }
  if (input['joinTokenFile'] !== undefined && input['joinTokenFile'] !== null) {
    const file = input['joinTokenFile'];
    if (typeof file !== 'string' || !file.startsWith('/')) fail('joinTokenFile', file, 'an absolute path');
    config.joinTokenFile = file;
  }
  if (input['hostsFile'] !== undefined && input['hostsFile'] !== null) {
    const file = input['hostsFile'];
    if (typeof file !== 'string' || !file.startsWith('/')) fail('hostsFile', file, 'an absolute path, e.g. /etc/hosts');
    config.hostsFile = file;
  }
  if (input['metricsListen'] !== undefined && input['metricsListen'] !== null) {
    parseHostPort(input['metricsListen'], 'metricsListen');
    config.metricsListen = input['metricsListen'] as string;
  }
  if (input['bootstrap'] !== undefined && input['bootstrap'] !== null) {
    const bootstrap = input['bootstrap'];
    if (!isObject(bootstrap)) fail('bootstrap', bootstrap, 'an object { meshName }');
    checkKeys(bootstrap, 'bootstrap', ['meshName']);
    const meshName = bootstrap['meshName'];
    config.bootstrap.meshName = meshName === undefined || meshName === null ? null : validateNodeName(meshName, 'bootstrap.meshName');
  }
  return config;
}

/** Parses a duration such as 30s, 15m, 24h, 7d (or plain milliseconds). */
export function parseDurationMs(text: unknown, field: string): number {
  if (typeof text === 'number' && Number.isInteger(text) && text > 0) return text;
  const match = typeof text === 'string' ? /^(\d+)(ms|s|m|h|d)$/.exec(text.trim()) : null;
  if (!match) fail(field, text, 'a duration such as 90s, 30m, 24h or 7d');
  const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = Number(match[1]) * units[match[2] as keyof typeof units];
  if (ms <= 0 || !Number.isSafeInteger(ms)) fail(field, text, 'a positive duration');
  return ms;
}
