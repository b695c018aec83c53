/**
 * Compose's `${VAR}` interpolation, kept simple on purpose: the environment and `.env` are never
 * read (the result must not depend on the shell that ran the import). `${VAR:-default}` and
 * `${VAR-default}` give their default, `${VAR:+alt}` gives '', `$$` is a literal '$'; `${VAR}`,
 * `$VAR` and `${VAR:?message}` cannot be resolved and are left as a marker, so that the caller can
 * tell which part of a value (e.g. the container side of a port) is unknown and say so.
 */

const MARK = '\u0000';
const MAX_DEPTH = 8;

export interface Interpolated {
  /** The value with defaults applied; unresolved variables appear as markers (see `display`). */
  text: string;
  /** Names of the variables that could not be resolved, in order of appearance. */
  unresolved: string[];
  /** Whether the value used interpolation at all. */
  isInterpolated: boolean;
}

export class InterpolationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InterpolationError';
  }
}

export function interpolate(input: string): Interpolated {
  const result: Interpolated = { text: '', unresolved: [], isInterpolated: false };
  result.text = expand(input, result, 0);
  return result;
}

/** Whether `text` (from `interpolate`) still holds an unresolved variable. */
export function hasUnresolved(text: string): boolean {
  return text.includes(MARK);
}

/** The names of the unresolved variables in a part of an interpolated value. */
export function unresolvedNames(text: string): string[] {
  return [...text.matchAll(/\u0000([^\u0000]*)\u0000/g)].map((m) => m[1]!);
}

/** The interpolated text for messages: unresolved variables shown as `${VAR}` again. */
export function display(text: string): string {
  return text.replace(/\u0000([^\u0000]*)\u0000/g, (_, name: string) => '${' + name + '}');
}

function expand(input: string, result: Interpolated, depth: number): string {
  if (depth > MAX_DEPTH) throw new InterpolationError(`interpolation nested more than ${MAX_DEPTH} deep`);
  let out = '';
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = input[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next === '{') {
      const end = closingBrace(input, i + 2);
      if (end === -1) throw new InterpolationError(`unterminated '\${' in '${input}'`);
      result.isInterpolated = true;
      out += braced(input.slice(i + 2, end), result, depth);
      i = end + 1;
      continue;
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(input.slice(i + 1));
    if (name) {
      result.isInterpolated = true;
      out += mark(name[0], result);
      i += 1 + name[0].length;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}

function closingBrace(input: string, from: number): number {
  let depth = 1;
  for (let j = from; j < input.length; j++) {
    if (input[j] === '$' && input[j + 1] === '{') {
      depth++;
      j++;
    } else if (input[j] === '}') {
      depth--;
      if (depth === 0) return j;
    }
  }
  return -1;
}

function braced(inner: string, result: Interpolated, depth: number): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(inner);
  if (!m) throw new InterpolationError(`invalid interpolation '\${${inner}}': expected \${VAR}, \${VAR:-default} or \${VAR-default}`);
  const [, name, op, rest] = m;
  switch (op) {
    case ':-':
    case '-':
      return expand(rest ?? '', result, depth + 1);
    case ':+':
    case '+':
      return '';
    default:
      return mark(name!, result);
  }
}

function mark(name: string, result: Interpolated): string {
  result.unresolved.push(name);
  return `${MARK}${name}${MARK}`;
}
