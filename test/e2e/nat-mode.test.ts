/**
 * nat mode (SPEC §4a) end to end: the agent of `a` runs with forwardMode "nat" while a local server
 * on a holds 0.0.0.0:8080, the very port of the mesh service `web` that b provides. In bind mode
 * the two exclude each other; in nat mode the VIP is DNATed by nftables to a port of the agent's
 * own, so both work, the local server can restart, and the table goes away with the agent (and is
 * replaced, not duplicated, after a SIGKILL). Both agents start from JSON config files: b creates
 * the mesh with bootstrap.meshName, a joins with joinTokenFile (the NixOS module's path).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentFleet, describeExec, pollUntil } from './helpers/agents.js';
import { e2eGate } from './helpers/gate.js';
import { createTopology, NAME_PREFIX, TMP_ROOT } from './helpers/netns.js';
import type { Topology } from './helpers/netns.js';

const gate = e2eGate('nat-mode');

const WEB_PORT = 8080;
const DNS_ADDR = '127.77.0.53';
const TABLE = 'osmoda_mesh';

/** A one-line HTTP server answering `text`, run with this Node inside a namespace. */
const httpServerScript = (text: string, host: string, port: number): string =>
  `require('http').createServer((q, s) => { s.setHeader('connection', 'close'); s.end(${JSON.stringify(text)}); }).listen(${port}, ${JSON.stringify(host)})`;

describe.skipIf(!gate.ok)('nat mode: mesh names never clash with local servers on the same port', () => {
  let topo: Topology | undefined;
  let workDir: string | undefined;
  let fleet: AgentFleet | undefined;
  let localServer: ChildProcess | undefined;
  let hasFailed = false;

  const t = (): Topology => topo!;
  const f = (): AgentFleet => fleet!;

  const curl = (url: string): Promise<string | undefined> =>
    t()
      .exec('a', 'curl', ['-sS', '--max-time', '5', url], { timeoutMs: 8_000 })
      .then((r) => (r.code === 0 ? r.stdout : undefined));

  const nftTable = async (): Promise<string | undefined> => {
    const r = await t().exec('a', 'nft', ['list', 'table', 'ip', TABLE], { timeoutMs: 5_000 });
    return r.code === 0 ? r.stdout : undefined;
  };

  const startLocalServer = async (): Promise<void> => {
    localServer = t().spawn('a', process.execPath, ['-e', httpServerScript('local-a', '0.0.0.0', WEB_PORT)], { stdio: 'ignore' });
    await pollUntil('local server on a answers', { timeoutMs: 10_000 }, async () => ((await curl(`http://127.0.0.1:${WEB_PORT}/`)) === 'local-a' ? true : undefined));
  };

  const writeConfig = (host: string, extra: Record<string, unknown>): string => {
    const ip = t().hosts[host]!.ip;
    const file = join(workDir!, `${host}.json`);
    const config = {
      nodeName: host,
      stateDir: join(workDir!, `${host}-state`),
      listen: `${ip}:18800`,
      publicEndpoints: [`ws://${ip}:18800`],
      dns: { enable: true, listen: `${DNS_ADDR}:53`, upstreams: [] },
      ...extra,
    };
    writeFileSync(file, JSON.stringify(config, null, 2));
    return file;
  };

  beforeAll(async () => {
    try {
      workDir = mkdtempSync(join(TMP_ROOT, `${NAME_PREFIX}${process.pid}-nat-`));
      topo = await createTopology({ hosts: ['a', 'b'] });
      fleet = new AgentFleet(topo, workDir);

      topo.spawn('b', process.execPath, ['-e', httpServerScript('from-b', '127.0.0.1', WEB_PORT)], { stdio: 'ignore' });
      f().start('b', { args: ['--config', writeConfig('b', { bootstrap: { meshName: 'natmesh' }, services: { web: { port: WEB_PORT } } })] });
      await f().waitAnswers('b');
      await pollUntil('b bootstraps its mesh', { timeoutMs: 10_000 }, async () => ((await f().status('b'))?.node.mesh === 'natmesh' ? true : undefined));
      const token = (await f().cliOk('b', ['token', 'create'])).trim();
      const tokenFile = join(workDir, 'a.token');
      writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });

      // the clash bind mode cannot survive: a local server already on 0.0.0.0:8080
      await startLocalServer();
      f().start('a', { args: ['--config', writeConfig('a', { forwardMode: 'nat', joinTokenFile: tokenFile })] });
      await f().waitAnswers('a');
      await f().waitAllUp(['a', 'b'], 60_000);
      t().setResolver('a', { nameserver: DNS_ADDR, search: ['mesh'] });
    } catch (err) {
      hasFailed = true;
      fleet?.printLogs('beforeAll failed');
      throw err;
    }
  }, 180_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      hasFailed = true;
      fleet?.printLogs(`'${ctx.task.name}' failed`);
    }
  });

  afterAll(async () => {
    try {
      await fleet?.stopAll();
    } finally {
      await topo?.destroy();
      if (workDir !== undefined) {
        if (hasFailed) console.error(`nat e2e: agent logs and state kept in ${workDir}`);
        else rmSync(workDir, { recursive: true, force: true });
      }
    }
  }, 60_000);

  it('reaches web:8080 through the mesh while a local server keeps 0.0.0.0:8080', { timeout: 60_000 }, async () => {
    const body = await pollUntil('web answers from b through the VIP', { timeoutMs: 30_000 }, async () => {
      const got = await curl(`http://web:${WEB_PORT}/`);
      return got === 'from-b' ? got : undefined;
    });
    expect(body).toBe('from-b');
    expect(await curl(`http://127.0.0.1:${WEB_PORT}/`)).toBe('local-a');
    const status = await f().status('a');
    expect(status?.services.find((s) => s.name === 'web')?.problems).toEqual([]);
  });

  it('installs one DNAT rule per VIP:port in a table of its own', async () => {
    const table = await nftTable();
    expect(table).toBeDefined();
    const vip = (await f().status('a'))!.services.find((s) => s.name === 'web')!.vip;
    expect(table).toMatch(new RegExp(`ip daddr ${vip.replace(/\./g, '\\.')} tcp dport ${WEB_PORT} dnat to 127\\.0\\.0\\.1:\\d+`));
    expect(table!.match(/dnat to/g)).toHaveLength(1);
  });

  it('the local server restarts on 0.0.0.0:8080 without EADDRINUSE (the reverse clash)', { timeout: 30_000 }, async () => {
    await t().kill(localServer!, 2_000);
    await startLocalServer();
    expect(await curl(`http://web:${WEB_PORT}/`)).toBe('from-b');
  });

  it('removes its table on a clean stop, and replaces a stale one after SIGKILL', { timeout: 120_000 }, async () => {
    await f().stop('a');
    expect(await nftTable()).toBeUndefined();

    f().start('a');
    await f().waitAnswers('a');
    await pollUntil('table back after restart', { timeoutMs: 20_000 }, async () => ((await nftTable())?.includes('dnat to') ? true : undefined));
    f().child('a')!.kill('SIGKILL');
    await pollUntil('agent a gone', { timeoutMs: 10_000 }, async () => (f().child('a')!.exitCode !== null || f().child('a')!.signalCode !== null ? true : undefined));
    expect(await nftTable()).toContain('dnat to'); // left behind by the killed agent

    f().start('a');
    await f().waitAnswers('a');
    await f().waitAllUp(['a', 'b'], 60_000);
    const body = await pollUntil('web answers again after the restart', { timeoutMs: 30_000 }, async () => {
      const got = await curl(`http://web:${WEB_PORT}/`);
      return got === 'from-b' ? got : undefined;
    });
    expect(body).toBe('from-b');
    const table = await nftTable();
    expect(table?.match(/dnat to/g), describeExec({ code: 0, signal: null, stdout: table ?? '', stderr: '', timedOut: false, truncated: false })).toHaveLength(1);
  });
});
