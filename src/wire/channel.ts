import type { Frame } from './frames.js';

/**
 * What the mesh layer sees of a tunnel: an ordered, encrypted, authenticated frame pipe. `mux` and
 * `tunnel` never import each other; `mesh` joins them through this interface (STYLE layout).
 */
export interface FrameChannel {
  /**
   * Queues frames for sending. Frames queued in the same tick are packed into as few transport
   * messages as fit. Throws MESH_ERR_TUNNEL_CLOSED after close.
   */
  send(frame: Frame): void;
  /** Bytes queued but not yet handed to the kernel: the tunnel-level backpressure signal. */
  bufferedBytes(): number;
  /** Called for every frame the peer sent that the tunnel itself does not consume. */
  onFrame(handler: (frame: Frame) => void): void;
  /** Called when bufferedBytes() falls below the low-water mark after having been above it. */
  onDrain(handler: () => void): void;
  /**
   * Calls `handler` once when the channel closes: with the error that closed it, or undefined for
   * a normal close. A handler registered after the close is called on the next microtask with the
   * same value, so a late subscriber cannot mistake an error close for a normal one.
   */
  onClose(handler: (err: Error | undefined) => void): void;
  readonly isOpen: boolean;
}
