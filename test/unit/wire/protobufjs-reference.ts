import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ErrorCodes, MeshError } from '../../../src/errors.js';

/**
 * protobufjs reading proto/mesh.proto: the independent implementation the agent's own codec
 * (src/wire/proto-codec.ts, hand-written stream frames in frames.ts) is checked against. A
 * development dependency only; the agent does not load it.
 */
export const PROTO_PATH = fileURLToPath(new URL('../../../proto/mesh.proto', import.meta.url));

const root = protobuf.parse(readFileSync(PROTO_PATH, 'utf8'), { keepCase: false }).root;

/** Every message of mesh.proto as protobufjs reflects it, by short name. */
export const ReferenceTypes: Record<string, protobuf.Type> = Object.fromEntries(
  (root.lookup('osmoda.mesh.v1') as protobuf.Namespace).nestedArray.filter((n): n is protobuf.Type => n instanceof protobuf.Type).map((t) => [t.name, t]),
);

export function referenceType(name: string): protobuf.Type {
  const type = ReferenceTypes[name];
  if (type === undefined) throw new Error(`mesh.proto has no message ${name}`);
  return type;
}

/** protobufjs' bytes for `value` as message `name`. */
export function referenceEncode(name: string, value: object): Uint8Array {
  return referenceType(name).encode(value).finish();
}

/**
 * protobufjs' reading of `bytes` as message `name`, as plain data (uint64 as numbers when they fit
 * 53 bits, bytes as Buffers, absent fields with their defaults, the oneof's member under its name);
 * what it throws becomes MESH_ERR_MALFORMED_FRAME, as the agent's decoders report it.
 */
export function referenceDecode(name: string, bytes: Uint8Array): Record<string, unknown> {
  const type = referenceType(name);
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (err) {
    throw new MeshError(ErrorCodes.MALFORMED_FRAME, `${name}: malformed protobuf (${(err as Error).message})`, { cause: err, wireReason: 'malformed' });
  }
  return type.toObject(message, { longs: Number, bytes: Buffer, defaults: true, arrays: true, oneofs: true }) as Record<string, unknown>;
}
