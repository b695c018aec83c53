import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireSodiumNative } from '../../../src/crypto/sodium-native.js';

/** A require() that records what it was asked for and answers from `modules` (anything else: not found). */
function fakeRequire(root: string, modules: Record<string, unknown>): { require: NodeJS.Require; asked: string[] } {
  const asked: string[] = [];
  const require = ((id: string) => {
    asked.push(id);
    if (id in modules) return modules[id];
    throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
  }) as NodeJS.Require;
  require.resolve = ((id: string) => {
    if (id === 'sodium-native/package.json') return join(root, 'package.json');
    throw new Error(`unexpected resolve of ${id}`);
  }) as NodeJS.RequireResolve;
  return { require, asked };
}

describe('loading sodium-native', () => {
  it("loads this platform's prebuilt binary: the same binding the package's entry point gives", () => {
    const require = createRequire(import.meta.url);
    const binding = requireSodiumNative(require);
    expect(typeof binding.crypto_aead_chacha20poly1305_ietf_encrypt).toBe('function');
    // the entry point resolves the same file, and Node loads a file once
    expect(require('sodium-native')).toBe(binding);
  });

  it('requires the prebuilt file by its path, and nothing else when it loads', () => {
    const root = '/opt/x/node_modules/sodium-native';
    const file = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'sodium-native.node');
    const binding = { crypto_scalarmult: () => {} };
    const { require, asked } = fakeRequire(root, { [file]: binding });
    expect(requireSodiumNative(require)).toBe(binding);
    expect(asked).toEqual([file]);
  });

  it("falls back to the package's entry point when there is no prebuilt binary for this platform", () => {
    const root = '/opt/x/node_modules/sodium-native';
    const binding = { crypto_scalarmult: () => {} };
    const { require, asked } = fakeRequire(root, { 'sodium-native': binding });
    expect(requireSodiumNative(require)).toBe(binding);
    expect(asked).toEqual([join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'sodium-native.node'), 'sodium-native']);
  });

  it('throws what the entry point throws when neither loads (the caller reports it and uses node:crypto)', () => {
    const { require } = fakeRequire('/nowhere', {});
    expect(() => requireSodiumNative(require)).toThrow(/Cannot find module 'sodium-native'/);
  });
});
