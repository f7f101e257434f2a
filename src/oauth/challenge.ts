import type { ServerResponse } from 'node:http';

import type { AuthFailure } from '../auth/principal.js';

/**
 * The `WWW-Authenticate` value for a refused /mcp request (RFC 6750 §3,
 * RFC 9728 §5.1). Without a failure it is the bare challenge an
 * unauthenticated request gets; with one it also says why.
 */
export function bearerChallenge(resourceMetadataUrl: string, failure?: AuthFailure, scope?: string): string {
  const params = [`resource_metadata="${quote(resourceMetadataUrl)}"`];
  if (scope !== undefined && scope !== '') params.push(`scope="${quote(scope)}"`);
  if (failure !== undefined) {
    params.push(`error="${failure.error}"`, `error_description="${quote(failure.description)}"`);
  }
  return `Bearer ${params.join(', ')}`;
}

/** Answers 401 (400 for a malformed request, RFC 6750 §3.1) with the challenge and an RFC 6750 body. */
export function sendBearerChallenge(res: ServerResponse, resourceMetadataUrl: string, failure?: AuthFailure): void {
  const status = failure?.error === 'invalid_request' ? 400 : 401;
  const body = JSON.stringify(
    failure === undefined
      ? { error: 'invalid_token', error_description: 'authorization required' }
      : { error: failure.error, error_description: failure.description },
  );
  res.writeHead(status, {
    'www-authenticate': bearerChallenge(resourceMetadataUrl, failure),
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

/** A quoted-string's content (RFC 9110 §5.6.4): no quotes, backslashes or control characters. */
function quote(value: string): string {
  let quoted = '';
  for (const char of value.replace(/[\\"]/g, '')) {
    const code = char.charCodeAt(0);
    quoted += code < 0x20 || code === 0x7f ? ' ' : char;
  }
  return quoted;
}
