import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';

/**
 * A temporary directory for the calling test file, made before its tests
 * and removed after them. The returned function names a new directory in it
 * on every call, not yet created: the code under test makes its own data
 * directory.
 */
export function freshDataDirs(prefix: string): () => string {
  let root: string | undefined;
  let made = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
  });
  after(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });
  return () => {
    if (root === undefined) throw new Error('data directories are named only while the tests run');
    made += 1;
    return join(root, `data-${made}`);
  };
}
