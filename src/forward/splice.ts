import type { Socket } from 'node:net';
import type { LazyLog } from './lazy-log.js';
import type { MuxStream } from '../mux/index.js';

/**
 * Joins a TCP socket and a mux stream in both directions (MuxStream.attach: backpressure both
 * ways, half-close carried both ways), and makes a failure on either side reset the other: the
 * application sees a connection reset, never silently truncated data.
 */
export function splice(socket: Socket, stream: MuxStream, log: LazyLog, isSocketEnded = false): void {
  let isDone = false;
  const fail = (side: string, err: Error): void => {
    if (isDone) return;
    isDone = true;
    log().debug({ side, err: err.message }, 'connection reset');
    stream.destroy(err);
    // RST rather than FIN: the peer application must not take a cut stream for a complete one
    if (!socket.destroyed) socket.resetAndDestroy();
  };
  socket.on('error', (err) => fail('socket', err));
  stream.on('error', (err) => fail('stream', err));
  // a socket that already ended (its end went to the stream with the early data) has nothing to read
  stream.attach(socket, isSocketEnded);
}
