import { describe, expect, it } from 'vitest';
import { formatAge, formatBytes, formatDuration, formatExpiry, formatRtt, formatTable, sanitize } from '../../../src/cli/output.js';

describe('output helpers', () => {
  it('formats bytes with binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.0 KiB');
    expect(formatBytes(1_258_291)).toBe('1.2 MiB');
    expect(formatBytes(50 * 1024 * 1024)).toBe('50 MiB');
    expect(formatBytes(3 * 1024 ** 4)).toBe('3.0 TiB');
  });

  it('formats ages and durations', () => {
    expect(formatAge(null)).toBe('-');
    expect(formatAge(400)).toBe('just now');
    expect(formatAge(3_200)).toBe('3s ago');
    expect(formatAge(125_000)).toBe('2m ago');
    expect(formatDuration(5 * 3_600_000)).toBe('5h');
    expect(formatDuration(3 * 86_400_000)).toBe('3d');
  });

  it('formats expiry relative to now', () => {
    const now = Date.parse('2030-01-01T00:00:00.000Z');
    expect(formatExpiry('2030-01-04T00:00:00.000Z', now)).toBe('2030-01-04T00:00:00.000Z (in 3d)');
    expect(formatExpiry('2029-12-31T23:00:00.000Z', now)).toBe('2029-12-31T23:00:00.000Z (expired 1h ago)');
    expect(formatExpiry(null, now)).toBe('-');
  });

  it('formats RTT', () => {
    expect(formatRtt(null)).toBe('-');
    expect(formatRtt(0.4213)).toBe('0.42 ms');
    expect(formatRtt(123.4)).toBe('123 ms');
  });

  it('aligns table columns and trims trailing blanks', () => {
    const text = formatTable(['A', 'BB', 'C'], [['xxx', 'y', 'z'], ['1', '22222', '']]);
    expect(text).toBe('A    BB     C\nxxx  y      z\n1    22222\n');
  });

  it('strips terminal control characters', () => {
    expect(sanitize('ok\u001b[2Jboom\n')).toBe('ok?[2Jboom?');
    expect(formatTable(['X'], [['\u001b]0;owned\u0007']])).not.toContain('\u001b');
  });
});
