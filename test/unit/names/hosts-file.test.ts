import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HOSTS_BEGIN, HOSTS_END, HostsFileWriter, mergeHostsBlock, renderHostsBlock } from '../../../src/names/index.js';

const SYSTEM = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.1.2.3\tbuild-server\n';

describe('hosts block', () => {
  it('renders sorted entries with the bare and the .mesh name', () => {
    expect(renderHostsBlock([{ name: 'web', address: '127.77.1.2' }, { name: 'db', address: '127.0.0.1' }], 'mesh')).toBe(
      `${HOSTS_BEGIN}\n127.0.0.1\tdb db.mesh\n127.77.1.2\tweb web.mesh\n${HOSTS_END}\n`,
    );
    expect(renderHostsBlock([], 'mesh')).toBe('');
  });

  it('appends, replaces and removes the block without touching other lines', () => {
    const one = renderHostsBlock([{ name: 'db', address: '127.77.0.9' }], 'mesh');
    const two = renderHostsBlock([{ name: 'cache', address: '127.77.0.8' }], 'mesh');
    const added = mergeHostsBlock(SYSTEM, one);
    expect(added).toBe(SYSTEM + one);
    const replaced = mergeHostsBlock(added + '192.0.2.7\tafter-block\n', two);
    expect(replaced).toBe(SYSTEM + '192.0.2.7\tafter-block\n' + two);
    expect(mergeHostsBlock(replaced, '')).toBe(SYSTEM + '192.0.2.7\tafter-block\n');
    // a file without a trailing newline still gets the block on its own lines
    expect(mergeHostsBlock('127.0.0.1 localhost', one)).toBe('127.0.0.1 localhost\n' + one);
  });

  it('a block whose END marker was cut by hand ends at the end of the file', () => {
    const cut = `${SYSTEM}${HOSTS_BEGIN}\n127.77.0.9\tdb db.mesh\n`;
    expect(mergeHostsBlock(cut, '')).toBe(SYSTEM);
  });
});

describe('HostsFileWriter', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('keeps the block current, keeps the file mode, and removes the block on stop', () => {
    const dir = mkdtempSync(join(tmpdir(), 'osm-hosts-'));
    dirs.push(dir);
    const path = join(dir, 'hosts');
    writeFileSync(path, SYSTEM);
    chmodSync(path, 0o644);
    const writer = new HostsFileWriter(path, 'mesh');
    writer.update([{ name: 'db', address: '127.77.0.9' }]);
    expect(readFileSync(path, 'utf8')).toBe(SYSTEM + renderHostsBlock([{ name: 'db', address: '127.77.0.9' }], 'mesh'));
    expect(statSync(path).mode & 0o777).toBe(0o644);
    const before = statSync(path).mtimeMs;
    writer.update([{ name: 'db', address: '127.77.0.9' }]); // unchanged: no write
    expect(statSync(path).mtimeMs).toBe(before);
    writer.update([{ name: 'db', address: '127.77.0.9' }, { name: 'web', address: '127.77.0.10' }]);
    expect(readFileSync(path, 'utf8')).toContain('127.77.0.10\tweb web.mesh');
    writer.remove();
    expect(readFileSync(path, 'utf8')).toBe(SYSTEM);
  });

  it('an unwritable location fails with a message naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'osm-hosts-'));
    dirs.push(dir);
    const file = join(dir, 'plain');
    writeFileSync(file, '');
    // a path under a regular file cannot be written, even as root
    const writer = new HostsFileWriter(join(file, 'hosts'), 'mesh');
    expect(() => writer.update([{ name: 'db', address: '127.77.0.9' }])).toThrow(/hosts file .*plain\/hosts/);
  });
});
