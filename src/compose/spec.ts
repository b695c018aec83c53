/**
 * The keys of the Compose Specification (schema/compose-spec.json of compose-spec/compose-spec,
 * 2026-06), so that a misspelt key is an error instead of a silently missing port or network.
 * `x-*` extension keys are allowed wherever the specification allows them.
 */

export const TOP_LEVEL_KEYS: ReadonlySet<string> = new Set([
  'version', 'name', 'include', 'services', 'models', 'networks', 'volumes', 'secrets', 'configs',
]);

export const SERVICE_KEYS: ReadonlySet<string> = new Set([
  'develop', 'deploy', 'annotations', 'attach', 'build', 'blkio_config', 'cap_add', 'cap_drop', 'cgroup',
  'cgroup_parent', 'command', 'configs', 'container_name', 'cpu_count', 'cpu_percent', 'cpu_shares',
  'cpu_quota', 'cpu_period', 'cpu_rt_period', 'cpu_rt_runtime', 'cpus', 'cpuset', 'credential_spec',
  'depends_on', 'device_cgroup_rules', 'devices', 'dns', 'dns_opt', 'dns_search', 'domainname',
  'entrypoint', 'env_file', 'label_file', 'environment', 'expose', 'extends', 'provider', 'external_links',
  'extra_hosts', 'gpus', 'group_add', 'healthcheck', 'hostname', 'image', 'init', 'ipc', 'isolation',
  'labels', 'links', 'logging', 'mac_address', 'mem_limit', 'mem_reservation', 'mem_swappiness',
  'memswap_limit', 'network_mode', 'models', 'networks', 'oom_kill_disable', 'oom_score_adj', 'pid',
  'pids_limit', 'platform', 'ports', 'post_start', 'pre_stop', 'privileged', 'profiles', 'pull_policy',
  'pull_refresh_after', 'read_only', 'restart', 'runtime', 'scale', 'security_opt', 'shm_size', 'secrets',
  'sysctls', 'stdin_open', 'stop_grace_period', 'stop_signal', 'storage_opt', 'tmpfs', 'tty', 'ulimits',
  'use_api_socket', 'user', 'uts', 'userns_mode', 'volumes', 'volumes_from', 'working_dir',
]);

/** Long `ports` syntax. */
export const PORT_KEYS: ReadonlySet<string> = new Set(['name', 'mode', 'host_ip', 'target', 'published', 'protocol', 'app_protocol']);

/** An entry of a service's `networks` mapping. */
export const SERVICE_NETWORK_KEYS: ReadonlySet<string> = new Set([
  'aliases', 'interface_name', 'ipv4_address', 'ipv6_address', 'link_local_ips', 'mac_address', 'driver_opts',
  'priority', 'gw_priority',
]);

/** A top-level network. */
export const NETWORK_KEYS: ReadonlySet<string> = new Set([
  'name', 'driver', 'driver_opts', 'ipam', 'external', 'internal', 'enable_ipv4', 'enable_ipv6', 'attachable', 'labels',
]);

/** Long `depends_on` syntax. */
export const DEPENDS_ON_KEYS: ReadonlySet<string> = new Set(['restart', 'required', 'condition']);

/** Long `env_file` syntax. */
export const ENV_FILE_KEYS: ReadonlySet<string> = new Set(['path', 'format', 'required']);

/**
 * The port that well-known images EXPOSE, for services that declare none (their Dockerfile's
 * EXPOSE is what other containers reach). Keyed by repository path without registry, `library/`
 * and tag. The first EXPOSEd port where an image has several (rabbitmq: AMQP, not the console).
 */
export const WELL_KNOWN_IMAGE_PORTS: ReadonlyMap<string, number> = new Map([
  ['postgres', 5432],
  ['postgis/postgis', 5432],
  ['timescale/timescaledb', 5432],
  ['bitnami/postgresql', 5432],
  ['redis', 6379],
  ['bitnami/redis', 6379],
  ['valkey/valkey', 6379],
  ['mysql', 3306],
  ['mariadb', 3306],
  ['bitnami/mysql', 3306],
  ['mongo', 27017],
  ['bitnami/mongodb', 27017],
  ['memcached', 11211],
  ['rabbitmq', 5672],
  ['nginx', 80],
  ['httpd', 80],
  ['caddy', 80],
  ['traefik', 80],
  ['elasticsearch', 9200],
  ['elasticsearch/elasticsearch', 9200],
  ['opensearchproject/opensearch', 9200],
  ['kibana', 5601],
  ['kibana/kibana', 5601],
  ['grafana/grafana', 3000],
  ['prom/prometheus', 9090],
  ['minio/minio', 9000],
  ['nats', 4222],
  ['zookeeper', 2181],
  ['couchdb', 5984],
  ['cassandra', 9042],
  ['influxdb', 8086],
  ['adminer', 8080],
  ['mongo-express', 8081],
  ['registry', 5000],
]);

/** "docker.io/library/postgres:16-alpine@sha256:…" → "postgres"; "ghcr.io/org/app:1" → "org/app". */
export function imageRepository(image: string): string {
  let ref = image.trim().toLowerCase();
  const at = ref.indexOf('@');
  if (at !== -1) ref = ref.slice(0, at);
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) ref = ref.slice(0, colon);
  const parts = ref.split('/');
  // A first component with a dot or a port, or "localhost", is a registry host.
  if (parts.length > 1 && (/[.:]/.test(parts[0]!) || parts[0] === 'localhost')) parts.shift();
  if (parts.length > 1 && parts[0] === 'library') parts.shift();
  return parts.join('/');
}

export function wellKnownImagePort(image: string): number | undefined {
  return WELL_KNOWN_IMAGE_PORTS.get(imageRepository(image));
}

/** The closest key within edit distance 2, for "did you mean …?". */
export function closestKey(key: string, keys: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of keys) {
    const d = editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Damerau-Levenshtein (optimal string alignment): "prots" is one transposition from "ports". */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) rows.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}
