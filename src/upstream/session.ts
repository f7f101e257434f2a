import type { OutgoingHttpHeaders } from 'node:http';
import { SdkHttpError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { JSONRPCMessage, JSONRPCRequest, RequestId } from '@modelcontextprotocol/server';
import {
  isInitializedNotification,
  isInitializeRequest,
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
} from '@modelcontextprotocol/server';
import { BrokerError, errorMessage, isBrokerError } from '../errors/errors.js';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import type { Logger } from '../log/logger.js';
import type { Child, ChildExit } from '../pool/child.js';
import { ClientState } from '../pool/client-state.js';
import type { ClientResponse } from '../pool/request-sink.js';
import type { UpstreamEndpoint } from './endpoint.js';
import { connectionCut, connectionRefused, post, UpstreamHttpError } from './post.js';

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
}

/** GET streams end every 30 s at forgejo-mcp (its write timeout): reopened at once, then with backoff while it is down. */
const STREAM_RECONNECTION = {
  initialReconnectionDelay: 10,
  reconnectionDelayGrowFactor: 3,
  maxReconnectionDelay: 5000,
  maxRetries: Number.POSITIVE_INFINITY,
};

const REPLAY_ID_PREFIX = 'broker-upstream-replay-';

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
 * The SDK's client transport carries the protocol: the initialize handshake
 * (it takes the session id), the initialized notification (after which it
 * opens and reopens the GET stream, resuming it), the DELETE. Every other
 * message, the hot path, is posted by `post` on node:http (why: README,
 * "Shared mode", the request path).
 */
export class UpstreamSession implements Child {
  readonly pid = undefined;
  onmessage: ((message: JSONRPCMessage, lineLength: number) => void) | undefined;
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
  /** Client requests sent and not answered yet, by the id the upstream sees. */
  readonly #awaiting = new Map<RequestId, { readonly method: string; readonly params: JSONRPCRequest['params'] }>();
  /** Requests being sent again on a new upstream session; the old one's end does not fail them. */
  readonly #resending = new Set<RequestId>();
  readonly #replies = new Map<string, (response: ClientResponse) => void>();
  #nextReplayId = 1;
  readonly #options: UpstreamSessionOptions;

  constructor(options: UpstreamSessionOptions) {
    this.#options = options;
    this.#token = options.token;
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
    if (isJSONRPCRequest(message)) {
      this.#state.requested(message);
      this.#awaiting.set(message.id, { method: message.method, params: message.params });
    } else if (isJSONRPCNotification(message)) {
      this.#state.notified(message);
    }
    void this.#deliver(message);
    return true;
  }

  stop(): Promise<ChildExit> {
    this.#stopping ??= this.#terminate();
    return this.#stopping;
  }

  async #terminate(): Promise<ChildExit> {
    const transport = this.#transport;
    this.#failAwaiting('The MCP session ended before the server answered');
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
      if (isJSONRPCNotification(message)) {
        const previous = this.#notificationsSent;
        let sent!: () => void;
        this.#notificationsSent = new Promise((resolve) => (sent = resolve));
        await previous;
        try {
          transport = await this.#connected();
          await this.#send(transport, message);
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
        const id = isJSONRPCRequest(message) ? message.id : undefined;
        if (id !== undefined) this.#resending.add(id);
        try {
          await this.#recover(transport, lost);
        } catch (recoverError) {
          this.#resending.delete(id as RequestId);
          this.#failed(message, recoverError);
          this.#unrecoverable(recoverError);
          return;
        }
        if (id !== undefined) this.#resending.delete(id);
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

  /** The handshake goes through the SDK transport, everything else straight to the upstream. */
  #send(transport: StreamableHTTPClientTransport, message: JSONRPCMessage): Promise<void> {
    if (isInitializeRequest(message) || isInitializedNotification(message)) {
      const id = isJSONRPCRequest(message) ? message.id : undefined;
      return transport.send(message, id === undefined ? undefined : { onRequestStreamEnd: () => this.#streamEnded(id) });
    }
    return this.#post(transport, message);
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
    const headers: OutgoingHttpHeaders = {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    if (transport.sessionId !== undefined) headers['mcp-session-id'] = transport.sessionId;
    if (transport.protocolVersion !== undefined) headers['mcp-protocol-version'] = transport.protocolVersion;
    const outcome = await post({
      url: this.#url as URL,
      headers,
      body: JSON.stringify(message),
      onMessage: (received, length) => this.#received(transport, received, length),
      onMalformed: (length) =>
        this.#options.log.warn(
          { event: 'upstream_not_jsonrpc', bytes: length },
          'the upstream sent a message that is not JSON-RPC 2.0; dropped',
        ),
    });
    switch (outcome.kind) {
      case 'accepted':
        return;
      case 'delivered': {
        if (outcome.answered || !isJSONRPCRequest(message)) return;
        const id = message.id;
        if (outcome.lastEventId === undefined) this.#streamEnded(id);
        else await transport.resumeStream(outcome.lastEventId).catch(() => this.#streamEnded(id));
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
    await lost.close();
    this.#failAwaiting('The MCP server restarted before it answered');
    this.#options.log.info({ event: 'upstream_session_lost', why }, 'starting a new upstream session');
    const transport = await this.#open(
      why === 'unreachable' ? await this.#options.endpoint.unreachable(url) : await this.#options.endpoint.ready(),
    );
    // Nothing to tell a new session before the client's own initialize succeeded (it is the message being resent).
    if (this.#state.protocolVersion === undefined) return;
    await this.#state.replay({
      request: (method, params) => this.#replayRequest(transport, method, params),
      notify: (notification) => void transport.send(notification).catch((error: unknown) => this.#transportError(transport, error)),
    });
  }

  #replayRequest(transport: StreamableHTTPClientTransport, method: string, params: JSONRPCRequest['params']): Promise<ClientResponse> {
    const id = `${REPLAY_ID_PREFIX}${this.#nextReplayId++}`;
    return new Promise<ClientResponse>((resolve, reject) => {
      this.#replies.set(id, resolve);
      const request: JSONRPCRequest = { jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) };
      transport.send(request).catch((error: unknown) => {
        this.#replies.delete(id);
        reject(error instanceof Error ? error : new Error(String(error)));
      });
    });
  }

  #received(transport: StreamableHTTPClientTransport, message: JSONRPCMessage, length: number): void {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      const reply = typeof message.id === 'string' ? this.#replies.get(message.id) : undefined;
      if (reply !== undefined) {
        this.#replies.delete(message.id as string);
        if (isJSONRPCResultResponse(message) && isInitializeResult(message.result))
          transport.setProtocolVersion(message.result.protocolVersion);
        reply(message as ClientResponse);
        return;
      }
      const id = message.id;
      const request = id === undefined ? undefined : this.#awaiting.get(id);
      if (id === undefined || request === undefined) return; // answered already (an error on our side), or not ours
      this.#awaiting.delete(id);
      if (isJSONRPCResultResponse(message)) {
        this.#state.succeeded(request.method, request.params, message.result);
        if (request.method === 'initialize' && isInitializeResult(message.result))
          transport.setProtocolVersion(message.result.protocolVersion);
      }
    }
    this.onmessage?.(message, length);
  }

  /** A request's response stream ended: without its answer, the request failed (cut by the upstream, or it died). */
  #streamEnded(id: RequestId): void {
    if (this.#resending.has(id) || !this.#awaiting.has(id)) return;
    this.#answerWithError(id, 'The MCP server ended the response before it answered');
  }

  #transportError(transport: StreamableHTTPClientTransport, error: unknown): void {
    if (this.#stopping !== undefined || transport !== this.#transport) return;
    // The GET stream found the session gone: start a new one now, not at the next request, so notifications keep coming.
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
    if (isJSONRPCRequest(message)) {
      this.#answerWithError(message.id, reason);
      return;
    }
    this.#options.log.warn({ event: 'upstream_send_failed', err: errorMessage(error) }, 'a message to the upstream was lost');
  }

  #failAwaiting(reason: string): void {
    for (const id of [...this.#awaiting.keys()]) if (!this.#resending.has(id)) this.#answerWithError(id, reason);
  }

  #answerWithError(id: RequestId, reason: string): void {
    if (!this.#awaiting.delete(id)) return;
    const response: ClientResponse = { jsonrpc: '2.0', id, error: { code: JsonRpcCode.internalError, message: reason } };
    this.onmessage?.(response, reason.length);
  }
}

function isInitializeResult(result: unknown): result is { protocolVersion: string } {
  return typeof (result as { protocolVersion?: unknown } | undefined)?.protocolVersion === 'string';
}
