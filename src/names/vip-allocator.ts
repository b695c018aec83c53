/**
 * One stable virtual IP per service name inside a loopback CIDR (SPEC §2 names: Linux routes all of
 * 127/8 to lo, so a VIP needs no interface setup). Pure: no I/O, no clock.
 *
 * The preferred slot is sha256(name) mod size, so agents on different nodes that see the same
 * services mostly agree on the VIP without talking; a collision probes linearly to the next free
 * slot. The agent persists `toJSON()` and restores with `fromJSON()` so a VIP that had to probe keeps
 * its address across restarts whatever order services appear in next time.
 */
import { createHash } from 'node:crypto';
import { MeshError, ErrorCodes } from '../errors.js';

export const DEFAULT_VIP_CIDR = '127.77.0.0/16';
/** Offsets from the network address kept out of allocation: x.x.0.1 and x.x.0.53 (the DNS server). */
const RESERVED_OFFSETS = [1, 53] as const;
const MIN_PREFIX = 8;
const MAX_PREFIX = 30;
const MAX_NAME_CHARS = 253;
const JSON_VERSION = 1;

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
  /** Number of addresses, network and broadcast included. */
  size: number;
}

export function ipv4ToInt(text: string): number {
  const m = typeof text === 'string' ? /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text) : null;
  if (m === null) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `ipv4 address: expected a dotted quad like 127.77.0.5, got '${String(text).slice(0, 40)}'`);
  let value = 0;
  for (const part of m.slice(1)) {
    // Leading zeros are refused: some parsers read them as octal, so '127.077.0.1' is ambiguous.
    if ((part.length > 1 && part.startsWith('0')) || Number(part) > 255) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `ipv4 address: octet '${part}' in '${text}' must be 0..255 without leading zeros`);
    }
    value = value * 256 + Number(part);
  }
  return value;
}

export function intToIpv4(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `ipv4 integer: expected 0..4294967295, got ${value}`);
  }
  return `${(value >>> 24) & 0xff}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`;
}

/** 'a.b.c.d/n' with the host bits zero (a set host bit is almost always a typo for another range). */
export function parseCidr(text: string): Cidr {
  const field = 'vip cidr';
  if (typeof text !== 'string') throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: expected a string like ${DEFAULT_VIP_CIDR}, got ${typeof text}`);
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (m === null) throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: expected address/prefix like ${DEFAULT_VIP_CIDR}, got '${text.slice(0, 40)}'`);
  let network: number;
  try {
    network = ipv4ToInt(m[1]!);
  } catch (err) {
    throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: '${text}' has a bad address`, { cause: err });
  }
  const prefix = Number(m[2]);
  if (prefix > 32) throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: prefix in '${text}' must be 0..32, got ${prefix}`);
  const size = 2 ** (32 - prefix);
  if (network % size !== 0) {
    const aligned = network - (network % size);
    throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: '${text}' has host bits set; expected ${intToIpv4(aligned)}/${prefix}`);
  }
  return { network, prefix, size };
}

export interface VipAllocatorInit {
  /** Default 127.77.0.0/16. Must lie inside 127.0.0.0/8 with a prefix of 8..30. */
  cidr?: string;
  /** Further addresses never handed out (e.g. a DNS listen address moved off x.x.0.53). */
  reserved?: readonly string[];
}

export interface VipEntry {
  name: string;
  vip: string;
}

export interface VipAllocatorJson {
  version: 1;
  cidr: string;
  /** service name → VIP */
  entries: Record<string, string>;
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_CHARS) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `service name: expected 1..${MAX_NAME_CHARS} characters, got ${typeof name === 'string' ? `'${name.slice(0, 40)}' (${name.length})` : typeof name}`,
    );
  }
  // DNS compares names without case, so 'Cache' and 'cache' must share one VIP.
  return name.toLowerCase();
}

export class VipAllocator {
  readonly cidr: string;
  private readonly range: Cidr;
  private readonly reserved = new Set<number>();
  private readonly byName = new Map<string, number>();
  private readonly byOffset = new Map<number, string>();

  constructor(init: VipAllocatorInit = {}) {
    this.cidr = init.cidr ?? DEFAULT_VIP_CIDR;
    this.range = parseCidr(this.cidr);
    const { network, prefix, size } = this.range;
    const loopback = 127 * 2 ** 24;
    if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip cidr: prefix of '${this.cidr}' must be ${MIN_PREFIX}..${MAX_PREFIX}, got ${prefix}`);
    }
    if (network < loopback || network + size > loopback + 2 ** 24) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip cidr: '${this.cidr}' must lie inside 127.0.0.0/8 (only loopback addresses need no interface setup)`);
    }
    this.reserved.add(0);
    this.reserved.add(size - 1);
    for (const off of RESERVED_OFFSETS) if (off < size) this.reserved.add(off);
    for (const addr of init.reserved ?? []) {
      let value: number;
      try {
        value = ipv4ToInt(addr);
      } catch (err) {
        throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip reserved: '${String(addr).slice(0, 40)}' is not an IPv4 address`, { cause: err });
      }
      if (value < network || value >= network + size) {
        throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip reserved: ${addr} is outside ${this.cidr}`);
      }
      this.reserved.add(value - network);
    }
  }

  /** Number of addresses that can be handed out in total. */
  get capacity(): number {
    return this.range.size - this.reserved.size;
  }

  get size(): number {
    return this.byName.size;
  }

  /** The VIP for `name`, allocating it on first use; the same name always gets the same VIP. */
  allocate(name: string): string {
    const key = checkName(name);
    const existing = this.byName.get(key);
    if (existing !== undefined) return this.toAddress(existing);
    if (this.byName.size >= this.capacity) {
      throw new MeshError(
        ErrorCodes.VIP_EXHAUSTED,
        `vip: all ${this.capacity} addresses in ${this.cidr} are taken, cannot allocate one for '${key}' (use a larger vip cidr)`,
      );
    }
    const { size } = this.range;
    let offset = preferredOffset(key, size);
    // Terminates within `size` steps: the capacity check above guarantees a free slot exists.
    for (let step = 0; step < size; step++) {
      if (!this.reserved.has(offset) && !this.byOffset.has(offset)) {
        this.byName.set(key, offset);
        this.byOffset.set(offset, key);
        return this.toAddress(offset);
      }
      offset = (offset + 1) % size;
    }
    throw new MeshError(ErrorCodes.INTERNAL, `vip: no free slot found in ${this.cidr} although ${this.byName.size} of ${this.capacity} are used`);
  }

  /** Frees the VIP of `name`; returns whether it had one. */
  release(name: string): boolean {
    const key = checkName(name);
    const offset = this.byName.get(key);
    if (offset === undefined) return false;
    this.byName.delete(key);
    this.byOffset.delete(offset);
    return true;
  }

  lookup(name: string): string | undefined {
    const offset = this.byName.get(checkName(name));
    return offset === undefined ? undefined : this.toAddress(offset);
  }

  /** The name holding `vip`, if any. */
  nameOf(vip: string): string | undefined {
    const value = ipv4ToInt(vip);
    return this.byOffset.get(value - this.range.network);
  }

  isReserved(vip: string): boolean {
    const value = ipv4ToInt(vip);
    return this.reserved.has(value - this.range.network);
  }

  /** Sorted by name, so persisted files and status output are stable. */
  entries(): VipEntry[] {
    return [...this.byName.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, offset]) => ({ name, vip: this.toAddress(offset) }));
  }

  toJSON(): VipAllocatorJson {
    const entries: Record<string, string> = {};
    for (const e of this.entries()) entries[e.name] = e.vip;
    return { version: JSON_VERSION, cidr: this.cidr, entries };
  }

  /**
   * Restores a persisted map exactly (including VIPs that probed past their preferred slot).
   * Accepts the object or its JSON text; anything inconsistent is INVALID_CONFIG naming the entry.
   */
  static fromJSON(json: unknown, init: Omit<VipAllocatorInit, 'cidr'> = {}): VipAllocator {
    let value = json;
    if (typeof value === 'string') {
      try {
        value = JSON.parse(value) as unknown;
      } catch (err) {
        throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip map: not valid JSON`, { cause: err });
      }
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip map: expected an object {version, cidr, entries}, got ${Array.isArray(value) ? 'array' : typeof value}`);
    }
    const obj = value as Record<string, unknown>;
    if (obj['version'] !== JSON_VERSION) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip map: version must be ${JSON_VERSION}, got ${JSON.stringify(obj['version'])}`);
    }
    if (typeof obj['cidr'] !== 'string') {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip map: cidr must be a string, got ${typeof obj['cidr']}`);
    }
    const entries = obj['entries'];
    if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `vip map: entries must be an object of name → vip`);
    }
    const allocator = new VipAllocator({ ...init, cidr: obj['cidr'] });
    for (const [rawName, vip] of Object.entries(entries as Record<string, unknown>)) {
      const field = `vip map: entries['${rawName.slice(0, 40)}']`;
      let key: string;
      let value32: number;
      try {
        key = checkName(rawName);
        if (typeof vip !== 'string') throw new TypeError(`expected a string, got ${typeof vip}`);
        value32 = ipv4ToInt(vip);
      } catch (err) {
        throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      const offset = value32 - allocator.range.network;
      if (offset < 0 || offset >= allocator.range.size) throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: ${vip} is outside ${allocator.cidr}`);
      if (allocator.reserved.has(offset)) throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: ${vip} is a reserved address`);
      const holder = allocator.byOffset.get(offset);
      if (holder !== undefined) throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: ${vip} is already held by '${holder}'`);
      if (allocator.byName.has(key)) throw new MeshError(ErrorCodes.INVALID_CONFIG, `${field}: name appears twice (names are case-insensitive)`);
      allocator.byName.set(key, offset);
      allocator.byOffset.set(offset, key);
    }
    return allocator;
  }

  private toAddress(offset: number): string {
    return intToIpv4(this.range.network + offset);
  }
}

function preferredOffset(name: string, size: number): number {
  const digest = createHash('sha256').update(name, 'utf8').digest();
  // 48 bits of the hash keep the modulo bias negligible for every size up to 2^24 (a /8).
  const high = digest.readUIntBE(0, 6);
  return high % size;
}
