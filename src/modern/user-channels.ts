import type { Implementation, InitializeResult } from '@modelcontextprotocol/server';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import { BrokerError } from '../errors/errors.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { Logger } from '../log/logger.js';
import type { SessionEvents } from '../metrics/metrics.js';
import type { ChildChannel } from '../pool/channel.js';
import type { HolderMatch, LiveSessionView } from '../pool/live-view.js';
import type { ChannelPool } from '../pool/pool.js';
import { UserChannel } from './user-channel.js';
import { isErrorResponse, isRequest } from '../jsonrpc/messages.js';

/**
 * The capabilities the broker declares to a user's modern child: everything
 * it can translate into the modern era's input requests, so the child may ask;
 * a request whose client lacks one is refused at the broker.
 */
const MODERN_CHILD_CAPABILITIES = { elicitation: { form: {}, url: {} }, sampling: {}, roots: { listChanged: true } };

export interface UserChannelsOptions {
  readonly pool: ChannelPool;
  readonly log: Logger;
  readonly events?: Pick<SessionEvents, 'sessionStarted' | 'sessionEnded'>;
  readonly now?: () => number;
}

/** The modern era's per-user channels: one per user, borrowed from the pool and initialised by the broker. */
export class UserChannels {
  readonly #channels = new Map<string, UserChannel>();
  readonly #starting = new Map<string, Promise<UserChannel>>();
  #stopped = false;

  readonly #options: UserChannelsOptions;

  readonly #now: () => number;

  constructor(options: UserChannelsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Number of users with a live channel. */
  get active(): number {
    return this.#channels.size;
  }

  /**
   * The user's channel, started and initialised on first use with the first
   * client's identity (single flight per user).
   */
  of(principal: Principal, clientInfo: Implementation): Promise<UserChannel> {
    if (this.#stopped) return Promise.reject(new BrokerError('unavailable', 'The broker is shutting down'));
    const existing = this.#channels.get(principal.userId);
    if (existing !== undefined && !existing.channel.ended) {
      existing.touch(principal, this.#now());
      return Promise.resolve(existing);
    }
    let starting = this.#starting.get(principal.userId);
    if (starting === undefined) {
      starting = this.#start(principal, clientInfo).finally(() => this.#starting.delete(principal.userId));
      this.#starting.set(principal.userId, starting);
    }
    return starting.then((user) => {
      user.touch(principal, this.#now());
      return user;
    });
  }

  /** The user's channel as each of their grants used it, for their Connections page. */
  sessionsOf(userId: string): LiveSessionView[] {
    return this.#channels.get(userId)?.sessions() ?? [];
  }

  /**
   * A revocation: forgets the grants `match` accepts on every channel, ending
   * their listen streams, and closes a channel no other grant of its user
   * uses (its child with it). Returns how many grants were forgotten.
   */
  async endWhere(match: HolderMatch, reason: string): Promise<number> {
    let forgotten = 0;
    const closing: Promise<void>[] = [];
    for (const user of this.#channels.values()) {
      const outcome = user.forget(match);
      forgotten += outcome.forgotten;
      if (outcome.forgotten > 0 && outcome.left === 0) closing.push(user.channel.close(reason));
    }
    await Promise.all(closing);
    return forgotten;
  }

  /** Ends every user's channel and refuses new ones. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#channels.values()].map((user) => user.channel.close('broker_stopping')));
  }

  async #start(principal: Principal, clientInfo: Implementation): Promise<UserChannel> {
    const name = `modern:${principal.userId}`;
    const lease = await this.#options.pool.reserve(principal, name);
    const log = this.#options.log.child({ sessionId: name, user: principal.forgejoLogin });
    let user: UserChannel | undefined;
    try {
      const channel = await lease.open({
        log,
        onEnded: (reason) => {
          log.info({ event: 'user_channel_closed', reason }, 'modern channel closed');
          this.#options.events?.sessionEnded('modern', reason);
          if (this.#channels.get(principal.userId)?.channel === channel) this.#channels.delete(principal.userId);
          user?.ended();
        },
        onUnrelated: (message) => {
          if (user !== undefined) user.unrelated(message);
          // Still initialising: no modern request can be waiting for input yet.
          else if (isRequest(message))
            channel.refuseServerRequest(message.id as number, JsonRpcCode.methodNotFound, 'No modern request is waiting for input');
        },
      });
      const server = await initialize(channel, clientInfo);
      const started = new UserChannel(channel, server, lease);
      user = started;
      if (this.#stopped || channel.ended) {
        await channel.close('broker_stopping');
        throw new BrokerError('unavailable', 'The broker is shutting down');
      }
      this.#channels.set(principal.userId, started);
      lease.commit({ busy: () => started.listening });
      log.info({ event: 'user_channel_started', pid: channel.child.pid, clientId: principal.clientId }, 'modern channel started');
      this.#options.events?.sessionStarted('modern');
      return started;
    } finally {
      lease.release();
    }
  }
}

/** The broker's own legacy handshake with a child it serves modern clients through. */
async function initialize(channel: ChildChannel, clientInfo: Implementation): Promise<InitializeResult> {
  const answer = await channel.call('initialize', {
    protocolVersion: LATEST_PROTOCOL_VERSION,
    capabilities: MODERN_CHILD_CAPABILITIES,
    clientInfo,
  });
  if (isErrorResponse(answer)) {
    await channel.close('initialize_failed');
    throw new BrokerError('child_failed', `The MCP server refused to start: ${answer.error.message}`);
  }
  channel.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return answer.result as InitializeResult;
}
