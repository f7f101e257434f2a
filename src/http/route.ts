import type { IncomingMessage, ServerResponse } from 'node:http';

/** The MCP endpoint's path: what the OAuth metadata names as the protected resource, and what the server shell mounts. */
export const MCP_PATH = '/mcp';

/**
 * A mountable group of HTTP routes. Returns true when it answered the request,
 * false to let the next group try. The server shell composes groups in order.
 */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;
