import type { IncomingMessage } from 'node:http';
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** One entry of BROKER_TRUSTED_PROXIES: an address, or a network in CIDR notation. */
export interface AddressRange {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** `10.0.0.7`, `10.0.0.0/8`, `fd00::1`, `fd00::/8`; undefined for anything else. */
export function parseAddressRange(text: string): AddressRange | undefined {
  const [address = '', prefixText, extra] = text.split('/');
  if (extra !== undefined) return undefined;
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  if (family === undefined) return undefined;
  const bits = family === 'ipv4' ? 32 : 128;
  if (prefixText === undefined) return { address, prefix: bits, family };
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) return undefined;
  return { address, prefix: Number(prefixText), family };
}

/** The reverse proxies whose `X-Forwarded-For` is believed. */
export class TrustedProxies {
  readonly #list = new BlockList();
  readonly #empty: boolean;

  constructor(ranges: readonly AddressRange[]) {
    for (const range of ranges) this.#list.addSubnet(range.address, range.prefix, range.family);
    this.#empty = ranges.length === 0;
  }

  /** `address` is normalised (see normaliseAddress). */
  has(address: string): boolean {
    return !this.#empty && this.#list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}

/**
 * The rate-limiting key of a request: the peer address, or, when the peer is
 * a trusted proxy, the right-most address in `X-Forwarded-For` that is not a
 * trusted proxy (entries left of it were written by the client and prove
 * nothing). IPv6 clients are keyed per /64, the block one subscriber gets,
 * so rotating through one's own addresses buys no extra budget.
 */
export function clientAddress(req: IncomingMessage, trusted: TrustedProxies): string {
  const peer = normaliseAddress(req.socket.remoteAddress ?? '');
  if (peer === undefined) return 'unknown';
  let client = peer;
  const header = req.headers['x-forwarded-for'];
  const forwarded = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',');
  while (trusted.has(client) && forwarded.length > 0) {
    const hop = forwardedAddress((forwarded.pop() as string).trim());
    // An entry that is no address was not written by a proxy we trust: keep the hop that passed it on.
    if (hop === undefined) break;
    client = hop;
  }
  return rateLimitKey(client);
}

/** An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[2001:db8::1]:5678`). */
function forwardedAddress(entry: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(entry);
  if (bracketed !== null) return normaliseAddress(bracketed[1] as string);
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(entry);
  return normaliseAddress(withPort === null ? entry : (withPort[1] as string));
}

/**
 * An address in one spelling: IPv6 lower case without a zone, and an
 * IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as
 * plain IPv4. Undefined for anything that is not an address.
 */
function normaliseAddress(text: string): string | undefined {
  if (isIPv4(text)) return text;
  const address = text.split('%')[0]?.toLowerCase() ?? '';
  if (!isIPv6(address)) return undefined;
  const groups = ipv6Groups(address);
  const mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  if (!mapped) return address;
  const [high = 0, low = 0] = groups.slice(6);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

function rateLimitKey(address: string): string {
  if (isIPv4(address)) return address;
  return `${ipv6Groups(address)
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail converted). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const tail = text.slice(text.lastIndexOf(':') + 1);
  if (tail.includes('.')) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    text = `${text.slice(0, text.length - tail.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left = '', right] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const head = parse(left);
  if (right === undefined) return head;
  const rest = parse(right);
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}
