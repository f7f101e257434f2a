import type { Principal } from '../auth/principal.js';

/** Who a session or a modern call acts for: the grant, its user and its client. */
export type GrantHolder = Pick<Principal, 'userId' | 'clientId' | 'grantId'>;

/** Which sessions to end: those whose holder it accepts. */
export type HolderMatch = (holder: GrantHolder) => boolean;

/** A live session as the user's Connections page shows it. */
export interface LiveSessionView {
  /** `legacy`: an Mcp-Session-Id session; `modern`: the user's channel, as one client used it. */
  readonly era: 'legacy' | 'modern';
  /** Legacy: the SHA-256 of the session id, as the store keys it (so a stored copy is not listed twice). */
  readonly sessionIdHash?: string;
  readonly clientId: string;
  readonly grantId: string;
  readonly startedAt: number;
  readonly lastUsedAt: number;
}
