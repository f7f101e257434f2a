import type { RequestId } from '@modelcontextprotocol/server';

/** A child's own request waiting for the client: which child asked, under which id, during which client request. */
export interface ServerRequest<Link, Pending> {
  readonly link: Link;
  readonly originalId: RequestId;
  readonly pending: Pending | undefined;
}

/**
 * The children's own requests (sampling, elicitation, roots) waiting for the
 * client, renamed to ids of the channel's own, so that the requests of an old
 * and a new child never collide: the client answers the renamed id, and the
 * child that asked gets the answer under its original one.
 */
export class ServerRequests<Link, Pending> {
  #nextId = 1;
  readonly #entries = new Map<number, ServerRequest<Link, Pending>>();

  /** Records a child's request; returns the id the client sees. */
  add(link: Link, originalId: RequestId, pending: Pending | undefined): number {
    const brokerId = this.#nextId++;
    this.#entries.set(brokerId, { link, originalId, pending });
    return brokerId;
  }

  /** The request the client answered, no longer waiting. */
  take(brokerId: RequestId): ServerRequest<Link, Pending> | undefined {
    if (typeof brokerId !== 'number') return undefined;
    const entry = this.#entries.get(brokerId);
    this.#entries.delete(brokerId);
    return entry;
  }

  /** The child withdrew its request: the id the client saw, and the entry, no longer waiting. */
  withdraw(link: Link, originalId: RequestId | undefined): { brokerId: number; entry: ServerRequest<Link, Pending> } | undefined {
    for (const [brokerId, entry] of this.#entries) {
      if (entry.link !== link || entry.originalId !== originalId) continue;
      this.#entries.delete(brokerId);
      return { brokerId, entry };
    }
    return undefined;
  }

  /** The ids of the requests waiting during one client request. */
  idsDuring(pending: Pending): number[] {
    const ids: number[] = [];
    for (const [brokerId, entry] of this.#entries) if (entry.pending === pending) ids.push(brokerId);
    return ids;
  }

  /** The children with requests waiting. */
  links(): Link[] {
    return [...this.#entries.values()].map((entry) => entry.link);
  }

  forgetLink(link: Link): void {
    for (const [brokerId, entry] of this.#entries) if (entry.link === link) this.#entries.delete(brokerId);
  }

  forgetRequest(pending: Pending): void {
    for (const [brokerId, entry] of this.#entries) if (entry.pending === pending) this.#entries.delete(brokerId);
  }
}
