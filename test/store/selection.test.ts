/** BROKER_DATABASE_URL: which store the broker opens, and what the setting accepts. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { ConfigError, loadConfig } from '../../src/config/config.js';

const KEY = randomBytes(32).toString('hex');

function configError(variable: string, secret?: string): (error: unknown) => boolean {
  return (error) =>
    error instanceof ConfigError &&
    error.variable === variable &&
    error.message.startsWith(`${variable}: `) &&
    (secret === undefined || !error.message.includes(secret));
}

describe('BROKER_DATABASE_URL', () => {
  it('is unset by default: SQLite in the data directory', () => {
    assert.equal(loadConfig({}).databaseUrl, undefined);
    assert.equal(loadConfig({ BROKER_DATABASE_URL: '  ' }).databaseUrl, undefined);
  });

  it('accepts postgres:// and postgresql:// URLs, as given', () => {
    for (const url of ['postgres://broker:pw@db.internal:5432/broker', 'postgresql://broker@10.0.0.5/broker?sslmode=require']) {
      assert.equal(loadConfig({ BROKER_DATABASE_URL: url, BROKER_ENCRYPTION_KEY: KEY }).databaseUrl, url);
    }
  });

  it('refuses anything else, naming the variable and never echoing the URL', () => {
    for (const url of ['mysql://broker:hunter2@db/broker', 'not a url hunter2', 'https://hunter2@db.example/']) {
      assert.throws(
        () => loadConfig({ BROKER_DATABASE_URL: url, BROKER_ENCRYPTION_KEY: KEY }),
        configError('BROKER_DATABASE_URL', 'hunter2'),
        url,
      );
    }
  });

  it('needs BROKER_ENCRYPTION_KEY, which every replica must share', () => {
    assert.throws(
      () => loadConfig({ BROKER_DATABASE_URL: 'postgres://broker:hunter2@db/broker' }),
      configError('BROKER_ENCRYPTION_KEY', 'hunter2'),
    );
  });
});
