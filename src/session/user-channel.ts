import type { Implementation, InitializeResult, JSONRPCNotification, LoggingLevel, Tool } from '@modelcontextprotocol/server';
import type { ChildChannel } from '../bridge/channel.js';

/** A listener for a user's change notifications: one `subscriptions/listen` stream. */
export interface ChangeListener {
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
 * broker itself and shared by all of that user's modern clients.
 */
export interface UserChannel {
  readonly channel: ChildChannel;
  readonly userId: string;
  readonly forgejoLogin: string;
  /** The child's answer to the broker's initialize. */
  readonly server: InitializeResult;
  readonly clientInfo: Implementation;
  lastActive: number;
  tokenFingerprint: string;
  readonly listeners: Set<ChangeListener>;
  /** Resource URIs subscribed at the child, with how many listeners want each. */
  readonly resourceRefs: Map<string, number>;
  /** The level set at the child, if any; requests asking for a lower one lower it. */
  logLevel: LoggingLevel | undefined;
  /** The child's tools by name, fetched on first need and dropped when the child says they changed. */
  tools: Promise<Map<string, Tool>> | undefined;
}
