import { MAX_BATCH_BYTES, MAX_DATA_FRAME, MAX_FRAMES_PER_BATCH, MAX_RECORDS_PER_GOSSIP, MAX_REVOCATION_LIST_BYTES, MAX_TEXT_FIELD } from './limits.js';
import { bytesField, decodeOrThrow, malformed, textField, uint64ToNumber } from './decode-guard.js';
import { WireTypes } from './schema.js';
import type { NodeRecordWire } from './messages.js';
import { ErrorCodes, MeshError } from '../errors.js';
import { concatBytes } from '../util/bytes.js';

/** One frame of a tunnel, as the rest of the agent sees it: a discriminated union on `kind`. */
export type Frame =
  | { kind: 'open'; streamId: number; service: string; port: number; window: number }
  | { kind: 'accept'; streamId: number; window: number }
  | { kind: 'data'; streamId: number; data: Uint8Array }
  | { kind: 'window'; streamId: number; credit: number }
  | { kind: 'fin'; streamId: number }
  | { kind: 'reset'; streamId: number; code: string; message: string }
  | { kind: 'ping'; id: number }
  | { kind: 'pong'; id: number }
  /** records: signed node records; revocations: the sender's encoded SignedRevocationList, if any. */
  | { kind: 'gossip'; records: NodeRecordWire[]; revocations?: Uint8Array }
  /** A renewed certificate for the receiver, from an admin node (encoded SignedCert). */
  | { kind: 'renewal'; cert: Uint8Array }
  | { kind: 'rekey' }
  | { kind: 'goaway'; code: string; message: string };

export type StreamFrame = Extract<Frame, { streamId: number }>;

export function isStreamFrame(frame: Frame): frame is StreamFrame {
  return 'streamId' in frame;
}

function toProto(frame: Frame): Record<string, unknown> {
  switch (frame.kind) {
    case 'open':
      return { streamId: frame.streamId, open: { service: frame.service, port: frame.port, window: frame.window } };
    case 'accept':
      return { streamId: frame.streamId, accept: { window: frame.window } };
    case 'data':
      return { streamId: frame.streamId, data: frame.data };
    case 'window':
      return { streamId: frame.streamId, windowUpdate: frame.credit };
    case 'fin':
      return { streamId: frame.streamId, fin: {} };
    case 'reset':
      return { streamId: frame.streamId, reset: { code: frame.code, message: frame.message } };
    case 'ping':
      return { ping: { id: frame.id } };
    case 'pong':
      return { pong: { id: frame.id } };
    case 'gossip':
      return { gossip: frame.revocations === undefined ? { records: frame.records } : { records: frame.records, revocations: frame.revocations } };
    case 'renewal':
      return { renewal: { cert: frame.cert } };
    case 'rekey':
      return { rekey: {} };
    case 'goaway':
      return { goAway: { code: frame.code, message: frame.message } };
  }
}

function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function writeVarint(out: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[offset++] = value;
  return offset;
}

// proto/mesh.proto tags: Batch.frames = 1 (length-delimited), Frame.stream_id = 1 (varint),
// Frame.data = 3 (length-delimited).
const TAG_BATCH_FRAMES = 0x0a;
const TAG_FRAME_STREAM_ID = 0x08;
const TAG_FRAME_DATA = 0x1a;

/**
 * The envelope in front of a data frame's payload: `Batch.frames` key and length, then the
 * Frame's stream id and the data key and length. Byte for byte what protobufjs writes for the same
 * frame (field order by number, stream id never 0 on a data frame), so the payload itself can be
 * sealed where it lies instead of being copied into an encode buffer.
 */
function dataFrameHeader(streamId: number, dataLength: number): Uint8Array {
  const frameLength = 1 + varintLength(streamId) + 1 + varintLength(dataLength) + dataLength;
  const header = new Uint8Array(1 + varintLength(frameLength) + (frameLength - dataLength));
  let off = 0;
  header[off++] = TAG_BATCH_FRAMES;
  off = writeVarint(header, off, frameLength);
  header[off++] = TAG_FRAME_STREAM_ID;
  off = writeVarint(header, off, streamId);
  header[off++] = TAG_FRAME_DATA;
  writeVarint(header, off, dataLength);
  return header;
}

/**
 * Encodes frames as the consecutive parts of one Batch (the plaintext of one transport message):
 * a repeated field's entries may be written one after another, so each frame is its own
 * `Batch.frames` entry. Data payloads are referenced, not copied.
 */
export function encodeBatchParts(frames: readonly Frame[]): Uint8Array[] {
  if (frames.length > MAX_FRAMES_PER_BATCH) {
    throw new MeshError(ErrorCodes.FRAME_TOO_LARGE, `batch: ${frames.length} frames, at most ${MAX_FRAMES_PER_BATCH}`);
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  let others: Record<string, unknown>[] = [];
  const flushOthers = (): void => {
    if (others.length === 0) return;
    const bytes = WireTypes.Batch.encode({ frames: others }).finish();
    parts.push(bytes);
    total += bytes.length;
    others = [];
  };
  for (const frame of frames) {
    if (frame.kind === 'data' && frame.streamId > 0 && frame.data.length > 0) {
      flushOthers();
      const header = dataFrameHeader(frame.streamId, frame.data.length);
      parts.push(header, frame.data);
      total += header.length + frame.data.length;
    } else {
      others.push(toProto(frame));
    }
  }
  flushOthers();
  if (total > MAX_BATCH_BYTES) {
    throw new MeshError(ErrorCodes.FRAME_TOO_LARGE, `batch: ${total} bytes, at most ${MAX_BATCH_BYTES}`);
  }
  return parts;
}

/** Encodes frames into one Batch (the plaintext of one transport message). */
export function encodeBatch(frames: readonly Frame[]): Uint8Array {
  const parts = encodeBatchParts(frames);
  return parts.length === 1 ? parts[0]! : concatBytes(...parts);
}

/** Upper bound of the encoded size of a data frame carrying `dataLength` bytes (for packing batches). */
export function dataFrameOverhead(streamId: number): number {
  // frames tag+len (<=4) + stream_id tag+varint (<=6) + data tag+len (<=4)
  return 4 + (streamId < 128 ? 2 : 6) + 4;
}

function decodeFrame(raw: Record<string, unknown>, index: number): Frame {
  const what = `frame[${index}]`;
  const streamId = typeof raw['streamId'] === 'number' ? (raw['streamId'] as number) : 0;
  const body = raw['body'] as string | undefined;
  const needStream = (): number => {
    if (streamId === 0) throw malformed(what, `${body} frame needs a stream id, got 0`);
    return streamId;
  };
  const needNoStream = (): void => {
    if (streamId !== 0) throw malformed(what, `${body} frame is tunnel-level, got stream id ${streamId}`);
  };
  switch (body) {
    case 'open': {
      const open = raw['open'] as Record<string, unknown>;
      const port = (open['port'] as number) ?? 0;
      if (port < 1 || port > 65535) throw malformed(what, `open.port: expected 1..65535, got ${port}`);
      const service = textField(open['service'], `${what}.open.service`, 253);
      if (service.length === 0) throw malformed(what, 'open.service: empty');
      return { kind: 'open', streamId: needStream(), service, port, window: (open['window'] as number) ?? 0 };
    }
    case 'accept':
      return { kind: 'accept', streamId: needStream(), window: ((raw['accept'] as Record<string, unknown>)['window'] as number) ?? 0 };
    case 'data': {
      const data = bytesField(raw['data'], `${what}.data`, undefined, MAX_DATA_FRAME);
      return { kind: 'data', streamId: needStream(), data };
    }
    case 'windowUpdate': {
      const credit = raw['windowUpdate'] as number;
      if (credit === 0) throw malformed(what, 'window_update of 0 bytes');
      return { kind: 'window', streamId: needStream(), credit };
    }
    case 'fin':
      return { kind: 'fin', streamId: needStream() };
    case 'reset': {
      const reset = raw['reset'] as Record<string, unknown>;
      return {
        kind: 'reset',
        streamId: needStream(),
        code: textField(reset['code'], `${what}.reset.code`, 64),
        message: textField(reset['message'], `${what}.reset.message`, MAX_TEXT_FIELD),
      };
    }
    case 'ping':
      needNoStream();
      return { kind: 'ping', id: uint64ToNumber((raw['ping'] as Record<string, unknown>)['id'], `${what}.ping.id`) };
    case 'pong':
      needNoStream();
      return { kind: 'pong', id: uint64ToNumber((raw['pong'] as Record<string, unknown>)['id'], `${what}.pong.id`) };
    case 'gossip': {
      needNoStream();
      const records = ((raw['gossip'] as Record<string, unknown>)['records'] as Record<string, unknown>[]) ?? [];
      if (records.length > MAX_RECORDS_PER_GOSSIP) {
        throw malformed(what, `gossip: ${records.length} records, at most ${MAX_RECORDS_PER_GOSSIP}`);
      }
      const gossip: Frame = {
        kind: 'gossip',
        records: records.map((r, i) => ({
          body: bytesField(r['body'], `${what}.gossip.records[${i}].body`, undefined, 16384),
          signature: bytesField(r['signature'], `${what}.gossip.records[${i}].signature`, 64),
        })),
      };
      const revocations = (raw['gossip'] as Record<string, unknown>)['revocations'];
      if (revocations instanceof Uint8Array && revocations.length > 0) {
        gossip.revocations = bytesField(revocations, `${what}.gossip.revocations`, undefined, MAX_REVOCATION_LIST_BYTES + 128);
      }
      return gossip;
    }
    case 'renewal': {
      needNoStream();
      const cert = bytesField((raw['renewal'] as Record<string, unknown>)['cert'], `${what}.renewal.cert`, undefined, 16384);
      if (cert.length === 0) throw malformed(what, 'renewal without a certificate');
      return { kind: 'renewal', cert };
    }
    case 'rekey':
      needNoStream();
      return { kind: 'rekey' };
    case 'goAway': {
      needNoStream();
      const goAway = raw['goAway'] as Record<string, unknown>;
      return {
        kind: 'goaway',
        code: textField(goAway['code'], `${what}.go_away.code`, 64),
        message: textField(goAway['message'], `${what}.go_away.message`, MAX_TEXT_FIELD),
      };
    }
    default:
      throw malformed(what, 'no known body (empty frame or a newer protocol)');
  }
}

/** Decodes and validates one Batch; any defect raises MESH_ERR_MALFORMED_FRAME. */
export function decodeBatch(bytes: Uint8Array): Frame[] {
  if (bytes.length > MAX_BATCH_BYTES) {
    throw new MeshError(ErrorCodes.FRAME_TOO_LARGE, `batch: ${bytes.length} bytes, at most ${MAX_BATCH_BYTES}`, {
      wireReason: 'too-large',
    });
  }
  const raw = decodeOrThrow(WireTypes.Batch, bytes, 'batch');
  const frames = (raw['frames'] as Record<string, unknown>[] | undefined) ?? [];
  if (frames.length === 0) throw malformed('batch', 'no frames');
  if (frames.length > MAX_FRAMES_PER_BATCH) throw malformed('batch', `${frames.length} frames, at most ${MAX_FRAMES_PER_BATCH}`);
  return frames.map(decodeFrame);
}
