import type { RequestId } from '@modelcontextprotocol/server';

/** A map key that keeps the string id "1" apart from the number id 1. */
export function idKey(id: RequestId): string {
  return typeof id === 'number' ? `n${id}` : `s${id}`;
}
