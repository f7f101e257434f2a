import type { InitializeResult, JSONRPCNotification, JSONRPCRequest, LoggingLevel, Tool } from '@modelcontextprotocol/server';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { ChildChannel } from '../pool/channel.js';
import type { GrantHolder, HolderMatch, LiveSessionView } from '../pool/live-view.js';
import type { ChannelLease } from '../pool/pool.js';
import { isRequest, isResultResponse } from '../jsonrpc/messages.js';

/** A listener for a user's change notifications: one `subscriptions/listen` stream. */
export interface ChangeListener {
  /** The grant whose request opened the stream: a revocation of it ends the stream. */
  readonly grantId: string;
  /** Whether this listener wants the notification. */
  wants(notification: JSONRPCNotification): boolean;
  deliver(notification: JSONRPCNotification): void;
  /** The channel ended (child gone, broker stopping): end the stream gracefully. */
  end(): void;
}

/** The severities of MCP log levels, least severe first. */
export const LOG_SEVERITY: Record<LoggingLevel, number> = {
  debug: 0,
  info: 1,
  notice: 2,
  warning: 3,
  error: 4,
  critical: 5,
  alert: 6,
  emergency: 7,
};

/**
 * One user's child for modern-era (stateless) requests, initialised by the
 * broker itself and shared by all of that user's modern clients: the channel
 * from the pool, and what the modern front keeps about it (the child's
 * tools, its log level, resource subscriptions, change listeners).
 */
export class UserChannel {
  readonly #listeners = new Set<ChangeListener>();
  /** Resource URIs subscribed at the child, with how many listeners want each. */
  readonly #resourceRefs = new Map<string, number>();
  /** The level set at the child, if any; requests asking for a lower one lower it. */
  #logLevel: LoggingLevel | undefined;
  /** The child's tools by name, fetched on first need and dropped when the child says they changed. */
  #tools: Promise<Map<string, Tool>> | undefined;
  /** The grants whose requests came through this channel, with when (the Connections page, revocations). */
  readonly #callers = new Map<string, { holder: GrantHolder; firstUsedAt: number; lastUsedAt: number }>();

  readonly #lease: ChannelLease;

  constructor(
    readonly channel: ChildChannel,
    /** The child's answer to the broker's initialize. */
    readonly server: InitializeResult,
    lease: ChannelLease,
  ) {
    this.#lease = lease;
  }

  /** Whether a listen stream is open: the channel is in use though no request is in flight. */
  get listening(): boolean {
    return this.#listeners.size > 0;
  }

  /** A request of this user arrived (the idle reaper's clock), from this grant. */
  touch(holder: GrantHolder, at: number): void {
    this.#lease.touch();
    const caller = this.#callers.get(holder.grantId);
    if (caller === undefined) this.#callers.set(holder.grantId, { holder, firstUsedAt: at, lastUsedAt: at });
    else caller.lastUsedAt = at;
  }

  /** Each grant that used the channel, as a session of its client. */
  sessions(): LiveSessionView[] {
    return [...this.#callers.values()].map(({ holder, firstUsedAt, lastUsedAt }) => ({
      era: 'modern' as const,
      clientId: holder.clientId,
      grantId: holder.grantId,
      startedAt: firstUsedAt,
      lastUsedAt,
    }));
  }

  /**
   * A revocation: forgets the grants `match` accepts and ends their listen
   * streams. Returns how many grants were forgotten and how many still use
   * the channel.
   */
  forget(match: HolderMatch): { readonly forgotten: number; readonly left: number } {
    let forgotten = 0;
    for (const [grantId, caller] of this.#callers) {
      if (!match(caller.holder)) continue;
      this.#callers.delete(grantId);
      forgotten++;
      for (const listener of this.#listeners) if (listener.grantId === grantId) listener.end();
    }
    return { forgotten, left: this.#callers.size };
  }

  addListener(listener: ChangeListener): void {
    this.#listeners.add(listener);
  }

  removeListener(listener: ChangeListener): void {
    this.#listeners.delete(listener);
  }

  /** A message of the child that belongs to no modern request: a change notification for the listeners, or a request nobody can answer. */
  unrelated(message: JSONRPCNotification | JSONRPCRequest): void {
    if (isRequest(message)) {
      this.channel.refuseServerRequest(message.id as number, JsonRpcCode.methodNotFound, 'No modern request is waiting for input');
      return;
    }
    if (message.method === 'notifications/tools/list_changed') this.#tools = undefined;
    for (const listener of this.#listeners) if (listener.wants(message)) listener.deliver(message);
  }

  /** The channel ended: every listen stream ends with it. */
  ended(): void {
    for (const listener of this.#listeners) listener.end();
  }

  /** The child's tools, listed once (all pages) and kept until the child announces a change. */
  toolsOf(): Promise<Map<string, Tool>> {
    this.#tools ??= (async () => {
      const tools = new Map<string, Tool>();
      let cursor: string | undefined;
      do {
        const answer = await this.channel.call('tools/list', cursor === undefined ? undefined : { cursor });
        if (!isResultResponse(answer)) break;
        const page = answer.result as { tools?: Tool[]; nextCursor?: string };
        for (const tool of page.tools ?? []) tools.set(tool.name, tool);
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      return tools;
    })();
    return this.#tools;
  }

  /** Lowers the child's log level when a request asks for more detail than it sends now. */
  async ensureLogLevel(level: LoggingLevel): Promise<void> {
    if (this.server.capabilities.logging === undefined) return;
    if (this.#logLevel !== undefined && LOG_SEVERITY[this.#logLevel] <= LOG_SEVERITY[level]) return;
    this.#logLevel = level;
    await this.channel.call('logging/setLevel', { level });
  }

  /** Counts one more listener for a resource, subscribing at the child on the first. */
  async subscribeResource(uri: string): Promise<void> {
    const count = this.#resourceRefs.get(uri) ?? 0;
    this.#resourceRefs.set(uri, count + 1);
    if (count === 0) await this.channel.call('resources/subscribe', { uri });
  }

  /** Counts one listener less, unsubscribing at the child after the last. */
  async unsubscribeResource(uri: string): Promise<void> {
    const count = (this.#resourceRefs.get(uri) ?? 1) - 1;
    if (count > 0) {
      this.#resourceRefs.set(uri, count);
      return;
    }
    this.#resourceRefs.delete(uri);
    if (!this.channel.ended) await this.channel.call('resources/unsubscribe', { uri });
  }
}
