import { expect } from 'vitest';
import { MeshError, type ErrorCode } from '../../src/errors.js';

/** Asserts that `err` is a MeshError with this code (and, if given, a message matching the part). */
export function expectMeshErrorValue(err: unknown, code: ErrorCode, messagePart?: RegExp | string): MeshError {
  expect(err, `expected a MeshError ${code}`).toBeInstanceOf(MeshError);
  const error = err as MeshError;
  expect(error.code, error.message).toBe(code);
  if (messagePart !== undefined) expect(error.message).toMatch(messagePart);
  return error;
}

/** Runs `fn`, which must throw a MeshError with this code (and message part); returns it. */
export function expectMeshError(fn: () => unknown, code: ErrorCode, messagePart?: RegExp | string): MeshError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  return expectMeshErrorValue(thrown, code, messagePart);
}
