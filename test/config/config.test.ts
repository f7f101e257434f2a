import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseCommandLine } from '../../src/config/command-line.js';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { parseDuration } from '../../src/config/duration.js';
import { OPTIONS, shownDefault } from '../../src/config/options.js';
import { LineSplitter } from '../../src/supervisor/lines.js';

test("defaults: loopback listen, ./data, forgejo-mcp over stdio, the seed's intervals, limits on", () => {
  const config = loadConfig({});
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
  assert.equal(config.publicUrl.href, 'http://127.0.0.1:8080/');
  assert.deepEqual(config.childCommand, ['forgejo-mcp', '--transport', 'stdio']);
  assert.equal(config.idleTimeoutMs, 15 * 60_000);
  assert.equal(config.initTimeoutMs, 30_000);
  assert.equal(config.reapIntervalMs, 30_000);
  assert.equal(config.rotateIntervalMs, 60_000);
  assert.equal(config.refreshLeadMs, 5 * 60_000);
  assert.equal(config.signIn.forgejoRefreshTimeoutMs, 30_000);
  assert.equal(loadConfig({ BROKER_FORGEJO_REFRESH_TIMEOUT: '1m30s' }).signIn.forgejoRefreshTimeoutMs, 90_000);
  assert.equal(config.maxSessions, 500);
  assert.equal(config.maxSessionsPerUser, 16);
  assert.equal(config.headersTimeoutMs, 10_000);
  assert.equal(config.bodyTimeoutMs, 60_000);
  assert.deepEqual(config.signIn.trustedProxies, []);
  assert.equal(config.forgejoUrl, undefined);
  assert.match(config.dataDir, /\/data$/);
});

test('durations accept 30s, 15m, 1h, 90d, 500ms and compounds, nothing else', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('90d'), 90 * 86_400_000);
  for (const bad of ['', '10', 'abc', '5 minutes', '1w', '-1s', '1s x']) assert.equal(parseDuration(bad), undefined, bad);
});

test('the child command is split like a shell would, never run through one', () => {
  const config = loadConfig({ BROKER_CHILD_COMMAND: `/opt/forgejo mcp/bin/forgejo-mcp --transport stdio --debug 'a b' $HOME` });
  assert.deepEqual(config.childCommand, ['/opt/forgejo', 'mcp/bin/forgejo-mcp', '--transport', 'stdio', '--debug', 'a b', '$HOME']);
  assert.throws(() => loadConfig({ BROKER_CHILD_COMMAND: 'forgejo-mcp | tee log' }), /BROKER_CHILD_COMMAND/);
  assert.throws(() => loadConfig({ BROKER_CHILD_COMMAND: "'' --transport stdio" }), /BROKER_CHILD_COMMAND: the program name is empty/);
});

test('every bad value names its variable', () => {
  const cases: [Record<string, string>, string][] = [
    [{ BROKER_LISTEN: 'localhost' }, 'BROKER_LISTEN'],
    [{ BROKER_LISTEN: '127.0.0.1:99999' }, 'BROKER_LISTEN'],
    [{ FORGEJO_URL: 'ftp://forge' }, 'FORGEJO_URL'],
    [{ FORGEJO_URL: 'not a url' }, 'FORGEJO_URL'],
    [{ BROKER_PUBLIC_URL: 'https://broker.example/?x=1' }, 'BROKER_PUBLIC_URL'],
    [{ BROKER_PUBLIC_URL: 'https://example.org/broker' }, 'BROKER_PUBLIC_URL'],
    [{ BROKER_MAX_SESSIONS: '-1' }, 'BROKER_MAX_SESSIONS'],
    [{ BROKER_MAX_SESSIONS_PER_USER: 'many' }, 'BROKER_MAX_SESSIONS_PER_USER'],
    [{ BROKER_IDLE_TIMEOUT: '15' }, 'BROKER_IDLE_TIMEOUT'],
    [{ BROKER_REAP_INTERVAL: '0s' }, 'BROKER_REAP_INTERVAL'],
    [{ BROKER_ROTATE_INTERVAL: 'soon' }, 'BROKER_ROTATE_INTERVAL'],
    [{ BROKER_REFRESH_LEAD: '5 min' }, 'BROKER_REFRESH_LEAD'],
    [{ BROKER_FORGEJO_REFRESH_TIMEOUT: '0' }, 'BROKER_FORGEJO_REFRESH_TIMEOUT'],
    [{ BROKER_LOG_LEVEL: 'loud' }, 'BROKER_LOG_LEVEL'],
    [{ BROKER_HEADERS_TIMEOUT: '0s' }, 'BROKER_HEADERS_TIMEOUT'],
    [{ BROKER_HEADERS_TIMEOUT: '2m' }, 'BROKER_HEADERS_TIMEOUT'],
    [{ BROKER_BODY_TIMEOUT: 'never' }, 'BROKER_BODY_TIMEOUT'],
    [{ BROKER_TRUSTED_PROXIES: '10.0.0.0/33' }, 'BROKER_TRUSTED_PROXIES'],
    [{ BROKER_TRUSTED_PROXIES: '10.0.0.1, proxy.internal' }, 'BROKER_TRUSTED_PROXIES'],
    [{ BROKER_TRUSTED_PROXIES: 'fd00::/129' }, 'BROKER_TRUSTED_PROXIES'],
  ];
  for (const [env, variable] of cases) {
    assert.throws(
      () => loadConfig(env),
      (error: unknown) => error instanceof ConfigError && error.variable === variable && error.message.startsWith(`${variable}: `),
      variable,
    );
  }
});

test('limits: 0 still means unlimited; trusted proxies are addresses and CIDR networks of both families', () => {
  const config = loadConfig({
    BROKER_MAX_SESSIONS: '0',
    BROKER_MAX_SESSIONS_PER_USER: '0',
    BROKER_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.7 ,fd00::/8,::1',
  });
  assert.equal(config.maxSessions, 0);
  assert.equal(config.maxSessionsPerUser, 0);
  assert.deepEqual(config.signIn.trustedProxies, [
    { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
    { address: '192.0.2.7', prefix: 32, family: 'ipv4' },
    { address: 'fd00::', prefix: 8, family: 'ipv6' },
    { address: '::1', prefix: 128, family: 'ipv6' },
  ]);
});

test('flags override the environment', () => {
  const commandLine = parseCommandLine(
    [
      'demo',
      '--listen',
      '127.0.0.1:9000',
      '--public-url=https://mcp.example',
      '--forgejo-url',
      'https://forge.example',
      '--cimd-allow-private',
    ],
    {
      BROKER_LISTEN: '0.0.0.0:1',
    },
  );
  assert.equal(commandLine.action, 'run');
  if (commandLine.action !== 'run') return;
  assert.equal(commandLine.command, 'demo');
  const config = loadConfig(commandLine.env);
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 9000 });
  assert.equal(config.publicUrl.href, 'https://mcp.example/');
  assert.equal(config.forgejoUrl?.href, 'https://forge.example/');
  assert.equal(config.signIn.cimdAllowPrivate, true);
  assert.throws(() => parseCommandLine(['--listen'], {}), /--listen: needs a value/);
});

test('the line splitter joins a line split over many chunks and refuses an oversized one', () => {
  const lines: string[] = [];
  let overflows = 0;
  const splitter = new LineSplitter(
    16,
    (line) => lines.push(line),
    () => overflows++,
  );
  splitter.push(Buffer.from('{"a"'));
  splitter.push(Buffer.from(':1}\n{"b":2}\r\n{"c"'));
  splitter.push(Buffer.from(':3}\n'));
  splitter.push(Buffer.from('x'.repeat(20) + '\nok\n'));
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}', 'ok']);
  assert.equal(overflows, 1);
});

test('the line splitter keeps a UTF-8 character cut between two chunks whole', () => {
  const lines: string[] = [];
  const splitter = new LineSplitter(
    64,
    (line) => lines.push(line),
    () => assert.fail('no overflow'),
  );
  const bytes = Buffer.from('{"t":"é€😀"}\n{"u":"ü"}');
  for (let i = 0; i < bytes.length; i++) splitter.push(bytes.subarray(i, i + 1));
  splitter.flush();
  assert.deepEqual(lines, ['{"t":"é€😀"}', '{"u":"ü"}']);
});

test('client policy: CIMD on unless off, unused-client cap, sibling-refresh window as long as a refresh token lives', () => {
  const defaults = loadConfig({}).signIn;
  assert.equal(defaults.metadataDocuments, true);
  assert.equal(defaults.maxUnusedClients, 10_000);
  assert.equal(defaults.refreshGraceMs, defaults.refreshTokenTtlMs);
  assert.equal(loadConfig({ BROKER_REFRESH_TOKEN_TTL: '24h' }).signIn.refreshGraceMs, 24 * 3_600_000);
  assert.equal(loadConfig({ BROKER_REFRESH_GRACE: '0' }).signIn.refreshGraceMs, 0);
  assert.equal(loadConfig({ BROKER_REFRESH_GRACE: '10s' }).signIn.refreshGraceMs, 10_000);
  assert.equal(loadConfig({ BROKER_CIMD: 'off' }).signIn.metadataDocuments, false);
  assert.equal(loadConfig({ BROKER_CIMD: 'false' }).signIn.metadataDocuments, false);
  assert.equal(loadConfig({ BROKER_MAX_UNUSED_CLIENTS: '0' }).signIn.maxUnusedClients, 0);
  assert.throws(() => loadConfig({ BROKER_CIMD: 'sometimes' }), /BROKER_CIMD/);
  assert.throws(() => loadConfig({ BROKER_REFRESH_GRACE: 'soon' }), /BROKER_REFRESH_GRACE/);
});

test('a bad encryption key is a configuration error at load; a good one is parsed once, hex or base64', () => {
  const key = randomBytes(32);
  assert.deepEqual(loadConfig({ BROKER_ENCRYPTION_KEY: key.toString('hex') }).signIn.encryptionKey, key);
  assert.deepEqual(loadConfig({ BROKER_ENCRYPTION_KEY: key.toString('base64') }).signIn.encryptionKey, key);
  assert.equal(loadConfig({}).signIn.encryptionKey, undefined);
  for (const bad of ['not-a-key', randomBytes(16).toString('hex')]) {
    assert.throws(
      () => loadConfig({ BROKER_ENCRYPTION_KEY: bad }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'BROKER_ENCRYPTION_KEY',
    );
  }
});

test('BROKER_METRICS_LISTEN is host:port, unset by default', () => {
  assert.equal(loadConfig({}).metricsListen, undefined);
  assert.deepEqual(loadConfig({ BROKER_METRICS_LISTEN: '[::1]:9464' }).metricsListen, { host: '::1', port: 9464 });
  assert.throws(() => loadConfig({ BROKER_METRICS_LISTEN: '9464' }), /BROKER_METRICS_LISTEN/);
});

test('BROKER_REPLICA_URL is an http(s) origin, unset by default', () => {
  assert.equal(loadConfig({}).replicaUrl, undefined);
  assert.equal(loadConfig({ BROKER_REPLICA_URL: 'http://10.0.0.5:8080' }).replicaUrl?.href, 'http://10.0.0.5:8080/');
  assert.equal(loadConfig({ BROKER_REPLICA_URL: 'https://replica-1.internal/' }).replicaUrl?.href, 'https://replica-1.internal/');
  for (const bad of [
    '10.0.0.5:8080',
    'ftp://10.0.0.5',
    'http://10.0.0.5:8080/broker',
    'http://10.0.0.5:8080/?x=1',
    'http://u:p@10.0.0.5',
  ]) {
    assert.throws(
      () => loadConfig({ BROKER_REPLICA_URL: bad }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'BROKER_REPLICA_URL',
      bad,
    );
  }
  const commandLine = parseCommandLine(['serve', '--replica-url', 'http://10.0.0.6:8080'], {});
  assert.equal(commandLine.action === 'run' && loadConfig(commandLine.env).replicaUrl?.href, 'http://10.0.0.6:8080/');
});

test('warnings: a wildcard listen address without a public URL, plain http beyond loopback; none for loopback or https', () => {
  const variables = (env: Record<string, string>): string[] =>
    loadConfig(env).warnings.map((warning) => `${warning.variable} ${warning.message}`);
  assert.deepEqual(variables({}), []);
  assert.deepEqual(variables({ BROKER_PUBLIC_URL: 'http://localhost:8080' }), []);
  assert.deepEqual(variables({ BROKER_PUBLIC_URL: 'http://[::1]:8080' }), []);
  assert.deepEqual(variables({ BROKER_LISTEN: '0.0.0.0:8080', BROKER_PUBLIC_URL: 'https://mcp.example.org' }), []);
  for (const listen of ['0.0.0.0:8080', '[::]:8080']) {
    const [warning, ...rest] = variables({ BROKER_LISTEN: listen });
    assert.match(warning ?? '', /^BROKER_PUBLIC_URL is not set while BROKER_LISTEN is the wildcard address/);
    assert.deepEqual(rest, []);
  }
  assert.match(
    variables({ BROKER_PUBLIC_URL: 'http://mcp.example.org' })[0] ?? '',
    /^BROKER_PUBLIC_URL http:\/\/mcp\.example\.org is plain http on a host other than loopback/,
  );
});

test('the README configuration table has every option of the table, with the same default, and nothing else', () => {
  const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'));
  const rows = new Map<string, string>();
  for (const match of section.matchAll(/^\| `([A-Z_]+)` \| ([^|]*) \|/gm))
    rows.set(match[1] as string, (match[2] as string).replaceAll('`', '').trim());
  assert.deepEqual([...rows.keys()].sort(), OPTIONS.map((option) => option.variable).sort());
  for (const option of OPTIONS) assert.equal(rows.get(option.variable), shownDefault(option), option.variable);
});

test('the upstream: stdio by default; a command needs {port} and never an operator token; a URL; never both', () => {
  assert.deepEqual(loadConfig({}).upstream, { kind: 'stdio' });
  assert.deepEqual(
    loadConfig({ BROKER_UPSTREAM_COMMAND: 'forgejo-mcp --transport http --http-port {port}', BROKER_UPSTREAM_PROCESSES: '3' }).upstream,
    {
      kind: 'command',
      command: ['forgejo-mcp', '--transport', 'http', '--http-port', '{port}'],
      processes: 3,
    },
  );
  const external = loadConfig({ BROKER_UPSTREAM_URL: 'http://127.0.0.1:8081/mcp' }).upstream;
  assert.equal(external.kind === 'url' ? external.url.href : external.kind, 'http://127.0.0.1:8081/mcp');
  const refused: Record<string, string>[] = [
    { BROKER_UPSTREAM_COMMAND: 'forgejo-mcp --transport http --http-port 8081' },
    { BROKER_UPSTREAM_COMMAND: 'forgejo-mcp --transport http --http-port {port} --allow-operator-token-fallback' },
    { BROKER_UPSTREAM_COMMAND: 'forgejo-mcp --transport http --http-port {port} --token=abc' },
    { BROKER_UPSTREAM_COMMAND: 'forgejo-mcp --transport http --http-port {port}', BROKER_UPSTREAM_URL: 'http://127.0.0.1:8081/mcp' },
    { BROKER_UPSTREAM_URL: 'ftp://127.0.0.1/mcp' },
    { BROKER_UPSTREAM_PROCESSES: '0' },
  ];
  for (const env of refused) assert.throws(() => loadConfig(env), ConfigError, JSON.stringify(env));
});
