import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ForgeUser {
  readonly id: number;
  readonly login: string;
}

/**
 * The two Forgejo API calls a child makes (`/api/v1/version` at start,
 * `/api/v1/user` for get_me), on a real loopback server, for core tests that
 * need no OAuth. Tokens are added as the test mints them.
 */
export class TestForge {
  private readonly tokens = new Map<string, ForgeUser>();
  versionStatus = 200;

  private readonly server: Server = createServer((req, res) => this.serve(req.url ?? '', req.headers.authorization, res));
  url = '';

  static async start(): Promise<TestForge> {
    const forge = new TestForge();
    forge.server.listen(0, '127.0.0.1');
    await once(forge.server, 'listening');
    forge.url = `http://127.0.0.1:${(forge.server.address() as AddressInfo).port}`;
    return forge;
  }

  addToken(token: string, user: ForgeUser): void {
    this.tokens.set(token, user);
  }

  private serve(path: string, authorization: string | undefined, res: import('node:http').ServerResponse): void {
    if (path === '/api/v1/version') {
      res.writeHead(this.versionStatus, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ version: '11.0.0+gitea-1.22.0' }));
      return;
    }
    if (path === '/api/v1/user') {
      const token = /^(?:token|bearer) (.+)$/i.exec(authorization ?? '')?.[1];
      const user = token === undefined ? undefined : this.tokens.get(token);
      res.writeHead(user === undefined ? 401 : 200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          user === undefined ? { message: 'invalid token' } : { ...user, full_name: user.login, email: `${user.login}@example.test` },
        ),
      );
      return;
    }
    res.writeHead(404).end();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
