export {
  DNS_CLASSIC_UDP_BYTES,
  DNS_HEADER_BYTES,
  DNS_MAX_LABELS,
  DNS_MAX_LABEL_BYTES,
  DNS_MAX_MESSAGE_BYTES,
  DNS_MAX_NAME_BYTES,
  Opcode,
  Rcode,
  RecordClass,
  RecordType,
  buildQuery,
  buildResponse,
  emptyFlags,
  ipv4ToBytes,
  ipv6ToBytes,
  nameToLabels,
  normalizeName,
  parseHeader,
  parseMessage,
  serializeMessage,
  splitName,
} from './dns-codec.js';
export type {
  BuildQueryOptions,
  BuildResponseOptions,
  DnsFlags,
  DnsHeader,
  DnsMessage,
  DnsQuestion,
  DnsRecord,
  RecordData,
  SerializeOptions,
  SoaData,
} from './dns-codec.js';
export { DnsServer, parseUpstream } from './dns-server.js';
export type { DnsLookup, DnsLookupResult, DnsServerInit, DnsServerStats } from './dns-server.js';
export { DEFAULT_VIP_CIDR, VipAllocator, intToIpv4, ipv4ToInt, parseCidr } from './vip-allocator.js';
export type { Cidr, VipAllocatorInit, VipAllocatorJson, VipEntry } from './vip-allocator.js';
export { HOSTS_BEGIN, HOSTS_END, HostsFileWriter, mergeHostsBlock, renderHostsBlock } from './hosts-file.js';
export type { HostsEntry } from './hosts-file.js';
