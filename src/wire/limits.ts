/** Sizes fixed by the protocol (SPEC §2 tunnel, §4). */

/** A Noise transport message is at most 65535 bytes (Noise spec §3). */
export const NOISE_MAX_MESSAGE = 65535;
/** AEAD tag added by ChaChaPoly. */
export const NOISE_TAG_BYTES = 16;
/** Largest plaintext (an encoded Batch) one transport message can carry. */
export const MAX_BATCH_BYTES = NOISE_MAX_MESSAGE - NOISE_TAG_BYTES;
/**
 * Largest data payload in one frame: leaves room for the Batch/Frame envelope (tags, stream id,
 * length prefixes: < 32 bytes) so that one full data frame always fits one transport message.
 */
export const MAX_DATA_FRAME = MAX_BATCH_BYTES - 64;
/** Frames per batch: bounds the work one message can ask for (SPEC §4 "frames per message"). */
export const MAX_FRAMES_PER_BATCH = 4096;
/** Gossip records per frame and per join answer. */
export const MAX_RECORDS_PER_GOSSIP = 1024;
/** Longest service name, reason or code string accepted from a peer. */
export const MAX_TEXT_FIELD = 1024;
/** Revoked nodes in one revocation list: the list travels in one gossip frame (one message). */
export const MAX_REVOKED_NODES = 256;
/** Largest encoded revocation list (body): fits a transport message beside a few records. */
export const MAX_REVOCATION_LIST_BYTES = 32_768;
