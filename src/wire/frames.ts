import { isUtf8 } from 'node:buffer';
import { MAX_BATCH_BYTES, MAX_DATA_FRAME, MAX_FRAMES_PER_BATCH, MAX_RECORDS_PER_GOSSIP, MAX_REVOCATION_LIST_BYTES, MAX_TEXT_FIELD } from './limits.js';
import { bytesField, malformed, textField, uint64ToNumber } from './decode-guard.js';
import { decodeMessage, encodeMessage } from './proto-codec.js';
import { ProtoReader, WireType } from './proto-reader.js';
import { varintLength, writeVarint } from './varint.js';
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
/** The Frame of one kind. */
export type FrameOf<K extends Frame['kind']> = Extract<Frame, { kind: K }>;

/**
 * Every frame the agent makes (to send, or decoded) is built here, with the fields of every kind in
 * one order, the ones its kind does not use left undefined, so that V8 gives all frames one hidden
 * class. With one object literal per kind they had twelve. The data path's functions (batching,
 * encoding, dispatch) were optimised for the kinds they had seen and thrown back to the interpreter
 * ("wrong map") when another turned up, and that kept happening: V8 holds a hidden class only while
 * an object uses it, so the class of a ping died in the full collections between two pings (10 s),
 * each ping came with a new one and deoptimised about ten hot functions in each agent. Re-optimising
 * them took CPU from the data path, and until then it ran interpreted.
 */
function makeFrame(
  kind: Frame['kind'],
  streamId: number | undefined,
  data: Uint8Array | undefined,
  service: string | undefined,
  port: number | undefined,
  window: number | undefined,
  credit: number | undefined,
  code: string | undefined,
  message: string | undefined,
  id: number | undefined,
  records: NodeRecordWire[] | undefined,
  revocations: Uint8Array | undefined,
  cert: Uint8Array | undefined,
): Frame {
  return { kind, streamId, data, service, port, window, credit, code, message, id, records, revocations, cert } as unknown as Frame;
}

export function openFrame(streamId: number, service: string, port: number, window: number): FrameOf<'open'> {
  return makeFrame('open', streamId, undefined, service, port, window, undefined, undefined, undefined, undefined, undefined, undefined, undefined) as FrameOf<'open'>;
}

export function acceptFrame(streamId: number, window: number): FrameOf<'accept'> {
  return makeFrame('accept', streamId, undefined, undefined, undefined, window, undefined, undefined, undefined, undefined, undefined, undefined, undefined) as FrameOf<'accept'>;
}

export function dataFrame(streamId: number, data: Uint8Array): FrameOf<'data'> {
  return makeFrame('data', streamId, data, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined) as FrameOf<'data'>;
}

export function windowFrame(streamId: number, credit: number): FrameOf<'window'> {
  return makeFrame('window', streamId, undefined, undefined, undefined, undefined, credit, undefined, undefined, undefined, undefined, undefined, undefined) as FrameOf<'window'>;
}

export function finFrame(streamId: number): FrameOf<'fin'> {
  return makeFrame('fin', streamId, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined) as FrameOf<'fin'>;
}

export function resetFrame(streamId: number, code: string, message: string): FrameOf<'reset'> {
  return makeFrame('reset', streamId, undefined, undefined, undefined, undefined, undefined, code, message, undefined, undefined, undefined, undefined) as FrameOf<'reset'>;
}

export function pingFrame(id: number): FrameOf<'ping'> {
  return makeFrame('ping', undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, id, undefined, undefined, undefined) as FrameOf<'ping'>;
}

export function pongFrame(id: number): FrameOf<'pong'> {
  return makeFrame('pong', undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, id, undefined, undefined, undefined) as FrameOf<'pong'>;
}

/** records: signed node records; revocations: the sender's encoded SignedRevocationList, if any. */
export function gossipFrame(records: NodeRecordWire[], revocations?: Uint8Array): FrameOf<'gossip'> {
  return makeFrame('gossip', undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, records, revocations, undefined) as FrameOf<'gossip'>;
}

export function renewalFrame(cert: Uint8Array): FrameOf<'renewal'> {
  return makeFrame('renewal', undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, cert) as FrameOf<'renewal'>;
}

export function rekeyFrame(): FrameOf<'rekey'> {
  return makeFrame('rekey', undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined) as FrameOf<'rekey'>;
}

export function goawayFrame(code: string, message: string): FrameOf<'goaway'> {
  return makeFrame('goaway', undefined, undefined, undefined, undefined, undefined, undefined, code, message, undefined, undefined, undefined, undefined) as FrameOf<'goaway'>;
}

export function isStreamFrame(frame: Frame): frame is StreamFrame {
  // frames from makeFrame carry every field, so `'streamId' in frame` would be true for all of them
  return (frame as { streamId?: number }).streamId !== undefined;
}

/**
 * The message object of a frame for the schema codec (proto-codec.ts), which encodes the
 * tunnel-level frames; protobufjs takes the same object, which the tests use as their reference.
 */
export function frameToProto(frame: Frame): Record<string, unknown> {
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

// proto/mesh.proto tags: Batch.frames = 1 (length-delimited), Frame.stream_id = 1 (varint),
// Frame.data = 3 (length-delimited).
const TAG_BATCH_FRAMES = 0x0a;
const TAG_FRAME_STREAM_ID = 0x08;
const TAG_FRAME_DATA = 0x1a;

// Frame fields (proto/mesh.proto): the stream frames, which the decoder below reads itself, and the
// tunnel-level ones (ping = 8 … renewal = 13: a few per minute), whose frames go to proto-codec.ts.
const FIELD_STREAM_ID = 1;
const FIELD_OPEN = 2;
const FIELD_DATA = 3;
const FIELD_WINDOW_UPDATE = 4;
const FIELD_FIN = 5;
const FIELD_RESET = 6;
const FIELD_ACCEPT = 7;
const FIRST_TUNNEL_FIELD = 8;
const LAST_TUNNEL_FIELD = 13;

/** A field's key byte (field numbers below 16 fit one byte). */
function fieldKey(field: number, wireType: number): number {
  return (field << 3) | wireType;
}

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

type ControlFrame = Extract<Frame, { kind: 'open' | 'accept' | 'window' | 'fin' | 'reset' }>;

function isControlFrame(frame: Frame): frame is ControlFrame {
  return frame.kind === 'open' || frame.kind === 'accept' || frame.kind === 'window' || frame.kind === 'fin' || frame.kind === 'reset';
}

function isDataFastPath(frame: Frame): frame is FrameOf<'data'> {
  return frame.kind === 'data' && frame.streamId > 0 && frame.data.length > 0;
}

/** Size of a length-delimited field: key, length, content. */
function lenFieldSize(contentLength: number): number {
  return 1 + varintLength(contentLength) + contentLength;
}

// protobufjs leaves out proto3 fields that hold their default (0, ''), except the oneof member
// that is the body; the hand encoder does the same, so that both write the same bytes.

/** Size of an optional varint field (0 bytes when the value is 0, the default). */
function varintFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintLength(value);
}

/** Size of an optional string field (0 bytes when empty, the default). */
function textFieldSize(text: string): number {
  return text.length === 0 ? 0 : lenFieldSize(Buffer.byteLength(text));
}

/** Length of a control frame's sub-message (StreamOpen, StreamAccept, StreamReset; 0 for fin). */
function subMessageLength(frame: ControlFrame): number {
  switch (frame.kind) {
    case 'open':
      return textFieldSize(frame.service) + varintFieldSize(frame.port) + varintFieldSize(frame.window);
    case 'accept':
      return varintFieldSize(frame.window);
    case 'reset':
      return textFieldSize(frame.code) + textFieldSize(frame.message);
    case 'window':
    case 'fin':
      return 0;
  }
}

/** Size of a control Frame: its stream id field and its body field. */
function controlFrameSize(frame: ControlFrame, subLength: number): number {
  const body = frame.kind === 'window' ? 1 + varintLength(frame.credit) : lenFieldSize(subLength);
  return varintFieldSize(frame.streamId) + body;
}

function writeVarintField(out: Buffer, offset: number, field: number, value: number): number {
  if (value === 0) return offset;
  out[offset++] = fieldKey(field, WireType.VARINT);
  return writeVarint(out, offset, value);
}

function writeTextField(out: Buffer, offset: number, field: number, text: string): number {
  if (text.length === 0) return offset;
  out[offset++] = fieldKey(field, WireType.LEN);
  offset = writeVarint(out, offset, Buffer.byteLength(text));
  return offset + out.write(text, offset, 'utf8');
}

/** Writes a control Frame (stream id, then body; as protobufjs orders them); returns the new offset. */
function writeControlFrame(out: Buffer, offset: number, frame: ControlFrame, subLength: number): number {
  offset = writeVarintField(out, offset, FIELD_STREAM_ID, frame.streamId);
  switch (frame.kind) {
    case 'window':
      out[offset++] = fieldKey(FIELD_WINDOW_UPDATE, WireType.VARINT);
      return writeVarint(out, offset, frame.credit);
    case 'fin':
      out[offset++] = fieldKey(FIELD_FIN, WireType.LEN);
      out[offset++] = 0;
      return offset;
    case 'accept':
      out[offset++] = fieldKey(FIELD_ACCEPT, WireType.LEN);
      offset = writeVarint(out, offset, subLength);
      return writeVarintField(out, offset, 1, frame.window);
    case 'open':
      out[offset++] = fieldKey(FIELD_OPEN, WireType.LEN);
      offset = writeVarint(out, offset, subLength);
      offset = writeTextField(out, offset, 1, frame.service);
      offset = writeVarintField(out, offset, 2, frame.port);
      return writeVarintField(out, offset, 3, frame.window);
    case 'reset':
      out[offset++] = fieldKey(FIELD_RESET, WireType.LEN);
      offset = writeVarint(out, offset, subLength);
      offset = writeTextField(out, offset, 1, frame.code);
      return writeTextField(out, offset, 2, frame.message);
  }
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
  // consecutive frames of one kind of encoding, written together as one part
  let controls: ControlFrame[] = [];
  let others: Record<string, unknown>[] = [];
  const flushControls = (): void => {
    if (controls.length === 0) return;
    const subLengths = controls.map(subMessageLength);
    const frameSizes = controls.map((frame, i) => controlFrameSize(frame, subLengths[i]!));
    const size = frameSizes.reduce((sum, frameSize) => sum + lenFieldSize(frameSize), 0);
    const out = Buffer.allocUnsafe(size);
    let offset = 0;
    controls.forEach((frame, i) => {
      out[offset++] = TAG_BATCH_FRAMES;
      offset = writeVarint(out, offset, frameSizes[i]!);
      offset = writeControlFrame(out, offset, frame, subLengths[i]!);
    });
    parts.push(out);
    total += size;
    controls = [];
  };
  const flushOthers = (): void => {
    if (others.length === 0) return;
    const bytes = encodeMessage(WireTypes.Batch, { frames: others });
    parts.push(bytes);
    total += bytes.length;
    others = [];
  };
  for (const frame of frames) {
    if (isDataFastPath(frame)) {
      flushControls();
      flushOthers();
      const header = dataFrameHeader(frame.streamId, frame.data.length);
      parts.push(header, frame.data);
      total += header.length + frame.data.length;
    } else if (isControlFrame(frame)) {
      flushOthers();
      controls.push(frame);
    } else {
      flushControls();
      others.push(frameToProto(frame));
    }
  }
  flushControls();
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

/**
 * Validates one Frame as proto-codec.ts (and protobufjs, the tests' reference) decodes it: the
 * oneof's member named under `body`. Turns it into a Frame; see frameFromBody.
 */
export function frameFromProto(raw: Record<string, unknown>, index: number): Frame {
  const streamId = typeof raw['streamId'] === 'number' ? (raw['streamId'] as number) : 0;
  const body = raw['body'] as string | undefined;
  return frameFromBody(streamId, body, body === undefined ? undefined : raw[body], index);
}

function frameLabel(index: number): string {
  return `frame[${index}]`;
}

function streamIdOf(streamId: number, body: string | undefined, index: number): number {
  if (streamId === 0) throw malformed(frameLabel(index), `${body} frame needs a stream id, got 0`);
  return streamId;
}

function noStreamId(streamId: number, body: string | undefined, index: number): void {
  if (streamId !== 0) throw malformed(frameLabel(index), `${body} frame is tunnel-level, got stream id ${streamId}`);
}

/**
 * Validates one decoded frame, given as its stream id, the name of its oneof body and that body's
 * value, and turns it into a Frame. The one place a frame's content rules live. Error texts name the
 * frame by its index in the batch. A data frame's label is built only when it is refused; the other
 * kinds build the labels they pass to textField/bytesField for every frame (one each, not per byte).
 */
function frameFromBody(streamId: number, body: string | undefined, value: unknown, index: number): Frame {
  switch (body) {
    case 'open': {
      const open = value as Record<string, unknown>;
      const port = (open['port'] as number) ?? 0;
      if (port < 1 || port > 65535) throw malformed(frameLabel(index), `open.port: expected 1..65535, got ${port}`);
      const service = textField(open['service'], `${frameLabel(index)}.open.service`, 253);
      if (service.length === 0) throw malformed(frameLabel(index), 'open.service: empty');
      return openFrame(streamIdOf(streamId, body, index), service, port, (open['window'] as number) ?? 0);
    }
    case 'accept':
      return acceptFrame(streamIdOf(streamId, body, index), ((value as Record<string, unknown>)['window'] as number) ?? 0);
    case 'data': {
      // the common case checked here, so that the error label is built only for a refused frame
      const isFit = value instanceof Uint8Array && value.length <= MAX_DATA_FRAME;
      const data = isFit ? value : bytesField(value, `${frameLabel(index)}.data`, undefined, MAX_DATA_FRAME);
      return dataFrame(streamIdOf(streamId, body, index), data);
    }
    case 'windowUpdate': {
      const credit = value as number;
      if (credit === 0) throw malformed(frameLabel(index), 'window_update of 0 bytes');
      return windowFrame(streamIdOf(streamId, body, index), credit);
    }
    case 'fin':
      return finFrame(streamIdOf(streamId, body, index));
    case 'reset': {
      const reset = value as Record<string, unknown>;
      return resetFrame(streamIdOf(streamId, body, index), textField(reset['code'], `${frameLabel(index)}.reset.code`, 64), textField(reset['message'], `${frameLabel(index)}.reset.message`, MAX_TEXT_FIELD));
    }
    case 'ping':
      noStreamId(streamId, body, index);
      return pingFrame(uint64ToNumber((value as Record<string, unknown>)['id'], `${frameLabel(index)}.ping.id`));
    case 'pong':
      noStreamId(streamId, body, index);
      return pongFrame(uint64ToNumber((value as Record<string, unknown>)['id'], `${frameLabel(index)}.pong.id`));
    case 'gossip': {
      noStreamId(streamId, body, index);
      const records = ((value as Record<string, unknown>)['records'] as Record<string, unknown>[]) ?? [];
      if (records.length > MAX_RECORDS_PER_GOSSIP) {
        throw malformed(frameLabel(index), `gossip: ${records.length} records, at most ${MAX_RECORDS_PER_GOSSIP}`);
      }
      const checked = records.map((r, i) => ({
        body: bytesField(r['body'], `${frameLabel(index)}.gossip.records[${i}].body`, undefined, 16384),
        signature: bytesField(r['signature'], `${frameLabel(index)}.gossip.records[${i}].signature`, 64),
      }));
      const revocations = (value as Record<string, unknown>)['revocations'];
      const hasRevocations = revocations instanceof Uint8Array && revocations.length > 0;
      return gossipFrame(checked, hasRevocations ? bytesField(revocations, `${frameLabel(index)}.gossip.revocations`, undefined, MAX_REVOCATION_LIST_BYTES + 128) : undefined);
    }
    case 'renewal': {
      noStreamId(streamId, body, index);
      const cert = bytesField((value as Record<string, unknown>)['cert'], `${frameLabel(index)}.renewal.cert`, undefined, 16384);
      if (cert.length === 0) throw malformed(frameLabel(index), 'renewal without a certificate');
      return renewalFrame(cert);
    }
    case 'rekey':
      noStreamId(streamId, body, index);
      return rekeyFrame();
    case 'goAway': {
      noStreamId(streamId, body, index);
      const goAway = value as Record<string, unknown>;
      return goawayFrame(textField(goAway['code'], `${frameLabel(index)}.go_away.code`, 64), textField(goAway['message'], `${frameLabel(index)}.go_away.message`, MAX_TEXT_FIELD));
    }
    default:
      throw malformed(frameLabel(index), 'no known body (empty frame or a newer protocol)');
  }
}

/** A length-delimited string field's text; invalid UTF-8 is malformed (protobufjs refuses it too). */
function readText(reader: ProtoReader): string {
  const end = reader.lengthEnd();
  const start = reader.pos;
  reader.pos = end;
  const bytes = reader.bytes.subarray(start, end);
  if (!isUtf8(bytes)) throw reader.malformed('a string field that is not valid UTF-8');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
}

/**
 * Reads the sub-message that ends at `end` (StreamOpen, StreamAccept, StreamReset): each field
 * number in `fields` maps to the property it sets, a string for LEN fields and a number for
 * VARINT ones; unknown fields are skipped. Starts from `defaults`, proto3's values for absent
 * fields.
 */
function readMessage<T extends Record<string, string | number>>(reader: ProtoReader, end: number, defaults: T, fields: readonly (keyof T | undefined)[]): T {
  const out: Record<string, string | number> = { ...defaults };
  const outerEnd = reader.end;
  reader.end = end;
  while (!reader.isDone) {
    const key = reader.key();
    const name = fields[key >>> 3] as string | undefined;
    if (name === undefined) {
      reader.skip(key & 7);
    } else if (typeof defaults[name] === 'string') {
      reader.expect(key, WireType.LEN);
      out[name] = readText(reader);
    } else {
      reader.expect(key, WireType.VARINT);
      out[name] = reader.uint32();
    }
  }
  reader.end = outerEnd;
  return out as T;
}

const OPEN_FIELDS = [undefined, 'service', 'port', 'window'] as const;
const ACCEPT_FIELDS = [undefined, 'window'] as const;
const RESET_FIELDS = [undefined, 'code', 'message'] as const;

/** A stream frame as read off the wire, before frameFromBody checks it. */
interface RawStreamFrame {
  streamId: number;
  /** The oneof body that came last (the protobuf rules say it wins), as protobufjs names it. */
  body: string | undefined;
  value: unknown;
}

/**
 * Reads the Frame between reader.pos and `end` into `out`, as protobufjs would read it, and returns
 * true; returns false when the last body field is a tunnel-level one, which proto-codec.ts decodes
 * instead. `out` is one object for the whole batch, not a new object with a property named after
 * each body, which gave every kind of frame its own hidden class.
 */
function readStreamFrame(reader: ProtoReader, end: number, out: RawStreamFrame): boolean {
  const outerEnd = reader.end;
  reader.end = end;
  let streamId = 0;
  let body: string | undefined;
  let value: unknown;
  let isTunnelLevel = false;
  while (!reader.isDone) {
    const key = reader.key();
    const field = key >>> 3;
    switch (field) {
      case FIELD_STREAM_ID:
        reader.expect(key, WireType.VARINT);
        streamId = reader.uint32();
        continue;
      case FIELD_DATA: {
        reader.expect(key, WireType.LEN);
        const dataEnd = reader.lengthEnd();
        value = reader.bytes.subarray(reader.pos, dataEnd);
        reader.pos = dataEnd;
        body = 'data';
        break;
      }
      case FIELD_WINDOW_UPDATE:
        reader.expect(key, WireType.VARINT);
        value = reader.uint32();
        body = 'windowUpdate';
        break;
      case FIELD_OPEN:
        reader.expect(key, WireType.LEN);
        value = readMessage(reader, reader.lengthEnd(), { service: '', port: 0, window: 0 }, OPEN_FIELDS);
        body = 'open';
        break;
      case FIELD_ACCEPT:
        reader.expect(key, WireType.LEN);
        value = readMessage(reader, reader.lengthEnd(), { window: 0 }, ACCEPT_FIELDS);
        body = 'accept';
        break;
      case FIELD_RESET:
        reader.expect(key, WireType.LEN);
        value = readMessage(reader, reader.lengthEnd(), { code: '', message: '' }, RESET_FIELDS);
        body = 'reset';
        break;
      case FIELD_FIN:
        reader.expect(key, WireType.LEN);
        reader.skip(WireType.LEN); // StreamFin has no fields; a newer peer's are ignored
        value = {};
        body = 'fin';
        break;
      default:
        reader.skip(key & 7);
        if (field >= FIRST_TUNNEL_FIELD && field <= LAST_TUNNEL_FIELD) {
          isTunnelLevel = true;
          body = undefined;
        }
        continue;
    }
    isTunnelLevel = false;
  }
  reader.end = outerEnd;
  if (isTunnelLevel) return false;
  out.streamId = streamId;
  out.body = body;
  out.value = value;
  return true;
}

/**
 * Decodes and validates one Batch; any defect raises MESH_ERR_MALFORMED_FRAME.
 *
 * Stream frames (every frame of a connection's life) are read by hand: a generic decoder builds a
 * message object per frame (protobufjs' also deleted the other oneof members on each body it set,
 * which was 1.5-2 % of an agent's CPU in the new-connections benchmark). Tunnel-level frames go to
 * the schema codec (proto-codec.ts); both end in frameFromBody, so the rules for a frame's content
 * are the same.
 */
export function decodeBatch(bytes: Uint8Array): Frame[] {
  if (bytes.length > MAX_BATCH_BYTES) {
    throw new MeshError(ErrorCodes.FRAME_TOO_LARGE, `batch: ${bytes.length} bytes, at most ${MAX_BATCH_BYTES}`, {
      wireReason: 'too-large',
    });
  }
  const frames: Frame[] = [];
  const reader = new ProtoReader(bytes, 'batch', 'frame');
  const raw: RawStreamFrame = { streamId: 0, body: undefined, value: undefined };
  while (!reader.isDone) {
    const key = reader.key();
    if (key >>> 3 !== TAG_BATCH_FRAMES >>> 3) {
      reader.skip(key & 7);
      continue;
    }
    reader.expect(key, WireType.LEN);
    if (frames.length === MAX_FRAMES_PER_BATCH) throw malformed('batch', `at least ${MAX_FRAMES_PER_BATCH + 1} frames, at most ${MAX_FRAMES_PER_BATCH}`);
    const end = reader.lengthEnd();
    const start = reader.pos;
    reader.item = frames.length;
    const isStreamLevel = readStreamFrame(reader, end, raw);
    const frame = isStreamLevel
      ? frameFromBody(raw.streamId, raw.body, raw.value, frames.length)
      : frameFromProto(decodeMessage(WireTypes.Frame, bytes.subarray(start, end), frameLabel(frames.length)), frames.length);
    reader.item = -1;
    reader.pos = end;
    frames.push(frame);
  }
  if (frames.length === 0) throw malformed('batch', 'no frames');
  return frames;
}
