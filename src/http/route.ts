import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A mountable group of HTTP routes. Returns true when it answered the request,
 * false to let the next group try. The entry point composes groups in order.
 */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;
