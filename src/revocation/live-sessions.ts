import type { LegacyFront } from '../legacy/front.js';
import type { ModernFront } from '../modern/front.js';
import type { GrantHolder, LiveSessionView } from '../pool/live-view.js';
import type { ChannelPool } from '../pool/pool.js';
import type { RevocationTarget } from '../store/admin-store.js';

/** The parts that hold live sessions; they exist only once the broker is wired, after the OAuth server. */
export interface SessionHolders {
  readonly legacy: LegacyFront;
  readonly modern: ModernFront;
  readonly pool: ChannelPool;
}

/** What a revocation ended on this replica. */
export interface EndedSessions {
  readonly legacy: number;
  /** Grants forgotten by the users' modern channels (a channel no other grant uses closes). */
  readonly modern: number;
}

/**
 * This replica's live sessions, by user and grant: what the Connections
 * page lists and what a revocation ends. Bound to the fronts once they
 * exist; before that (and for an OAuth server without a broker) it holds
 * nothing.
 */
export class LiveSessions {
  #holders: SessionHolders | undefined;

  bind(holders: SessionHolders): void {
    this.#holders = holders;
  }

  /** The user's legacy sessions and modern channel on this replica. */
  of(userId: string): LiveSessionView[] {
    const holders = this.#holders;
    if (holders === undefined) return [];
    return [...holders.legacy.sessionsOf(userId), ...holders.modern.sessionsOf(userId)];
  }

  /** Ends what the revocation names: legacy sessions, modern listen streams and channels, and for a user every channel left. */
  async end(target: RevocationTarget, reason: string): Promise<EndedSessions> {
    const holders = this.#holders;
    if (holders === undefined) return { legacy: 0, modern: 0 };
    const match = (holder: GrantHolder): boolean => targetMatches(target, holder);
    const [legacy, modern] = await Promise.all([holders.legacy.endWhere(match, reason), holders.modern.endWhere(match, reason)]);
    // Anything of the user's still starting when the fronts were asked.
    if (target.kind === 'user') await holders.pool.endUser(target.userId, reason);
    return { legacy, modern };
  }
}

export function targetMatches(target: RevocationTarget, holder: GrantHolder): boolean {
  switch (target.kind) {
    case 'user':
      return holder.userId === target.userId;
    case 'client':
      return holder.clientId === target.clientId;
    case 'grant':
      return holder.grantId === target.grantId;
    case 'connection':
      return holder.userId === target.userId && holder.clientId === target.clientId;
  }
}
