import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

import { OAuthError } from './errors.js';

/**
 * The SSRF-safe fetch of a URL anyone could have named (a client metadata
 * document, a client's JWKS): public addresses only, checked on the address
 * actually connected to so that DNS rebinding cannot sneak in.
 */
export interface PublicFetchOptions {
  /** Development only: lets the URL name loopback and private addresses, over http too. */
  readonly allowPrivateNetwork: boolean;
  readonly timeoutMs: number;
  /** Sent as User-Agent. */
  readonly userAgent: string;
}

export interface FetchedDocument {
  readonly body: unknown;
  readonly cacheControl: string | undefined;
}

/** Addresses a metadata fetch must never reach, unless the operator allows it for development. */
const NON_PUBLIC = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['192.88.99.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::1', 128],
  ['::', 96],
  ['::ffff:0:0:0', 96],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv6');
}

export function isPublicAddress(address: string): boolean {
  // An IPv4-mapped IPv6 address is judged by the IPv4 address inside it.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const candidate = mapped ?? address;
  const family = isIP(candidate);
  if (family === 0) return false;
  return !NON_PUBLIC.check(candidate, family === 4 ? 'ipv4' : 'ipv6');
}

/** A DNS lookup that refuses non-public answers: the check applies to the address connected to. */
function publicOnlyLookup(allowPrivateNetwork: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error !== null) {
        callback(error, '', 0);
        return;
      }
      const usable = allowPrivateNetwork ? addresses : addresses.filter((entry) => isPublicAddress(entry.address));
      const chosen = usable[0];
      if (chosen === undefined || (!allowPrivateNetwork && usable.length !== addresses.length)) {
        callback(Object.assign(new Error(`${hostname} resolves to a non-public address`), { code: 'ENOTPUBLIC' }), '', 0);
        return;
      }
      if (options.all === true) callback(null, usable);
      else callback(null, chosen.address, chosen.family);
    });
  };
}

/** The document could not be had (network, timeout, status): unlike an invalid one, a last good copy may stand in. */
export class FetchFailed extends OAuthError {
  constructor(description: string, cause?: unknown) {
    super('invalid_client', description, cause === undefined ? undefined : { cause });
  }
}

/**
 * GETs a small JSON document from a URL anyone could have named: public
 * addresses only (unless allowed), no redirects (the document must live at
 * the URL itself), bounded in time and size. Any media type is read, since
 * the JSON is validated anyway and CDNs label it variously.
 */
export function fetchJson(url: URL, options: PublicFetchOptions, maxBytes: number, what: string): Promise<FetchedDocument> {
  // An IP literal host skips DNS, so check it here.
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (!options.allowPrivateNetwork && isIP(literal) !== 0 && !isPublicAddress(literal)) {
    return Promise.reject(new OAuthError('invalid_client', `${what} URL names a non-public address`));
  }
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const fail = (description: string): void => {
      clearTimeout(deadline);
      request.destroy();
      reject(new FetchFailed(`${what}: ${description}`));
    };
    const request = send(url, {
      method: 'GET',
      headers: { accept: 'application/json', 'user-agent': options.userAgent },
      lookup: publicOnlyLookup(options.allowPrivateNetwork),
      timeout: options.timeoutMs,
    });
    const deadline = setTimeout(() => fail('timed out'), options.timeoutMs);
    request.on('timeout', () => fail('timed out'));
    request.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      if (error.code === 'ENOTPUBLIC') reject(new OAuthError('invalid_client', `${what} URL names a non-public address`));
      else reject(new FetchFailed(`${what} could not be fetched`, error));
    });
    request.on('response', (response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      if (status !== 200) {
        // A server or CDN trouble (5xx, 403 and 429 to servers) may pass; any other answer means the document is not there.
        if (status >= 500 || status === 403 || status === 429) fail(`answered HTTP ${status}`);
        else {
          clearTimeout(deadline);
          request.destroy();
          reject(new OAuthError('invalid_client', `${what}: answered HTTP ${status}`));
        }
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          clearTimeout(deadline);
          request.destroy();
          reject(new OAuthError('invalid_client', `${what}: larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        clearTimeout(deadline);
        if (size > maxBytes) return;
        try {
          resolve({
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown,
            cacheControl: response.headers['cache-control'],
          });
        } catch {
          reject(new OAuthError('invalid_client', `${what} is not valid JSON`));
        }
      });
      response.on('error', () => fail('response failed'));
    });
    request.end();
  });
}
