import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import { NatTable, natScript } from '../../../src/forward/index.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

describe('natScript', () => {
  it('replaces the whole table in one transaction, one DNAT rule per VIP:port, sorted', () => {
    const script = natScript('osmoda_mesh', [
      { vip: '127.77.0.9', port: 6379, localPort: 40002 },
      { vip: '127.77.0.5', port: 5432, localPort: 40001 },
    ]);
    expect(script).toBe(
      [
        'add table ip osmoda_mesh',
        'delete table ip osmoda_mesh',
        'table ip osmoda_mesh {',
        '  chain output {',
        '    type nat hook output priority -100; policy accept;',
        '    ip daddr 127.77.0.5 tcp dport 5432 dnat to 127.0.0.1:40001',
        '    ip daddr 127.77.0.9 tcp dport 6379 dnat to 127.0.0.1:40002',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('an empty rule set still creates the (empty) chain', () => {
    expect(natScript('t', [])).toContain('type nat hook output');
  });

  it.each([
    ['a table name with a space', 'my table', []],
    ['a table name with a semicolon', 'x;flush ruleset', []],
    ['a VIP that is not IPv4', 'ok', [{ vip: '127.77.0.5; flush ruleset', port: 1, localPort: 2 }]],
    ['port 0', 'ok', [{ vip: '127.77.0.5', port: 0, localPort: 2 }]],
    ['local port 70000', 'ok', [{ vip: '127.77.0.5', port: 1, localPort: 70000 }]],
  ])('refuses %s (nothing reaches nft unchecked)', (_label, table, rules) => {
    expectMeshError(() => natScript(table, rules), ErrorCodes.INVALID_ARGUMENT);
  });
});

describe('NatTable against a stand-in nft command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'osm-nat-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A fake nft: appends its stdin to a log, then exits with `status` printing `stderr`. */
  const fakeNft = (name: string, status: number, stderr = ''): { command: string; log: string } => {
    const log = join(dir, `${name}.log`);
    const command = join(dir, `${name}.sh`);
    writeFileSync(command, `#!/bin/sh\ncat >> '${log}'\necho '---' >> '${log}'\nprintf '%s' '${stderr}' >&2\nexit ${status}\n`);
    chmodSync(command, 0o755);
    return { command, log };
  };

  it('applies rule sets in order and removes the table once', async () => {
    const { command, log } = fakeNft('ok', 0);
    const nat = new NatTable({ table: 'osmoda_mesh', nftCommand: command });
    await Promise.all([nat.apply([{ vip: '127.77.0.5', port: 80, localPort: 41000 }]), nat.apply([])]);
    await nat.remove();
    await nat.remove();
    const runs = readFileSync(log, 'utf8').split('---\n').filter(Boolean);
    expect(runs).toHaveLength(3);
    expect(runs[0]).toContain('dnat to 127.0.0.1:41000');
    expect(runs[1]).not.toContain('dnat');
    expect(runs[2]).toBe('add table ip osmoda_mesh\ndelete table ip osmoda_mesh\n');
  });

  it('names CAP_NET_ADMIN when nft is not permitted', async () => {
    const { command } = fakeNft('eperm', 1, 'Error: Could not process rule: Operation not permitted');
    const nat = new NatTable({ table: 'osmoda_mesh', nftCommand: command });
    const err = await nat.apply([]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: ErrorCodes.NAT_SETUP });
    expect((err as Error).message).toMatch(/nft exited with status 1: Error: Could not process rule: Operation not permitted \(the agent needs CAP_NET_ADMIN/);
  });

  it('says how to fix a missing nft command', async () => {
    const nat = new NatTable({ table: 'osmoda_mesh', nftCommand: join(dir, 'no-such-nft') });
    await expect(nat.apply([])).rejects.toThrow(/cannot run .*no-such-nft: install nftables \(the nft command\) or set forwardMode to bind/);
  });

  it('a failed run does not block the next one', async () => {
    const bad = new NatTable({ table: 'osmoda_mesh', nftCommand: join(dir, 'missing') });
    await expect(bad.apply([])).rejects.toThrow();
    await expect(bad.remove()).resolves.toBeUndefined(); // nothing was installed: nothing to remove
  });
});
