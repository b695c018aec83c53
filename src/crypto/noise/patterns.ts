import { ErrorCodes, MeshError } from '../../errors.js';

/** Noise spec rev 34 §7: the tokens a handshake message (or pre-message) is made of. */
export type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss' | 'psk';

export type NoiseHash = 'BLAKE2s' | 'SHA256';

export interface HandshakePattern {
  /** Base pattern name plus modifiers, as it appears in the protocol name (e.g. `XXpsk3`). */
  readonly name: string;
  readonly initiatorPreMessage: readonly Token[];
  readonly responderPreMessage: readonly Token[];
  /** Message i is sent by the initiator when i is even (patterns here all start with `->`). */
  readonly messages: readonly (readonly Token[])[];
  /** True when the pattern has any psk token: then every `e` also runs MixKey (spec §9.2). */
  readonly isPsk: boolean;
}

export interface NoiseProtocol {
  readonly name: string;
  readonly pattern: HandshakePattern;
  readonly dh: '25519';
  readonly cipher: 'ChaChaPoly';
  readonly hash: NoiseHash;
}

interface BasePattern {
  pre: [readonly Token[], readonly Token[]];
  messages: readonly (readonly Token[])[];
}

// Spec §7.4 / §7.5. Only the interactive patterns the agent may use; anything else is refused by
// name rather than run through untested code.
const BASE_PATTERNS: Readonly<Record<string, BasePattern>> = {
  NN: { pre: [[], []], messages: [['e'], ['e', 'ee']] },
  XX: { pre: [[], []], messages: [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']] },
  IK: { pre: [[], ['s']], messages: [['e', 'es', 's', 'ss'], ['e', 'ee', 'se']] },
  KK: { pre: [['s'], ['s']], messages: [['e', 'es', 'ss'], ['e', 'ee', 'se']] },
};

const SUPPORTED = 'Noise_{NN,XX,IK,KK}[pskN[+pskM…]]_25519_ChaChaPoly_{BLAKE2s,SHA256}';

function unsupported(protocolName: string, why: string): MeshError {
  return new MeshError(
    ErrorCodes.INVALID_ARGUMENT,
    `noise protocolName: unsupported '${protocolName}' (${why}); expected ${SUPPORTED}`,
  );
}

/** Builds a pattern from `XX`, `XXpsk3`, `NNpsk0+psk2`… applying the psk modifier rules of spec §9.2. */
export function parsePattern(text: string, protocolName = text): HandshakePattern {
  const m = /^([A-Z0-9]+?)((?:psk\d+)(?:\+psk\d+)*)?$/.exec(text);
  if (m === null) throw unsupported(protocolName, `pattern '${text}' not recognised`);
  const baseName = m[1]!;
  const base = BASE_PATTERNS[baseName];
  if (base === undefined) throw unsupported(protocolName, `handshake pattern '${baseName}'`);
  const messages = base.messages.map((tokens) => [...tokens]);
  const modifiers = m[2] === undefined ? [] : m[2].split('+');
  const seen = new Set<number>();
  for (const modifier of modifiers) {
    const n = Number(modifier.slice(3));
    if (!Number.isSafeInteger(n) || n > messages.length || seen.has(n)) {
      throw unsupported(protocolName, `modifier '${modifier}' does not fit a ${messages.length}-message pattern`);
    }
    seen.add(n);
    // psk0 goes at the start of the first message, pskN (N ≥ 1) at the end of message N.
    if (n === 0) messages[0]!.unshift('psk');
    else messages[n - 1]!.push('psk');
  }
  return {
    name: text,
    initiatorPreMessage: base.pre[0],
    responderPreMessage: base.pre[1],
    messages,
    isPsk: modifiers.length > 0,
  };
}

/** Parses `Noise_<pattern>_<dh>_<cipher>_<hash>` (spec §8); unsupported parts raise INVALID_ARGUMENT. */
export function parseProtocolName(protocolName: string): NoiseProtocol {
  if (typeof protocolName !== 'string') throw unsupported(String(protocolName), 'not a string');
  const parts = protocolName.split('_');
  if (parts.length !== 5 || parts[0] !== 'Noise') {
    throw unsupported(protocolName, 'expected 5 underscore-separated parts starting with Noise');
  }
  const [, patternText, dh, cipher, hash] = parts as [string, string, string, string, string];
  if (dh !== '25519') throw unsupported(protocolName, `DH function '${dh}'`);
  if (cipher !== 'ChaChaPoly') throw unsupported(protocolName, `cipher '${cipher}'`);
  if (hash !== 'BLAKE2s' && hash !== 'SHA256') throw unsupported(protocolName, `hash '${hash}'`);
  return { name: protocolName, pattern: parsePattern(patternText, protocolName), dh, cipher, hash };
}
