import type { Variable } from './options.js';

/** A setting that works but is probably not what the operator meant; logged at start. */
export interface ConfigWarning {
  readonly variable: Variable;
  readonly message: string;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::']);

/**
 * A wildcard listen address without a public URL makes the issuer
 * `http://0.0.0.0:…`, which no client can reach; plain http beyond loopback
 * carries sign-ins and tokens in the clear.
 */
export function exposureWarnings(listen: { readonly host: string }, publicUrl: URL, publicUrlConfigured: boolean): ConfigWarning[] {
  if (WILDCARD_HOSTS.has(listen.host) && !publicUrlConfigured) {
    return [
      {
        variable: 'BROKER_PUBLIC_URL',
        message: `is not set while BROKER_LISTEN is the wildcard address ${listen.host}: the OAuth issuer and MCP URL become ${publicUrl.origin}, which clients cannot reach; set BROKER_PUBLIC_URL to the URL clients use`,
      },
    ];
  }
  if (publicUrl.protocol === 'http:' && !isLoopbackHost(publicUrl.hostname)) {
    return [
      {
        variable: 'BROKER_PUBLIC_URL',
        message: `${publicUrl.origin} is plain http on a host other than loopback: sign-ins and tokens cross the network unencrypted; serve the broker over https (behind a TLS reverse proxy)`,
      },
    ];
  }
  return [];
}

/** localhost, *.localhost, 127.0.0.0/8 and ::1 (as URL.hostname spells them). */
function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(hostname) || hostname === '[::1]';
}
