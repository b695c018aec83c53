/**
 * The migration path end to end (issue 4): `compose import` turns test/fixtures/compose/three-tier.yml
 * (proxy on network front; app on front and back; db on back) into one agent JSON config per node;
 * three agents start from exactly those files (plus where to listen) in three namespaces. Then the
 * chain works by Compose names — proxy on node1 forwards to http://app:8080, app on node2 runs
 * `psql -h db` against a real PostgreSQL on node3 — while node1, which shares no network with db,
 * is refused by db's agent when it tries the database directly. node1 runs in nat mode, so the
 * proxy's own port 80 and the mesh never clash.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentFleet, MAIN_JS, REPO_ROOT, describeExec, pollUntil } from './helpers/agents.js';
import { e2eGate } from './helpers/gate.js';
import { createTopology, NAME_PREFIX, TMP_ROOT } from './helpers/netns.js';
import type { Topology } from './helpers/netns.js';
import { startPostgres, type DirServiceHandle } from './helpers/services.js';

const gate = e2eGate('compose');

const NODES = ['node1', 'node2', 'node3'] as const;
const DNS_ADDR = '127.77.0.53';
const METRICS = '127.0.0.1:9101';
const COMPOSE_FILE = join(REPO_ROOT, 'test/fixtures/compose/three-tier.yml');

/** proxy: HTTP on 127.0.0.1:80 that relays every request to http://app:8080 (by name, via the mesh). */
const PROXY = `
const http = require('http');
http.createServer((req, res) => {
  const up = http.get({ host: 'app', port: 8080, path: req.url }, (r) => { res.writeHead(r.statusCode); r.pipe(res); });
  up.on('error', (e) => { res.writeHead(502); res.end('proxy: ' + e.message); });
}).listen(80, '127.0.0.1');`;

/** app: HTTP on 127.0.0.1:8080 that answers with what `psql -h db` returns (by name, via the mesh). */
const APP = `
const http = require('http');
const { execFile } = require('child_process');
http.createServer((req, res) => {
  execFile('psql', ['-h', 'db', '-p', '5432', '-U', 'postgres', '-tA', '-c', "select 'db says ' || 6*7"], { timeout: 8000 }, (err, out, errOut) => {
    if (err) { res.writeHead(500); res.end('app: ' + (errOut || err.message)); return; }
    res.end('app via ' + out.trim());
  });
}).listen(8080, '127.0.0.1');`;

describe.skipIf(!gate.ok)('compose import → three agents → the Compose chain by name, networks enforced', () => {
  let topo: Topology | undefined;
  let workDir: string | undefined;
  let fleet: AgentFleet | undefined;
  let postgres: DirServiceHandle | undefined;
  let hasFailed = false;

  const t = (): Topology => topo!;
  const f = (): AgentFleet => fleet!;

  beforeAll(async () => {
    try {
      workDir = mkdtempSync(join(TMP_ROOT, `${NAME_PREFIX}${process.pid}-compose-`));
      const outDir = join(workDir, 'generated');
      const { execFileSync } = await import('node:child_process');
      execFileSync(
        process.execPath,
        [MAIN_JS, 'compose', 'import', COMPOSE_FILE, '--place', 'proxy=node1', '--place', 'app=node2', '--place', 'db=node3', '--format', 'json', '--out', outDir],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 },
      );
      topo = await createTopology({ hosts: [...NODES] });
      fleet = new AgentFleet(topo, workDir);

      // the generated files, unchanged, plus what only the host knows: where to listen and keep state
      const configFor = (node: (typeof NODES)[number], extra: Record<string, unknown>): string => {
        const generated = JSON.parse(readFileSync(join(outDir, `${node}.json`), 'utf8')) as Record<string, unknown>;
        const ip = t().hosts[node]!.ip;
        const file = join(workDir!, `${node}.config.json`);
        const config = {
          ...generated,
          stateDir: join(workDir!, `${node}-state`),
          listen: `${ip}:18800`,
          publicEndpoints: [`ws://${ip}:18800`],
          dns: { enable: true, listen: `${DNS_ADDR}:53`, upstreams: [] },
          ...extra,
        };
        writeFileSync(file, JSON.stringify(config, null, 2));
        return file;
      };

      postgres = await startPostgres(t(), 'node3', { port: 5432, readyTimeoutMs: 40_000 });
      f().start('node3', { args: ['--config', configFor('node3', { bootstrap: { meshName: 'compose' }, metricsListen: METRICS })] });
      await f().waitAnswers('node3');
      await pollUntil('node3 bootstraps the mesh', { timeoutMs: 10_000 }, async () => ((await f().status('node3'))?.node.mesh === 'compose' ? true : undefined));
      const tokenFile = join(workDir, 'join.token');
      writeFileSync(tokenFile, `${(await f().cliOk('node3', ['token', 'create', '--uses', '2'])).trim()}\n`, { mode: 0o600 });

      f().start('node2', { args: ['--config', configFor('node2', { joinTokenFile: tokenFile })] });
      f().start('node1', { args: ['--config', configFor('node1', { joinTokenFile: tokenFile, forwardMode: 'nat' })] });
      await Promise.all(['node1', 'node2'].map((n) => f().waitAnswers(n)));
      await f().waitAllUp([...NODES], 90_000);
      for (const node of NODES) t().setResolver(node, { nameserver: DNS_ADDR, search: ['mesh'] });
      // started after the resolvers: `ip netns exec` binds /etc/netns/<ns>/resolv.conf at start
      t().spawn('node2', process.execPath, ['-e', APP], { stdio: 'ignore' });
      t().spawn('node1', process.execPath, ['-e', PROXY], { stdio: 'ignore' });
      // every node knows every service before the tests start
      await pollUntil('all three services known on node1 and node2', { timeoutMs: 30_000 }, async () => {
        const views = await Promise.all(['node1', 'node2'].map((n) => f().status(n)));
        return views.every((s) => ['proxy', 'app', 'db'].every((name) => s?.services.some((v) => v.name === name))) ? true : undefined;
      });
    } catch (err) {
      hasFailed = true;
      fleet?.printLogs('beforeAll failed');
      throw err;
    }
  }, 240_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      hasFailed = true;
      fleet?.printLogs(`'${ctx.task.name}' failed`);
    }
  });

  afterAll(async () => {
    try {
      await postgres?.stop().catch(() => undefined);
      await fleet?.stopAll();
    } finally {
      await topo?.destroy();
      if (workDir !== undefined) {
        if (hasFailed) console.error(`compose e2e: agent logs and state kept in ${workDir}`);
        else if (existsSync(workDir)) rmSync(workDir, { recursive: true, force: true });
      }
    }
  }, 60_000);

  it('the agents carry the tags compose import gave their nodes', async () => {
    const node3 = await f().status('node3');
    expect(node3?.services.find((s) => s.name === 'db')?.local?.allowFrom).toEqual(['tag:net-back']);
  });

  it('proxy → app → db works by Compose names across three nodes', { timeout: 90_000 }, async () => {
    let last = '';
    const body = await pollUntil(
      'the chain answers through proxy',
      { timeoutMs: 45_000, intervalMs: 1_000 },
      async () => {
        const r = await t().exec('node1', 'curl', ['-sS', '--max-time', '10', 'http://proxy:80/'], { timeoutMs: 15_000 });
        last = describeExec(r);
        return r.code === 0 && r.stdout.includes('db says') ? r.stdout : undefined;
      },
      () => last,
    );
    expect(body.trim()).toBe('app via db says 42');
  });

  it('app reaches db directly (they share network back)', { timeout: 30_000 }, async () => {
    const r = await t().exec('node2', 'psql', ['-h', 'db', '-p', '5432', '-U', 'postgres', '-tA', '-c', 'select 1'], { timeoutMs: 20_000 });
    expect(r.code, describeExec(r)).toBe(0);
    expect(r.stdout.trim()).toBe('1');
  });

  it("proxy's node is refused by db's agent (no shared network), and the refusal is counted", { timeout: 30_000 }, async () => {
    const r = await t().exec('node1', 'psql', ['-h', 'db', '-p', '5432', '-U', 'postgres', '-tA', '-c', 'select 1'], { timeoutMs: 20_000 });
    expect(r.code, describeExec(r)).not.toBe(0);
    expect(r.stdout).not.toContain('1');
    expect(r.stderr).toMatch(/server closed the connection unexpectedly|Connection reset|could not receive data/i);
    const metrics = await t().exec('node3', 'curl', ['-sS', '--max-time', '5', `http://${METRICS}/metrics`], { timeoutMs: 8_000 });
    expect(metrics.stdout).toMatch(/osmoda_mesh_access_denied_total\{service="db"\} [1-9]/);
    expect(readFileSync(f().logOf('node3'), 'utf8')).toMatch(/stream refused: peer not in the service's allowFrom/);
  });
});
