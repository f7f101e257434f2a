import { OAuthError } from './errors.js';

/**
 * RFC 8707 `resource` parameters, each naming the one resource there is:
 * absent is fine, and the same resource given twice (Codex with
 * `--oauth-resource` sends it so) is one resource.
 */
export function checkResource(params: URLSearchParams, resource: string): void {
  for (const presented of params.getAll('resource')) {
    if (presented !== '' && !sameResource(presented, resource)) throw new OAuthError('invalid_target', `resource must be ${resource}`);
  }
}

/** RFC 8707 resource comparison, tolerant of letter case in scheme and host and of a trailing slash. */
export function sameResource(presented: string, resource: string): boolean {
  let url: URL;
  try {
    url = new URL(presented);
  } catch {
    return false;
  }
  if (url.hash !== '' || presented.includes('#')) return false;
  return url.href.replace(/\/$/, '') === resource.replace(/\/$/, '');
}
