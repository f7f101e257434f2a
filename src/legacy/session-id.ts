/** Legacy session ids: minted with the owner replica in front, stored only as hashes. */
import { createHash, randomBytes } from 'node:crypto';

/** Session ids are stored as hashes, as tokens are: a copy of the store does not hand out live sessions. */
export function hashSessionId(sessionId: string): string {
  return createHash('sha256').update(sessionId).digest('hex');
}

/** The replica a session id names as its owner; undefined for an id without one. */
export function sessionOwner(sessionId: string): string | undefined {
  const dot = sessionId.indexOf('.');
  return dot <= 0 ? undefined : sessionId.slice(0, dot);
}

/** 192 random bits, base64url: visible ASCII as the transport spec requires. */
export function newSessionId(): string {
  return randomBytes(24).toString('base64url');
}
