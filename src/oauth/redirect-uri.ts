/**
 * Redirect URI rules (OAuth 2.1 §2.3.1 and §8.4, RFC 8252): https anywhere,
 * http only to a loopback host (any port), or a private-use URI scheme for
 * native apps. Never a fragment, never a scheme a browser would execute or
 * read locally.
 */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** Schemes that are not private-use schemes: a redirect there would run code, read files or go elsewhere. */
const FORBIDDEN_SCHEMES = new Set([
  'javascript:',
  'data:',
  'vbscript:',
  'file:',
  'about:',
  'blob:',
  'filesystem:',
  'ftp:',
  'ws:',
  'wss:',
  'mailto:',
  'tel:',
]);

/** Why the URI may not be registered, or undefined when it may. */
export function redirectUriProblem(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'not an absolute URI';
  }
  if (url.hash !== '' || uri.includes('#')) return 'must not have a fragment';
  if (url.username !== '' || url.password !== '') return 'must not carry credentials';
  if (url.protocol === 'https:') return url.hostname === '' ? 'needs a host' : undefined;
  if (url.protocol === 'http:') return isLoopbackHost(url.hostname) ? undefined : 'http is allowed only for loopback hosts';
  if (FORBIDDEN_SCHEMES.has(url.protocol)) return `scheme ${url.protocol} is not allowed`;
  return undefined;
}

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase());
}

/** True for http redirect URIs to this machine: anyone on it can listen there. */
export function isLoopbackRedirect(uri: string): boolean {
  try {
    const url = new URL(uri);
    return url.protocol === 'http:' && isLoopbackHost(url.hostname) && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

/**
 * Exact match (OAuth 2.1 §4.1.1.1), except for loopback http redirect URIs
 * (RFC 8252 §7.3 and §8.3): native apps listen on whatever port is free, and
 * `localhost`, `127.0.0.1` and `[::1]` name the same machine, so clients
 * that publish one and send another (Goose: `http://localhost/...` listed,
 * `http://127.0.0.1:<port>/...` sent) are the same client. Path and query
 * must still match exactly.
 */
export function redirectUriMatches(registered: string, presented: string): boolean {
  if (registered === presented) return true;
  if (!isLoopbackRedirect(registered) || !isLoopbackRedirect(presented) || presented.includes('#')) return false;
  const a = new URL(registered);
  const b = new URL(presented);
  return a.pathname === b.pathname && a.search === b.search;
}

/** Where a redirect URI sends the browser, for people: the host, or for a native app its scheme. */
export function describeRedirectTarget(redirectUri: string): string {
  const url = new URL(redirectUri);
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.host : `${url.protocol}// (an application on this device)`;
}
