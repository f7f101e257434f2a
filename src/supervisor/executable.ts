import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';

import { ConfigError } from '../config/config.js';

/** What execvp searches when PATH is unset (glibc's confstr(_CS_PATH)). */
const DEFAULT_SEARCH_PATH = '/bin:/usr/bin';

/**
 * Where `program` would be run from, found as execvp (and so Node's spawn)
 * finds it: a name with a slash as it is (relative to `cwd`), any other name
 * in the directories of PATH, an empty entry meaning `cwd`. Undefined when no
 * executable file is there, which spawn would only report at the first session.
 */
export async function resolveExecutable(program: string, searchPath: string | undefined, cwd: string): Promise<string | undefined> {
  if (program.includes('/')) {
    const candidate = path.resolve(cwd, program);
    return (await isExecutableFile(candidate)) ? candidate : undefined;
  }
  for (const dir of (searchPath ?? DEFAULT_SEARCH_PATH).split(':')) {
    const candidate = path.resolve(cwd, dir, program);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * BROKER_CHILD_COMMAND's (or BROKER_UPSTREAM_COMMAND's) program, checked at start: one that cannot be
 * spawned would otherwise fail every session (502) instead of the start.
 */
export async function requireChildProgram(
  command: readonly string[],
  searchPath: string | undefined,
  variable: 'BROKER_CHILD_COMMAND' | 'BROKER_UPSTREAM_COMMAND' = 'BROKER_CHILD_COMMAND',
): Promise<void> {
  const program = command[0] as string;
  if ((await resolveExecutable(program, searchPath, process.cwd())) !== undefined) return;
  const where = program.includes('/')
    ? `${program} is not an executable file`
    : `"${program}" is not an executable in any directory of PATH (${searchPath ?? DEFAULT_SEARCH_PATH})`;
  const example = variable === 'BROKER_CHILD_COMMAND' ? '--transport stdio' : '--transport http --http-port {port}';
  throw new ConfigError(
    variable,
    `${where}. Install forgejo-mcp (the Go program, from https://codeberg.org/goern/forgejo-mcp/releases; see docs/forgejo-mcp.md) on the broker's PATH, or set ${variable} to its full path, e.g. "/usr/local/bin/forgejo-mcp ${example}"`,
  );
}
