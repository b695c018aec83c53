import { describe, expect, it } from 'vitest';
import { defaultMuxConfig, resolveMuxConfig, verifyMuxConfig } from '../../../src/mux/index.js';
import { MuxSession } from '../../../src/mux/index.js';
import { ErrorCodes, isMeshError } from '../../../src/errors.js';
import { MAX_DATA_FRAME } from '../../../src/wire/index.js';
import { silentLogger } from './pair.js';

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('mux config', () => {
  it('has the documented defaults', () => {
    expect(defaultMuxConfig).toEqual({
      initialWindowBytes: 256 * 1024,
      maxWindowBytes: 4 * 1024 * 1024,
      sessionMaxBufferedBytes: 64 * 1024 * 1024,
      maxStreams: 1024,
      tunnelHighWaterBytes: 1024 * 1024,
      socketReadQuotaBytes: 512 * 1024,
      maxFrameDataBytes: MAX_DATA_FRAME,
      closeTimeoutMs: 5000,
      isZeroCopySend: false,
    });
    expect(verifyMuxConfig({ ...defaultMuxConfig })).toEqual(defaultMuxConfig);
  });

  it('overlays given fields and keeps defaults for undefined ones', () => {
    const c = resolveMuxConfig({ maxStreams: 7, initialWindowBytes: undefined });
    expect(c.maxStreams).toBe(7);
    expect(c.initialWindowBytes).toBe(256 * 1024);
  });

  it.each([
    ['initialWindowBytes', 100, '1024..'],
    ['initialWindowBytes', 8 * 1024 * 1024, 'at most maxWindowBytes'],
    ['maxWindowBytes', 2 ** 32, 'uint32'],
    ['sessionMaxBufferedBytes', 1024, 'at least initialWindowBytes'],
    ['maxStreams', 0, '1..'],
    ['maxStreams', 1.5, '1..'],
    ['tunnelHighWaterBytes', -1, '1..'],
    ['socketReadQuotaBytes', 0, '1..'],
    ['maxFrameDataBytes', MAX_DATA_FRAME + 1, 'MAX_DATA_FRAME'],
    ['closeTimeoutMs', Number.NaN, '0..'],
  ] as const)('rejects %s = %s naming the field', (field, value, expected) => {
    const err = errorOf(() => resolveMuxConfig({ [field]: value }));
    expect(isMeshError(err, ErrorCodes.INVALID_CONFIG)).toBe(true);
    expect((err as Error).message).toContain(`mux config: ${field}:`);
    expect((err as Error).message).toContain(expected);
    expect((err as Error).message).toContain(`got ${String(value)}`);
  });

  it('is validated when a session is constructed', () => {
    const err = errorOf(
      () =>
        new MuxSession({
          isInitiator: true,
          logger: silentLogger(),
          config: { maxStreams: -3 },
          send: () => {},
          bufferedBytes: () => 0,
          onStream: () => {},
          onProtocolError: () => {},
        }),
    );
    expect(isMeshError(err, ErrorCodes.INVALID_CONFIG)).toBe(true);
    expect((err as Error).message).toContain('maxStreams');
  });
});
