import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import { networkTag, parseCompose, toDnsLabel, translateCompose, type ImportPlan, type NodePlan } from '../../../src/compose/index.js';
import { expectMeshError } from '../../helpers/mesh-error.js';
import { parseFixture, translateFixture, warningsAt } from './fixtures.js';

const node = (plan: ImportPlan, name: string): NodePlan => {
  const found = plan.nodes.find((n) => n.node === name);
  if (found === undefined) throw new Error(`no plan for node ${name}: ${plan.nodes.map((n) => n.node).join(', ')}`);
  return found;
};
const svc = (name: string, port: number, allowFrom: string[], composeService = name) => ({ name, port, targetHost: '127.0.0.1', targetPort: port, allowFrom, composeService });
const translateText = (text: string, placements: Record<string, string>, file = 'docker-compose.yml'): ImportPlan =>
  translateCompose(parseCompose(text, file), { placements: Object.entries(placements).map(([service, n]) => ({ service, node: n })) });

describe('three-tier.yml: proxy (front) → app (front, back) → db (back)', () => {
  const plan = translateFixture('three-tier.yml', { proxy: 'node1', app: 'node2', db: 'node3' });

  it('gives each node its services, ports, targets, tags and allowFrom', () => {
    expect(plan.nodes).toEqual([
      { node: 'node1', tags: ['net-front'], services: [svc('proxy', 80, ['tag:net-front'])], composeServices: ['proxy'] },
      { node: 'node2', tags: ['net-back', 'net-front'], services: [svc('app', 8080, ['tag:net-back', 'tag:net-front'])], composeServices: ['app'] },
      { node: 'node3', tags: ['net-back'], services: [svc('db', 5432, ['tag:net-back'])], composeServices: ['db'] },
    ]);
  });

  it('keeps proxy out of db: no tag of node1 is in db\'s allowFrom, app\'s node has one', () => {
    const db = node(plan, 'node3').services[0]!;
    expect(node(plan, 'node1').tags.some((t) => db.allowFrom.includes(`tag:${t}`))).toBe(false);
    expect(node(plan, 'node2').tags.some((t) => db.allowFrom.includes(`tag:${t}`))).toBe(true);
  });

  it('has no warnings, lists the references and says what it assumes', () => {
    expect(plan.warnings).toEqual([]);
    expect(plan.references).toEqual([
      { from: 'proxy', to: 'app:8080', origin: 'environment UPSTREAM', problem: null },
      { from: 'app', to: 'db:5432', origin: 'environment DATABASE_URL', problem: null },
    ]);
    const notes = plan.notes.join('\n');
    expect(notes).toContain('127.0.0.1:<container port>');
    expect(notes).toContain('access is per node');
    expect(notes).toContain('must join again');
    expect(notes).toContain('depends_on orders start-up on one host only');
    expect(plan.services.find((s) => s.service === 'proxy')!.notes).toEqual([expect.stringMatching(/^publishes 8080→80 on the host: .*firewall yourself$/)]);
  });

  it('puts several services on one node and one service on several nodes', () => {
    const shared = translateFixture('three-tier.yml', { proxy: 'edge', app: ['edge', 'app2'], db: 'data' });
    expect(shared.nodes.map((n) => [n.node, n.tags, n.services.map((s) => s.name), n.composeServices])).toEqual([
      ['app2', ['net-back', 'net-front'], ['app'], ['app']],
      ['data', ['net-back'], ['db'], ['db']],
      ['edge', ['net-back', 'net-front'], ['app', 'proxy'], ['proxy', 'app']],
    ]);
    expect(shared.services.find((s) => s.service === 'app')!.nodes).toEqual(['edge', 'app2']);
    expect(shared.warnings).toEqual([]);
  });
});

describe('missing placement', () => {
  const plan = translateFixture('three-tier.yml', { app: 'node2' });

  it('leaves unplaced services out of the output, with a warning at their line', () => {
    expect(plan.nodes.map((n) => n.node)).toEqual(['node2']);
    expect(warningsAt(plan, 7)).toEqual(["three-tier.yml:7: service 'proxy' has no placement (--place proxy=NODE): not in the output"]);
    expect(warningsAt(plan, 31)).toEqual(["three-tier.yml:31: service 'db' has no placement (--place db=NODE): not in the output"]);
    expect(plan.services.find((s) => s.service === 'db')).toMatchObject({ nodes: [], notes: ['not placed: not in the output'] });
  });

  it('warns about a placed service that depends on or refers to an unplaced one', () => {
    expect(warningsAt(plan, 26)).toEqual(["three-tier.yml:26: service 'app' depends_on 'db', which has no placement (--place db=NODE)"]);
    expect(warningsAt(plan, 29)).toEqual(["three-tier.yml:29: app → db:5432 (from environment DATABASE_URL): 'db' has no placement (--place db=NODE)"]);
    // proxy is not placed itself: its reference is listed, not warned about
    expect(plan.references.find((r) => r.from === 'proxy')).toEqual({ from: 'proxy', to: 'app:8080', origin: 'environment UPSTREAM', problem: null });
    expect(plan.warnings).toHaveLength(4);
  });
});

describe('placement and --port arguments', () => {
  it('refuses a placement of a service that does not exist, naming the services', () => {
    expectMeshError(() => translateFixture('three-tier.yml', { web: 'node1' }), ErrorCodes.INVALID_ARGUMENT, "--place web=node1: no service 'web' in three-tier.yml (services: proxy, app, db)");
  });

  it('refuses a node name that is not a DNS label', () => {
    expectMeshError(() => translateFixture('three-tier.yml', { db: 'Node_1' }), ErrorCodes.INVALID_ARGUMENT, /--place db=Node_1: the node name must be a DNS label/);
  });

  it('refuses --port for a service that does not exist', () => {
    expectMeshError(() => translateFixture('three-tier.yml', { db: 'n1' }, { ports: [{ service: 'cache', port: 6379 }] }), ErrorCodes.INVALID_ARGUMENT, /--port cache=6379: no service 'cache'/);
  });

  it('--port replaces the ports of the file and gives a port to a service with none', () => {
    const plan = translateFixture('three-tier.yml', { app: 'n1', db: 'n2' }, { ports: [{ service: 'app', port: 9000 }, { service: 'db', port: 5432 }] });
    expect(node(plan, 'n1').services).toEqual([svc('app', 9000, ['tag:net-back', 'tag:net-front'])]);
    expect(plan.services.find((s) => s.service === 'app')!.notes).toEqual(['port from --port (the file has 8080)']);
    expect(plan.services.find((s) => s.service === 'db')!.notes).toEqual(['port from --port']);
    const worker = translateFixture('well-known.yml', { worker: 'n1' }, { ports: [{ service: 'worker', port: 7000 }] });
    expect(node(worker, 'n1').services).toEqual([svc('worker', 7000, ['tag:net-default'])]);
    expect(worker.warnings.filter((w) => w.includes("'worker'"))).toEqual([]);
  });
});

describe('ports.yml: short and long syntax, UDP, published ports', () => {
  const plan = translateFixture('ports.yml', { web: 'n1' });

  it('translates the first TCP container port and says how to add the others', () => {
    expect(node(plan, 'n1').services).toEqual([svc('web', 80, ['tag:net-default'])]);
    expect(warningsAt(plan, 3)).toEqual([
      "ports.yml:3: service 'web' has ports 80, 443, 9000, 3000-3002, 5000, 6001, 7000: the agent config holds one port per service name, so only 80 is translated (choose it with --port web=PORT); expose 443, 9000, 3000-3002, 5000, 6001, 7000 on its node with `osmoda-mesh expose web PORT`",
    ]);
  });

  it('warns about each UDP port at its line, not translated', () => {
    expect(warningsAt(plan, 18)).toEqual(["ports.yml:18: service 'web' ports '53:53/udp': UDP is not carried by the mesh (TCP only): not translated"]);
    expect(warningsAt(plan, 19)).toEqual(["ports.yml:19: service 'web' ports '5353/udp': UDP is not carried by the mesh (TCP only): not translated"]);
    expect(plan.warnings).toHaveLength(3);
  });

  it('mentions the published host ports as not mesh business', () => {
    expect(plan.services[0]!.notes).toEqual([
      "publishes 8080→80, 127.0.0.1:8443→443, 0.0.0.0:5001→5000, ::1:6000→6001, 127.0.0.1:(random)→7000 on the host: not mesh business, open them in the host's firewall yourself",
    ]);
  });
});

describe('expose-only.yml', () => {
  it('takes ports from expose alone', () => {
    const plan = translateFixture('expose-only.yml', { api: 'n1', worker: 'n2' });
    expect(node(plan, 'n1').services).toEqual([svc('api', 9000, ['tag:net-default'])]);
    expect(node(plan, 'n2').services).toEqual([svc('worker', 9100, ['tag:net-default'])]);
    expect(plan.warnings).toEqual([expect.stringMatching(/^expose-only\.yml:6: service 'worker' has ports 9100, 9200: .* only 9100 is translated/)]);
  });
});

describe('aliases.yml: aliases and several networks', () => {
  const plan = translateFixture('aliases.yml', { proxy: 'n1', app: 'n1', db: 'n2', report: 'n3' });

  it('makes each alias a mesh name allowed from the networks that declare it', () => {
    expect(node(plan, 'n2')).toEqual({
      node: 'n2',
      tags: ['net-back', 'net-reporting'],
      services: [
        svc('database', 5432, ['tag:net-back'], 'db'),
        svc('db', 5432, ['tag:net-back', 'tag:net-reporting']),
        svc('pg', 5432, ['tag:net-back'], 'db'),
        svc('warehouse', 5432, ['tag:net-reporting'], 'db'),
      ],
      composeServices: ['db'],
    });
    expect(plan.services.find((s) => s.service === 'db')).toMatchObject({ names: ['db', 'database', 'pg', 'warehouse'], ports: [5432] });
  });

  it('tags a node for all networks of its services, including a service that exposes nothing', () => {
    expect(node(plan, 'n1')).toEqual({
      node: 'n1',
      tags: ['net-back', 'net-front'],
      services: [svc('app', 8080, ['tag:net-back', 'tag:net-front']), svc('proxy', 80, ['tag:net-front'])],
      composeServices: ['proxy', 'app'],
    });
    expect(node(plan, 'n3')).toEqual({ node: 'n3', tags: ['net-reporting'], services: [], composeServices: ['report'] });
  });

  it('takes the port of a well-known image and says so; warns for a service with no port', () => {
    expect(plan.services.find((s) => s.service === 'db')!.notes).toEqual(['port 5432 from the image postgres:16 (its EXPOSE): check it']);
    expect(plan.warnings).toEqual([
      "aliases.yml:24: service 'report' has no port (ports/expose) and the port of its image 'example/report:1' is not known: not exposed in the mesh; pass --port report=PORT if other services connect to it",
    ]);
  });
});

describe('untranslatable.yml: what does not translate gets a warning at its line', () => {
  const plan = translateFixture('untranslatable.yml', { dns: 'n1', monitor: 'n1', sidecar: 'n1', legacy: 'n2', shared: 'n2', child: 'n2' });

  it.each([
    [6, /service 'dns' ports '53:53\/udp': UDP is not carried/],
    [10, /service 'monitor' network_mode: host: not translated/],
    [13, /service 'sidecar' network_mode: service:dns: not translated/],
    [18, /service 'legacy' links 'dns:resolver': not translated .*not by the link alias 'resolver'/],
    [20, /service 'legacy' external_links 'outside_db:db': not translated/],
    [21, /service 'shared' is only on external networks: its allowFrom is empty/],
    [24, /service 'shared' container_name 'shared-box' is not a mesh name: services that call it 'shared-box' must use 'shared'/],
    [27, /service 'child' has no port/],
    [28, /service 'child' extends: not followed/],
    [30, /service 'child' secrets: not translated/],
    [34, /network 'outside' is external .*: not translated, so it gives no tag and no allowFrom entry \(used by shared\)/],
    [37, /^untranslatable\.yml:37: secrets: not translated/],
  ])('line %i', (line, message) => {
    expect(warningsAt(plan, line)).toEqual([expect.stringMatching(message)]);
  });

  it('has exactly those warnings, in line order', () => {
    expect(plan.warnings).toHaveLength(12);
    const lines = plan.warnings.map((w) => Number(/^untranslatable\.yml:(\d+):/.exec(w)![1]));
    expect(lines).toEqual([...lines].sort((a, b) => a - b));
  });

  it('exports only what translates: the TCP port of dns, nothing of host/service-mode services', () => {
    expect(node(plan, 'n1')).toEqual({ node: 'n1', tags: ['net-default'], services: [svc('dns', 53, ['tag:net-default'])], composeServices: ['dns', 'monitor', 'sidecar'] });
    expect(node(plan, 'n2')).toEqual({
      node: 'n2',
      tags: ['net-default'],
      services: [svc('legacy', 7000, ['tag:net-default']), svc('shared', 7100, [])],
      composeServices: ['legacy', 'shared', 'child'],
    });
  });
});

describe('profiles.yml', () => {
  it('leaves out services with profiles unless selected, and says which', () => {
    const plan = translateFixture('profiles.yml', { app: 'n1', debug: 'n1', backup: 'n2' });
    expect(plan.services.map((s) => s.service)).toEqual(['app']);
    expect(plan.nodes.map((n) => [n.node, n.services.map((s) => s.name)])).toEqual([['n1', ['app']]]);
    expect(plan.notes).toContain('left out by profile: debug (debug), adminer (tools, debug), backup (ops); include them with --profile NAME');
    expect(plan.warnings).toEqual([
      "profiles.yml:5: service 'debug' is placed but only in profile(s) debug, none selected: not imported (add --profile debug)",
      "profiles.yml:12: service 'backup' is placed but only in profile(s) ops, none selected: not imported (add --profile ops)",
    ]);
  });

  it('includes the services of a selected profile and warns about a profile nobody has', () => {
    const plan = translateFixture('profiles.yml', { app: 'n1', debug: 'n1', adminer: 'n2' }, { profiles: ['debug', 'nope'] });
    expect(plan.services.map((s) => s.service)).toEqual(['app', 'debug', 'adminer']);
    expect(node(plan, 'n1').services.map((s) => s.name)).toEqual(['app', 'debug']);
    expect(node(plan, 'n2').services).toEqual([svc('adminer', 8080, ['tag:net-default'])]);
    expect(plan.notes).toContain('left out by profile: backup (ops); include them with --profile NAME');
    expect(plan.warnings).toEqual(['--profile nope: no service in profiles.yml has this profile']);
  });

  it('warns when an active service depends on one left out by its profile', () => {
    const plan = translateText('services:\n  app:\n    expose: ["80"]\n    depends_on: [cache]\n  cache:\n    image: redis\n    profiles: [extra]\n', { app: 'n1' });
    expect(plan.warnings).toEqual(["docker-compose.yml:4: service 'app' depends_on 'cache', which is left out by its profile (add --profile extra)"]);
  });
});

describe('env-refs.yml: references in environment and env_file', () => {
  const placements = { web: 'n1', worker: 'n2', db: 'n3', cache: 'n3', mq: 'n3', search: 'n4' };
  const plan = translateFixture('env-refs.yml', placements);

  it('lists every reference with where it was found, never the value', () => {
    expect(plan.references).toEqual([
      { from: 'web', to: 'db:5432', origin: 'environment DATABASE_URL', problem: null },
      { from: 'web', to: 'cache', origin: 'environment REDIS_HOST', problem: null },
      { from: 'web', to: 'search:9200', origin: 'environment SEARCH', problem: "web shares no network with 'search', so its allowFrom (tag:net-internal) does not admit web's node" },
      { from: 'web', to: 'db:5433', origin: 'environment WRONG_PORT', problem: "'db' is exposed on port 5432, not 5433" },
      { from: 'web', to: 'mq:5672', origin: 'env_file env-refs.env MQ_URL', problem: null },
      { from: 'web', to: 'cache:6379', origin: 'env_file env-refs.env CACHE_ADDR', problem: null },
      { from: 'worker', to: 'mq:5672', origin: 'environment QUEUE', problem: null },
      { from: 'worker', to: 'web:8000', origin: 'environment ADMIN', problem: null },
      { from: 'worker', to: 'pgbox:5432', origin: 'environment PG', problem: "'pgbox' is the container_name of 'db', not a mesh name: use 'db'" },
    ]);
    expect(JSON.stringify(plan)).not.toContain('s3cret');
  });

  it('warns about each reference that will not work, at its line', () => {
    expect(warningsAt(plan, 10)).toEqual([expect.stringMatching(/^env-refs\.yml:10: web → search:9200 \(from environment SEARCH\): web shares no network/)]);
    expect(warningsAt(plan, 11)).toEqual(["env-refs.yml:11: web → db:5433 (from environment WRONG_PORT): 'db' is exposed on port 5432, not 5433"]);
    expect(warningsAt(plan, 24)).toEqual(["env-refs.yml:24: worker → pgbox:5432 (from environment PG): 'pgbox' is the container_name of 'db', not a mesh name: use 'db'"]);
  });

  it('notes an env_file that is not there instead of failing', () => {
    expect(plan.notes).toContain("env-refs.yml:16: env_file 'missing.env' of service 'web' was not found next to the Compose file: not scanned for references to other services");
  });

  it('warns about a reference to an unplaced service', () => {
    const partial = translateFixture('env-refs.yml', { web: 'n1', db: 'n3', cache: 'n3', search: 'n1' });
    expect(warningsAt(partial, 15)).toEqual(["env-refs.yml:15: web → mq:5672 (from env_file env-refs.env MQ_URL): 'mq' has no placement (--place mq=NODE)"]);
  });
});

describe('well-known.yml and interpolation.yml', () => {
  it('takes ports from well-known images, with registry, tag and digest', () => {
    const plan = translateFixture('well-known.yml', { cache: 'a', sql: 'a', pg: 'b', grafana: 'b', worker: 'b', built: 'b' });
    expect(plan.services.map((s) => [s.service, s.ports])).toEqual([
      ['cache', [6379]], ['sql', [3306]], ['pg', [5432]], ['grafana', [3000]], ['worker', []], ['built', []],
    ]);
    expect(plan.services[0]!.notes).toEqual(['port 6379 from the image redis:7-alpine (its EXPOSE): check it']);
    expect(plan.warnings).toEqual([
      "well-known.yml:10: service 'worker' has no port (ports/expose) and the port of its image 'example/worker:1' is not known: not exposed in the mesh; pass --port worker=PORT if other services connect to it",
      "well-known.yml:12: service 'built' has no port (ports/expose): not exposed in the mesh; pass --port built=PORT if other services connect to it",
    ]);
  });

  it('uses ${VAR:-default}, warns at the line of a port it cannot resolve, and says the environment is not read', () => {
    const plan = translateFixture('interpolation.yml', { web: 'n1', api: 'n1', admin: 'n2' });
    expect(node(plan, 'n1').services).toEqual([svc('web', 80, ['tag:net-default'])]);
    expect(node(plan, 'n2').services).toEqual([svc('admin', 9090, ['tag:net-default'])]);
    expect(warningsAt(plan, 10)).toEqual([
      "interpolation.yml:10: service 'api' ports '${API_PORT}:${API_PORT}': the container port is ${API_PORT} with no default (the environment is not read; write ${API_PORT:-PORT} or pass --port api=PORT): not translated",
    ]);
    expect(plan.notes.some((n) => n.startsWith('interpolation:') && n.includes('not read'))).toBe(true);
  });
});

describe('names, tags and clashes', () => {
  it('makes DNS labels of names that are not, with a warning', () => {
    const plan = translateText('services:\n  My_App:\n    expose: ["80"]\n    networks: [Back_End]\nnetworks:\n  Back_End:\n', { My_App: 'n1' });
    expect(node(plan, 'n1')).toMatchObject({ tags: ['net-back-end'], services: [svc('my-app', 80, ['tag:net-back-end'], 'My_App')] });
    expect(plan.warnings).toEqual(["docker-compose.yml:2: service 'My_App': 'My_App' is not a DNS label, so the mesh calls it 'my-app': clients that use 'My_App' must use 'my-app'"]);
  });

  it('toDnsLabel and networkTag keep to 63 characters without a trailing dash', () => {
    expect(toDnsLabel('__Web.App__')).toBe('web-app');
    expect(networkTag('default')).toBe('net-default');
    const long = networkTag(`${'a'.repeat(58)}-bcd`);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long.endsWith('-')).toBe(false);
  });

  it('warns when two networks become the same tag', () => {
    const plan = translateText('services:\n  a:\n    expose: ["80"]\n    networks: [x_y, x-y]\nnetworks:\n  x_y:\n  x-y:\n', { a: 'n1' });
    expect(plan.warnings).toEqual(['networks x_y, x-y all become the tag net-x-y: they merge into one access boundary; rename one']);
  });

  it('warns when two services on one node listen on the same port', () => {
    const plan = translateText('services:\n  web:\n    image: nginx\n  admin:\n    image: httpd\n', { web: 'n1', admin: 'n1' });
    expect(plan.warnings).toEqual(['node n1: admin and web both listen on port 80 (their container port); on one host they clash: run one on another port and set its targetPort']);
  });

  it('warns when an alias is also another service\'s name on the same node, and keeps the first', () => {
    const text = 'services:\n  db:\n    image: postgres\n    networks:\n      default:\n        aliases: [cache]\n  cache:\n    image: redis\n';
    const plan = translateText(text, { db: 'n1', cache: 'n1' });
    expect(node(plan, 'n1').services.map((s) => [s.name, s.composeService])).toEqual([['cache', 'db'], ['db', 'db']]);
    expect(plan.warnings).toEqual(["docker-compose.yml:7: node n1: mesh name 'cache' is given by both 'db' and 'cache': kept the first (db); rename an alias"]);
  });

  it('warns when one mesh name comes from different services on different nodes', () => {
    const text = 'services:\n  db:\n    image: postgres\n    networks:\n      default:\n        aliases: [store]\n  files:\n    expose: ["9000"]\n    networks:\n      default:\n        aliases: [store]\n';
    const plan = translateText(text, { db: 'n1', files: 'n2' });
    expect(plan.warnings).toEqual(["mesh name 'store' is given by db and files on different nodes: the mesh spreads connections over all of them; rename an alias unless they are replicas"]);
  });

  it('parses the fixtures it translates (sanity)', () => {
    expect(parseFixture('three-tier.yml').services.map((s) => s.name)).toEqual(['proxy', 'app', 'db']);
  });
});
