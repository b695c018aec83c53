import { MAX_WIRE_WINDOW_BYTES } from './config.js';

/**
 * Credit-based flow control of one stream, as pure arithmetic (no streams, no frames, no time) so
 * that it can be tested on its own. The model is yamux's (`sendWindowCapacity` / `recvWindowCapacity`):
 * the receiver grants bytes, the sender never sends more than it was granted.
 */

/** Send side: the bytes the peer has allowed us to send and that we have not sent yet. */
export class SendCredit {
  #bytes: number;

  constructor(initialBytes = 0) {
    this.#bytes = initialBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Adds credit from an accept or window frame. Returns false (and adds nothing) if the total would
   * pass what a uint32 window could ever account for: an honest peer's outstanding grant is at most
   * its window, so this is a peer bug, not something to clamp silently.
   */
  grant(bytes: number): boolean {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || this.#bytes + bytes > MAX_WIRE_WINDOW_BYTES) return false;
    this.#bytes += bytes;
    return true;
  }

  /** Takes up to `wantBytes` of credit and returns how much was taken (0 when none is left). */
  take(wantBytes: number): number {
    const n = Math.max(0, Math.min(wantBytes, this.#bytes));
    this.#bytes -= n;
    return n;
  }
}

export interface ReceiveWindowOptions {
  initialWindowBytes: number;
  maxWindowBytes: number;
  /**
   * Whether the initial window is granted at once. The opener announces its window in `open`, so
   * its window is open from the start; the acceptor grants its window only with `accept`.
   */
  isOpen: boolean;
  /**
   * Bytes the peer may send before the window opens (the acceptor's EARLY_DATA_BYTES); 0 for the
   * opener's side, which is open from the start.
   */
  earlyBytes?: number;
}

/**
 * Receive side. All counters are cumulative totals since the stream began, which keeps the invariant
 * simple: the peer may send up to `limitBytes` in total, and `limitBytes - windowBytes` is how much
 * the reader had consumed when we last announced credit.
 */
export class ReceiveWindow {
  #windowBytes: number;
  readonly #maxWindowBytes: number;
  #limitBytes = 0;
  #receivedBytes = 0;
  #consumedBytes = 0;
  #isOpen = false;

  constructor(options: ReceiveWindowOptions) {
    this.#windowBytes = options.initialWindowBytes;
    this.#maxWindowBytes = Math.max(options.maxWindowBytes, options.initialWindowBytes);
    this.#limitBytes = options.isOpen ? 0 : (options.earlyBytes ?? 0);
    if (options.isOpen) this.open();
  }

  /** Current window size (how much the peer may have in flight or buffered at most). */
  get windowBytes(): number {
    return this.#windowBytes;
  }
  /** Total bytes the peer may have sent so far. */
  get limitBytes(): number {
    return this.#limitBytes;
  }
  get receivedBytes(): number {
    return this.#receivedBytes;
  }
  get consumedBytes(): number {
    return this.#consumedBytes;
  }
  /** Received but not yet taken by the reader. */
  get backlogBytes(): number {
    return this.#receivedBytes - this.#consumedBytes;
  }
  get isOpen(): boolean {
    return this.#isOpen;
  }

  /**
   * Grants the initial window; returns the credit to announce: the window, less the early bytes
   * the peer was allowed before (it already counts those). 0 when called again.
   */
  open(): number {
    if (this.#isOpen) return 0;
    this.#isOpen = true;
    const before = this.#limitBytes;
    this.#limitBytes = Math.max(before, this.#consumedBytes + this.#windowBytes);
    return this.#limitBytes - before;
  }

  /** Accounts for an incoming data frame; false (nothing counted) if it goes past the granted limit. */
  receive(bytes: number): boolean {
    if (this.#receivedBytes + bytes > this.#limitBytes) return false;
    this.#receivedBytes += bytes;
    return true;
  }

  /** Records the reader's progress as a total; it never goes back and never passes what arrived. */
  setConsumed(totalBytes: number): void {
    const clamped = Math.min(totalBytes, this.#receivedBytes);
    if (clamped > this.#consumedBytes) this.#consumedBytes = clamped;
  }

  /**
   * Bytes consumed since the last announcement. An update is due when they reach half the window:
   * fewer frames than one per read, yet the sender is refilled before it runs dry (yamux does the
   * same with its `recvWindow / 2` threshold).
   */
  get unannouncedBytes(): number {
    return this.#isOpen ? this.#consumedBytes - (this.#limitBytes - this.#windowBytes) : 0;
  }

  get isUpdateDue(): boolean {
    return this.#isOpen && this.unannouncedBytes * 2 >= this.#windowBytes;
  }

  /**
   * If an update is due, commits it and returns the credit to send; otherwise returns 0.
   *
   * Growth: the window doubles (up to maxWindowBytes, and only if `reserveGrowth` agrees, which is
   * where the session applies its total cap) when the reader keeps up, meaning the backlog is at
   * most a quarter of the window when the update falls due. A reader that stalls (its consumer's
   * socket is slow) leaves half a window or more unread at that point, so its window stays put and a
   * slow consumer cannot make us hold more than it needs. yamux decides with the update interval
   * against the RTT instead; a backlog test needs no clock and gives the same answer for a reader
   * that drains everything at once.
   */
  takeUpdate(reserveGrowth: (extraBytes: number) => boolean = () => true): number {
    if (!this.isUpdateDue) return 0;
    let next = this.#windowBytes;
    if (next < this.#maxWindowBytes && this.backlogBytes * 4 <= this.#windowBytes) {
      const grown = Math.min(next * 2, this.#maxWindowBytes);
      if (reserveGrowth(grown - next)) next = grown;
    }
    // credit = unannounced + growth; both are within one window, so it fits the uint32 field.
    const credit = this.#consumedBytes + next - this.#limitBytes;
    this.#windowBytes = next;
    this.#limitBytes = this.#consumedBytes + next;
    return credit;
  }
}
