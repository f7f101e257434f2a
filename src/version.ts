import { readFileSync } from 'node:fs';
import type { Implementation } from '@modelcontextprotocol/server';

/** The package's own version, read once from package.json (dist/src/ → repo root). */
const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };

/** The broker's identity toward MCP clients. */
export const BROKER_INFO: Implementation = {
  name: packageJson.name,
  title: 'Forgejo MCP broker',
  version: packageJson.version,
};
