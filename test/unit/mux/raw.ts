import { MuxSession } from '../../../src/mux/index.js';
import type { MuxConfig, MuxStream, StreamOpenInfo } from '../../../src/mux/index.js';
import type { MeshError } from '../../../src/errors.js';
import type { Clock } from '../../../src/util/clock.js';
import type { StreamFrame } from '../../../src/wire/index.js';
import { silentLogger } from './pair.js';

/** A session whose peer is the test itself: frames it sends are recorded, frames are fed by hand. */
export interface RawSession {
  session: MuxSession;
  sent: StreamFrame[];
  inbound: MuxStream[];
  streamErrors: Map<number, Error>;
  protocolErrors: MeshError[];
  tunnelBuffered: number;
  /** Sent frames of one kind for one stream. */
  sentFor(streamId: number, kind?: StreamFrame['kind']): StreamFrame[];
}

export function rawSession(
  options: {
    isInitiator?: boolean;
    config?: Partial<MuxConfig>;
    clock?: Clock;
    onStream?: (stream: MuxStream, open: StreamOpenInfo) => void;
    /** Called after each frame the session sends is recorded (for example to fill the fake tunnel). */
    onSend?: (frame: StreamFrame) => void;
  } = {},
): RawSession {
  const raw: RawSession = {
    session: undefined as unknown as MuxSession,
    sent: [],
    inbound: [],
    streamErrors: new Map(),
    protocolErrors: [],
    tunnelBuffered: 0,
    sentFor: (id, kind) => raw.sent.filter((f) => f.streamId === id && (kind === undefined || f.kind === kind)),
  };
  raw.session = new MuxSession({
    isInitiator: options.isInitiator ?? true,
    logger: silentLogger(),
    config: options.config ?? {},
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    bufferedBytes: () => raw.tunnelBuffered,
    send: (f) => {
      raw.sent.push(f);
      options.onSend?.(f);
    },
    onStream: (stream, open) => {
      raw.inbound.push(stream);
      stream.on('error', (err) => raw.streamErrors.set(stream.id, err));
      if (options.onStream) options.onStream(stream, open);
      else stream.accept();
    },
    onProtocolError: (err) => raw.protocolErrors.push(err),
  });
  return raw;
}
