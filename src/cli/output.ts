import type { TextSink } from './context.js';

/** Formatting shared by the verbs: aligned tables, ages, sizes. Pure functions of their inputs. */

/**
 * Strings in answers come partly from peers (paths, errors, problems): strip terminal control
 * characters so a hostile peer cannot rewrite the operator's screen.
 */
export function sanitize(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** Columns separated by two spaces, each as wide as its widest cell; no trailing blanks. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows].map((row) => row.map((cell) => sanitize(cell)));
  const widths: number[] = [];
  for (const row of all) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, [...cell].length);
    });
  }
  return all
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat(widths[i]! - [...cell].length))).join('  ').trimEnd())
    .join('\n') + '\n';
}

/** "key:  value" lines with the values aligned. */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...fields.map(([key]) => key.length + 1));
  return fields.map(([key, value]) => `${(key + ':').padEnd(width)}  ${sanitize(value)}`.trimEnd()).join('\n') + '\n';
}

/** A compact duration: "450ms", "3s", "5m", "2h", "3d". */
export function formatDuration(ms: number): string {
  const abs = Math.max(0, ms);
  if (abs < 1000) return `${Math.round(abs)}ms`;
  const s = Math.floor(abs / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** "3s ago"; "-" when never seen. */
export function formatAge(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return 'just now';
  return `${formatDuration(ms)} ago`;
}

/** "2027-01-01T00:00:00.000Z (in 364d)" or "(expired 3d ago)". */
export function formatExpiry(iso: string | null, nowMs: number): string {
  if (iso === null) return '-';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  const left = at - nowMs;
  return left >= 0 ? `${iso} (in ${formatDuration(left)})` : `${iso} (expired ${formatDuration(-left)} ago)`;
}

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** "512 B", "1.2 KiB", "1.2 MiB", … */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1024) return `${Math.max(0, Math.round(bytes))} B`;
  let value = bytes;
  let unit = 'B';
  for (const next of BYTE_UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value).toString()} ${unit}`;
}

/** "0.42 ms", "12 ms"; "-" when unknown. */
export function formatRtt(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '-';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

export function formatList(items: readonly string[]): string {
  return items.length === 0 ? '-' : items.join(',');
}

export function writeJson(sink: TextSink, value: unknown): void {
  sink.write(JSON.stringify(value, null, 2) + '\n');
}
