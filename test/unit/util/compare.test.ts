import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareText } from '../../../src/util/compare.js';

describe('compareText', () => {
  it('orders by UTF-16 code units, as sort() does without a comparator', () => {
    const names = ['web', 'db', 'a-1', 'a1', 'my-db', 'mydb', '127.91.0.10', '127.91.0.9', 'B', 'a', ''];
    expect([...names].sort(compareText)).toEqual([...names].sort());
    expect(compareText('db', 'db')).toBe(0);
    expect(compareText('db', 'web')).toBe(-1);
    expect(compareText('web', 'db')).toBe(1);
    // code units, not a locale's collation: upper case before lower case
    expect(compareText('B', 'a')).toBe(-1);
    expect('B'.localeCompare('a')).toBe(1);
  });

  it('is what src/ sorts with: no localeCompare (its first call keeps 2-4 MB of ICU pages resident)', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.ts') && /\.localeCompare\(/.test(readFileSync(path, 'utf8'))) offenders.push(path);
      }
    };
    const src = new URL('../../../src', import.meta.url).pathname;
    walk(src);
    expect(readFileSync(join(src, 'forward', 'local-services.ts'), 'utf8')).toContain('compareText(');
    expect(offenders).toEqual([]);
  });
});
