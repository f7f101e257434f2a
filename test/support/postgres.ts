/**
 * PostgreSQL for the tests that need one: the database named by
 * BROKER_TEST_DATABASE_URL (`eval "$(.ci/postgres.sh start)"` provides one),
 * a new schema per use, dropped after the test file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';

const DATABASE_URL = process.env.BROKER_TEST_DATABASE_URL?.trim() ?? '';
const SKIP = process.env.BROKER_TEST_POSTGRES === 'skip';

/**
 * Describes `name` with `suite`, given a maker of fresh database URLs (each
 * in a new, empty schema); without a server, one test that fails saying how to start one,
 * or is skipped with BROKER_TEST_POSTGRES=skip.
 */
export function withPostgres(name: string, suite: (freshUrl: () => Promise<string>) => void): void {
  if (DATABASE_URL === '') {
    describe(name, () => {
      if (SKIP) {
        it('runs against a PostgreSQL server', { skip: 'BROKER_TEST_POSTGRES=skip and no BROKER_TEST_DATABASE_URL' }, () => undefined);
      } else {
        it('needs a PostgreSQL server', () => {
          assert.fail(
            'BROKER_TEST_DATABASE_URL is not set. Start a throwaway server with `eval "$(.ci/postgres.sh start)"` ' +
              '(stop it with `.ci/postgres.sh stop`), or set BROKER_TEST_POSTGRES=skip to skip the PostgreSQL tests on purpose.',
          );
        });
      }
    });
    return;
  }
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  admin.on('error', () => undefined);
  const schemas: string[] = [];
  after(async () => {
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });
  describe(name, () =>
    suite(async () => {
      const schema = `broker_test_${randomBytes(6).toString('hex')}`;
      await admin.query(`CREATE SCHEMA ${schema}`);
      schemas.push(schema);
      const url = new URL(DATABASE_URL);
      url.searchParams.set('options', `-c search_path=${schema}`);
      return url.href;
    }),
  );
}
