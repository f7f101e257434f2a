import { createHash } from 'node:crypto';

/**
 * Keys whose values are secrets, whatever the tool: matched anywhere in the
 * key, case-insensitively (`api_key`, `X-Auth-Token`, `clientSecret`, …).
 */
const SECRET_KEY = /token|passw|secret|key|authori[sz]ation|cookie|credential|session|signature|private/i;

export const REDACTED = '[redacted]';

/**
 * JSON with object keys sorted at every depth, so equal arguments hash
 * equally whatever order the client wrote them in. `undefined` members are
 * left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item === undefined ? null : item)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
}

/** SHA-256 (hex) of the arguments' canonical JSON; `{}` when there are none. */
export function argumentsDigest(args: unknown): string {
  return createHash('sha256')
    .update(canonicalJson(args ?? {}))
    .digest('hex');
}

/** A copy of the arguments with the value of every secret-looking key (at any depth) replaced. */
export function redactSecrets(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(redactSecrets);
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, item]) => [key, SECRET_KEY.test(key) ? REDACTED : redactSecrets(item)]),
  );
}
