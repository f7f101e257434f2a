import type { OutgoingHttpHeaders } from 'node:http';
import { SdkHttpError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { isInitializedNotification, isInitializeRequest } from '@modelcontextprotocol/server';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { Child, ChildExit } from '../pool/child.js';
import { ClientState } from '../pool/client-state.js';
import type { RawAnswer } from '../pool/raw-answer.js';
import { AwaitedRequests } from './awaited.js';
import type { UpstreamEndpoint } from './endpoint.js';
import { GetStream, mayBeAsked } from './get-stream.js';
import { connectionCut, connectionRefused, handEvent, post, UpstreamHttpError } from './post.js';
import { isNotification, isRequest } from '../jsonrpc/messages.js';

export interface UpstreamSessionOptions {
  readonly endpoint: UpstreamEndpoint;
  /** The user's Forgejo token when the session starts; `useToken` replaces it. */
  readonly token: string;
  /**
   * The upstream answered 401 to this token (Forgejo refused it): resolves
   * with the token to use from now on, rejects once the credential ended.
   */
  readonly refused: (token: string) => Promise<string>;
  readonly log: Logger;
  /** How long the DELETE that ends the upstream session may take. */
  readonly stopTimeoutMs: number;
  /** Listen (hold the GET stream) from the handshake on, without waiting for `listen()`: the broker itself needs what it carries. */
  readonly listenFromStart?: boolean;
}

/** A POST stream's resumption (the SDK's GET with Last-Event-ID) retries as the GET stream does. */
const STREAM_RECONNECTION = {
  initialReconnectionDelay: 10,
  reconnectionDelayGrowFactor: 3,
  maxReconnectionDelay: 5000,
  maxRetries: Number.POSITIVE_INFINITY,
};

/**
 * One MCP session at a shared, multi-tenant forgejo-mcp, seen by the pool as
 * a child. Every request carries the user's current Forgejo token
 * (`Authorization: Bearer`), so a rotation is `useToken` and nothing else.
 *
 * The session is state, not a process: when the upstream restarts and
 * forgets it (404), the session initialises a new one with the client's
 * original parameters and state, and sends on; requests that were in flight
 * get a JSON-RPC error. A response stream the upstream cuts before its
 * answer (forgejo-mcp cuts every response after 30 s) is an error for that
 * request only.
 *
 * The SDK's client transport carries the initialize handshake (it takes
 * the session id), the resumption of a cut POST stream and the DELETE. Every
 * other message, the hot path, is posted by `post` on node:http (why: README,
 * "Shared mode", the request path), and a large answer passes on as the
 * upstream's bytes (`onanswer`), as a stdio child's does.
 *
 * The GET stream is held only once someone needs what it carries (`listen`,
 * and get-stream.ts for when that is and why), or from the handshake when the
 * client can be asked something (`mayBeAsked`).
 */
export class UpstreamSession implements Child {
  readonly pid = undefined;
  onmessage: ((message: JSONRPCMessage, lineLength: number) => void) | undefined;
  onanswer: ((answer: RawAnswer) => void) | undefined;
  readonly exited: Promise<ChildExit>;
  #exit!: (exit: ChildExit) => void;
  #stopping: Promise<ChildExit> | undefined;
  #transport: StreamableHTTPClientTransport | undefined;
  #url: URL | undefined;
  #connecting: Promise<StreamableHTTPClientTransport> | undefined;
  #recovering: Promise<void> | undefined;
  #token: string;
  #refusing: Promise<string> | undefined;
  /** Notifications go out in order, and before any request sent after them. */
  #notificationsSent: Promise<void> = Promise.resolve();
  readonly #state = new ClientState();
  readonly #awaiting = new AwaitedRequests(this.#state, {
    message: (message, length) => this.onmessage?.(message, length),
    answer: (answer) => this.onanswer?.(answer),
  });
  /** Someone needs the GET stream: it is held from the handshake on (of this upstream session and any after it). */
  #listening: boolean;
  /** The transport whose session finished its handshake (`notifications/initialized` taken), and its GET stream when held. */
  #handshaken: StreamableHTTPClientTransport | undefined;
  #stream: GetStream | undefined;
  readonly #options: UpstreamSessionOptions;

  constructor(options: UpstreamSessionOptions) {
    this.#options = options;
    this.#token = options.token;
    this.#listening = options.listenFromStart ?? false;
    this.exited = new Promise((resolve) => (this.#exit = resolve));
  }

  /** The upstream's id for this session, once it issued one. */
  get upstreamSessionId(): string | undefined {
    return this.#transport?.sessionId;
  }

  /** From the next request on, the session acts with this token. */
  useToken(token: string): void {
    this.#token = token;
  }

  send(message: JSONRPCMessage): boolean {
    if (this.#stopping !== undefined) return false;
    if (isRequest(message)) {
      if (message.method === 'initialize' && isInitializeRequest(message) && mayBeAsked(message.params.capabilities))
        this.#listening = true;
      this.#state.requested(message);
      this.#awaiting.sent(message);
    } else if (isNotification(message)) {
      this.#state.notified(message);
    }
    void this.#deliver(message);
    return true;
  }

  /**
   * A client opened a stream for the messages that belong to no request:
   * resolves once the upstream's GET stream is open (or could not be), so
   * whatever the client causes after reaches it. Before the handshake is
   * done the stream opens with it; this waits only for notifications already
   * on their way (a client's initialized, then its GET).
   */
  async listen(): Promise<void> {
    this.#listening = true;
    await this.#notificationsSent;
    if (this.#handshaken !== undefined && this.#handshaken === this.#transport) await this.#listenOn(this.#handshaken).opened;
  }

  stop(): Promise<ChildExit> {
    this.#stopping ??= this.#terminate();
    return this.#stopping;
  }

  async #terminate(): Promise<ChildExit> {
    const transport = this.#transport;
    this.#stream?.close();
    this.#awaiting.failAll('The MCP session ended before the server answered');
    if (transport?.sessionId !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#options.stopTimeoutMs)));
      await Promise.race([transport.terminateSession().catch(() => undefined), timeout]);
      clearTimeout(timer);
    }
    await transport?.close();
    const exit: ChildExit = { code: 0, signal: null };
    this.#exit(exit);
    return exit;
  }

  async #deliver(message: JSONRPCMessage, resent = false): Promise<void> {
    let transport: StreamableHTTPClientTransport | undefined;
    try {
      if (isNotification(message)) {
        const previous = this.#notificationsSent;
        let sent!: () => void;
        this.#notificationsSent = new Promise((resolve) => (sent = resolve));
        await previous;
        try {
          transport = await this.#connected();
          await this.#send(transport, message);
          if (message.method === 'notifications/initialized') this.#handshakeDone(transport);
        } finally {
          sent();
        }
        return;
      }
      await this.#notificationsSent;
      transport = await this.#connected();
      await this.#send(transport, message);
    } catch (error) {
      if (this.#stopping !== undefined) return;
      const lost = transport === undefined ? undefined : this.#lost(error, transport);
      if (!resent && transport !== undefined && lost !== undefined) {
        const id = isRequest(message) ? message.id : undefined;
        if (id !== undefined) this.#awaiting.resending(id, true);
        try {
          await this.#recover(transport, lost);
        } catch (recoverError) {
          if (id !== undefined) this.#awaiting.resending(id, false);
          this.#failed(message, recoverError);
          this.#unrecoverable(recoverError);
          return;
        }
        if (id !== undefined) this.#awaiting.resending(id, false);
        return this.#deliver(message, true);
      }
      this.#failed(message, error);
    }
  }

  /** The transport of the current upstream session, opened (and the endpoint awaited) on first use. */
  async #connected(): Promise<StreamableHTTPClientTransport> {
    while (this.#recovering !== undefined) await this.#recovering;
    if (this.#transport !== undefined) return this.#transport;
    this.#connecting ??= this.#options.endpoint
      .ready()
      .then((url) => this.#open(url))
      .finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #open(url: URL): Promise<StreamableHTTPClientTransport> {
    // Stopped while the upstream was awaited: a transport opened now would outlive the session (its GET stream reconnecting forever).
    if (this.#stopping !== undefined) throw new BrokerError('not_found', 'The MCP session ended');
    const transport = new StreamableHTTPClientTransport(url, {
      authProvider: {
        token: () => Promise.resolve(this.#token),
        onUnauthorized: () => this.#reauthorise(this.#token),
      },
      reconnectionOptions: STREAM_RECONNECTION,
    });
    transport.onmessage = (message) => this.#received(transport, message, JSON.stringify(message).length);
    transport.onerror = (error) => this.#transportError(transport, error);
    await transport.start();
    this.#transport = transport;
    this.#url = url;
    return transport;
  }

  /**
   * The initialize goes through the SDK transport (it takes the session id),
   * everything else straight to the upstream: the initialized notification
   * too, or the SDK would open its own GET stream after it.
   */
  #send(transport: StreamableHTTPClientTransport, message: JSONRPCMessage): Promise<void> {
    if (isRequest(message) && message.method === 'initialize') {
      const id = message.id;
      return transport.send(message, { onRequestStreamEnd: () => this.#awaiting.streamEnded(id) });
    }
    return this.#post(transport, message);
  }

  /** The upstream session took `notifications/initialized`: its GET stream opens now if someone listens. */
  #handshakeDone(transport: StreamableHTTPClientTransport): void {
    if (transport !== this.#transport || this.#stopping !== undefined) return;
    this.#handshaken = transport;
    if (this.#listening) this.#listenOn(transport);
  }

  /** The GET stream of the current upstream session, opened once. */
  #listenOn(transport: StreamableHTTPClientTransport): GetStream {
    this.#stream ??= new GetStream({
      url: this.#url as URL,
      token: () => this.#token,
      headers: (token) => this.#headers(transport, token),
      onEvent: (event) => void handEvent(event, this.#handlers(transport)),
      refused: (token) => this.#reauthorise(token),
      forgotten: () => void this.#recover(transport, 'forgotten').catch((error: unknown) => this.#unrecoverable(error)),
      log: this.#options.log,
    });
    return this.#stream;
  }

  #headers(transport: StreamableHTTPClientTransport, token: string): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = { authorization: `Bearer ${token}` };
    if (transport.sessionId !== undefined) headers['mcp-session-id'] = transport.sessionId;
    if (transport.protocolVersion !== undefined) headers['mcp-protocol-version'] = transport.protocolVersion;
    return headers;
  }

  /** Where the messages the upstream sends for this transport go: large answers as bytes when the owner takes them so. */
  #handlers(transport: StreamableHTTPClientTransport): Parameters<typeof handEvent>[1] {
    return {
      onMessage: (received, length) => this.#received(transport, received, length),
      onAnswer: this.onanswer === undefined ? undefined : (answer) => this.#agreed(transport, this.#awaiting.receivedAnswer(answer)),
      onMalformed: (length) =>
        this.#options.log.warn(
          { event: 'upstream_not_jsonrpc', bytes: length },
          'the upstream sent a message that is not JSON-RPC 2.0; dropped',
        ),
    };
  }

  /**
   * One message POSTed with the current token and the session's headers; the
   * messages of its answer (a JSON body or an SSE stream) are received as
   * they come. A 401 gets a token from `refused` and one more try; a stream
   * cut before its answer is resumed where the upstream gave event ids,
   * otherwise it fails the request.
   */
  async #post(transport: StreamableHTTPClientTransport, message: JSONRPCMessage, retried = false): Promise<void> {
    const token = this.#token;
    const headers = this.#headers(transport, token);
    headers['content-type'] = 'application/json';
    headers.accept = 'application/json, text/event-stream';
    const outcome = await post({ url: this.#url as URL, headers, body: JSON.stringify(message), ...this.#handlers(transport) });
    switch (outcome.kind) {
      case 'accepted':
        return;
      case 'delivered': {
        if (outcome.answered || !isRequest(message)) return;
        const id = message.id;
        if (outcome.lastEventId === undefined) this.#awaiting.streamEnded(id);
        else await transport.resumeStream(outcome.lastEventId).catch(() => this.#awaiting.streamEnded(id));
        return;
      }
      case 'unexpected':
        throw new BrokerError('child_failed', `the MCP server answered with ${outcome.contentType ?? 'no content type'}`);
      case 'refused':
        if (outcome.status === 401 && !retried) {
          await this.#reauthorise(token);
          return this.#post(transport, message, true);
        }
        throw new UpstreamHttpError(outcome.status, outcome.text);
    }
  }

  /** The upstream refused `token` (401): from now on, the token `refused` resolves with; single flight. */
  async #reauthorise(token: string): Promise<void> {
    this.#refusing ??= this.#options.refused(token).finally(() => (this.#refusing = undefined));
    this.#token = await this.#refusing;
  }

  /**
   * Whether an error means the upstream never saw the message and the session
   * must be established again: the upstream forgot the session (it restarted),
   * or nothing listens where it was.
   */
  #lost(error: unknown, transport: StreamableHTTPClientTransport): 'forgotten' | 'unreachable' | undefined {
    if (error instanceof SdkHttpError || error instanceof UpstreamHttpError)
      return error.status === 404 && transport.sessionId !== undefined ? 'forgotten' : undefined;
    return connectionRefused(error) ? 'unreachable' : undefined;
  }

  /** A new upstream session with the client's original initialize and state; single flight. */
  #recover(lost: StreamableHTTPClientTransport, why: 'forgotten' | 'unreachable'): Promise<void> {
    if (this.#transport !== lost) return Promise.resolve();
    this.#recovering ??= this.#reinitialise(lost, why).finally(() => (this.#recovering = undefined));
    return this.#recovering;
  }

  async #reinitialise(lost: StreamableHTTPClientTransport, why: 'forgotten' | 'unreachable'): Promise<void> {
    const url = this.#url as URL;
    this.#transport = undefined;
    this.#handshaken = undefined;
    this.#stream?.close();
    this.#stream = undefined;
    await lost.close();
    this.#awaiting.failAll('The MCP server restarted before it answered');
    this.#options.log.info({ event: 'upstream_session_lost', why }, 'starting a new upstream session');
    const transport = await this.#open(
      why === 'unreachable' ? await this.#options.endpoint.unreachable(url) : await this.#options.endpoint.ready(),
    );
    // Nothing to tell a new session before the client's own initialize succeeded (it is the message being resent).
    if (this.#state.protocolVersion === undefined) return;
    await this.#state.replay({
      request: (method, params) => this.#awaiting.replay((request) => transport.send(request), method, params),
      notify: (notification) =>
        void this.#post(transport, notification).then(
          () => isInitializedNotification(notification) && this.#handshakeDone(transport),
          (error: unknown) => this.#transportError(transport, error),
        ),
    });
  }

  #received(transport: StreamableHTTPClientTransport, message: JSONRPCMessage, length: number): void {
    this.#agreed(transport, this.#awaiting.received(message, length));
  }

  /** An initialize answered: the transport sends the version agreed in its headers from now on. */
  #agreed(transport: StreamableHTTPClientTransport, protocolVersion: string | undefined): void {
    if (protocolVersion !== undefined) transport.setProtocolVersion(protocolVersion);
  }

  #transportError(transport: StreamableHTTPClientTransport, error: unknown): void {
    if (this.#stopping !== undefined || transport !== this.#transport) return;
    // A resumed stream found the session gone: start a new one now, not at the next request, so notifications keep coming.
    if (error instanceof SdkHttpError && error.status === 404 && transport.sessionId !== undefined) {
      void this.#recover(transport, 'forgotten').catch((recoverError: unknown) => this.#unrecoverable(recoverError));
      return;
    }
    this.#options.log.debug({ event: 'upstream_stream_error', err: errorMessage(error) }, 'upstream stream error');
  }

  #unrecoverable(error: unknown): void {
    this.#options.log.warn({ event: 'upstream_session_failed', err: errorMessage(error) }, 'could not start a new upstream session');
    void this.stop();
  }

  #failed(message: JSONRPCMessage, error: unknown): void {
    const revoked = isBrokerError(error, 'credential_revoked') || isBrokerError((error as { cause?: unknown }).cause, 'credential_revoked');
    const reason = revoked
      ? 'Forgejo refused your token: sign in again'
      : connectionCut(error)
        ? 'The MCP server closed the connection before it answered'
        : `The MCP server could not be reached: ${errorMessage(error)}`;
    if (isRequest(message)) {
      this.#awaiting.fail(message.id, reason);
      return;
    }
    this.#options.log.warn({ event: 'upstream_send_failed', err: errorMessage(error) }, 'a message to the upstream was lost');
  }
}
