/**
 * Finds references to other services in environment values: URLs (postgres://u:p@db:5432/app,
 * with several hosts as in mongodb://a:27017,b:27017), host:port pairs (db:5432, kafka1:9092,kafka2:9092)
 * and bare names (REDIS_HOST=cache). Only names in `known` count; values are never returned, since
 * they may hold passwords.
 */

export interface FoundReference {
  /** Lower case, as looked up in `known`. */
  host: string;
  port: number | null;
}

const URL_RE = /\b[a-z][a-z0-9+.-]*:\/\/([^\s/?#"'<>]+)/gi;
const HOST_PORT_RE = /(?<![A-Za-z0-9_.@-])([A-Za-z0-9][A-Za-z0-9_.-]*):(\d{1,5})(?![0-9])/g;

export function findReferences(value: string, known: ReadonlySet<string>): FoundReference[] {
  const found: FoundReference[] = [];
  const seen = new Set<string>();
  const add = (host: string, portText: string | undefined): void => {
    const name = host.toLowerCase();
    if (!known.has(name)) return;
    const port = portText === undefined || portText === '' ? null : Number(portText);
    if (port !== null && (!Number.isInteger(port) || port < 1 || port > 65535)) return;
    const key = `${name}:${port ?? ''}`;
    if (seen.has(key)) return;
    seen.add(key);
    found.push({ host: name, port });
  };
  for (const m of value.matchAll(URL_RE)) {
    const authority = m[1]!;
    const hosts = authority.slice(authority.lastIndexOf('@') + 1);
    for (const hostPort of hosts.split(',')) {
      if (hostPort.startsWith('[')) continue; // an IPv6 address is not a service name
      const [host, port] = hostPort.split(':');
      add(host!, port);
    }
  }
  const rest = value.replace(URL_RE, ' ');
  for (const m of rest.matchAll(HOST_PORT_RE)) add(m[1]!, m[2]);
  for (const token of rest.split(/[\s,;]+/)) {
    if (token !== '' && !token.includes(':')) add(token, undefined);
  }
  return found;
}
