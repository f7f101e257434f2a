/**
 * The load balancers of the replica topology, as Debian packages them and an
 * operator would configure them: plain round robin, no stickiness of any
 * kind, long timeouts for SSE, keep-alive to the replicas. Each runs in the
 * foreground from a configuration written to a temporary directory and logs
 * one line per request (`METHOD|path|status|replica`: HAProxy on stdout,
 * nginx to a file, as it cannot open /dev/stdout when that is a socket),
 * which the harness reads to see which replica answered what. Each also names the
 * replica that answered in a response header (`x-topology-replica`), so a
 * client of the test can tell where its request went without any help from
 * the broker.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export type BalancerKind = 'haproxy' | 'nginx';

/** The response header in which the balancer names the replica (1-based) that answered. */
export const REPLICA_HEADER = 'x-topology-replica';

/** One request the balancer passed on, from its log. */
export interface BalancedRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** 1-based replica number; undefined when no replica answered (the balancer's own 502/503). */
  readonly replica: number | undefined;
}

export interface BalancerOptions {
  readonly kind: BalancerKind;
  /** Where its configuration, logs and temporary files go. */
  readonly dir: string;
  readonly port: number;
  /** The replicas' ports, in replica order (replica 1 first). */
  readonly replicaPorts: readonly number[];
}

/** The command that installs a balancer on Debian, for skip messages. */
export const INSTALL: Readonly<Record<BalancerKind, string>> = {
  haproxy: 'apt-get install -y haproxy',
  nginx: 'apt-get install -y nginx-light',
};

/** Whether the balancer's binary runs here. */
export function balancerInstalled(kind: BalancerKind): boolean {
  const probe = spawnSync(kind, ['-v'], { stdio: 'ignore' });
  return probe.error === undefined && probe.status === 0;
}

/**
 * HAProxy: `balance roundrobin` per request (http mode, keep-alive, no
 * delay for small chunks), an active health check on /readyz every 500 ms that takes a replica out after
 * one failure, and a refused connection retried on another replica.
 */
export function haproxyConfig(options: BalancerOptions): string {
  return [
    'global',
    '  log stdout format raw local0 info',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  log global',
    '  log-format "%HM|%HPO|%ST|%s"',
    '  option http-keep-alive',
    '  option forwardfor',
    // Without it HAProxy holds a small chunk (an SSE priming event) up to 200 ms for more; a replica dying then leaves the client no event id to resume with.
    '  option http-no-delay',
    // A connection the replica refuses (it is gone) is retried, on another replica.
    '  option redispatch 1',
    '  retries 3',
    '  timeout connect 500ms',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    '  timeout http-keep-alive 1m',
    '  timeout http-request 30s',
    'frontend mcp',
    `  bind 127.0.0.1:${options.port}`,
    '  default_backend brokers',
    'backend brokers',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    // A replica that refuses connections is out within 500 ms; a slow answer on a busy machine is not a failure.
    '  timeout check 3s',
    '  default-server check inter 500ms fall 1 rise 1',
    `  http-response set-header ${REPLICA_HEADER} %s`,
    ...options.replicaPorts.map((port, index) => `  server ${index + 1} 127.0.0.1:${port}`),
    '',
  ].join('\n');
}

/**
 * nginx (open source): an upstream block without ip_hash, hash or sticky,
 * so round robin per request; passive failure detection only
 * (`max_fails=1`), a failed connection passed to the next replica; no
 * buffering, HTTP/1.1 with keep-alive to the replicas, long read timeouts.
 */
export function nginxConfig(options: BalancerOptions): string {
  const { dir } = options;
  return [
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'nginx-error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    "  log_format topology '$request_method|$uri|$status|$upstream_addr';",
    `  access_log ${accessLog(dir)} topology;`,
    `  client_body_temp_path ${join(dir, 'nginx', 'body')};`,
    `  proxy_temp_path ${join(dir, 'nginx', 'proxy')};`,
    `  fastcgi_temp_path ${join(dir, 'nginx', 'fastcgi')};`,
    `  uwsgi_temp_path ${join(dir, 'nginx', 'uwsgi')};`,
    `  scgi_temp_path ${join(dir, 'nginx', 'scgi')};`,
    '  upstream brokers {',
    ...options.replicaPorts.map((port) => `    server 127.0.0.1:${port} max_fails=1 fail_timeout=2s;`),
    '    keepalive 32;',
    '  }',
    '  server {',
    `    listen 127.0.0.1:${options.port};`,
    '    location / {',
    '      proxy_pass http://brokers;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_set_header Host $http_host;',
    '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    '      proxy_buffering off;',
    '      proxy_request_buffering off;',
    '      proxy_read_timeout 1h;',
    '      proxy_send_timeout 1h;',
    '      proxy_connect_timeout 2s;',
    '      proxy_next_upstream error timeout;',
    `      add_header ${REPLICA_HEADER} $upstream_addr always;`,
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

function accessLog(dir: string): string {
  return join(dir, 'nginx-access.log');
}

/** A running balancer: its URL, what it logged, and its stop. */
export class Balancer {
  readonly #logged: BalancedRequest[] = [];
  #stderr = '';

  private constructor(
    readonly kind: BalancerKind,
    readonly url: string,
    readonly proc: ChildProcess,
    readonly options: BalancerOptions,
  ) {
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const entry = this.#parse(line);
      if (entry !== undefined) this.#logged.push(entry);
    });
    proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.#stderr += chunk));
  }

  /** Every request it logged so far, oldest first (a request is logged once its response ended). */
  async requests(): Promise<BalancedRequest[]> {
    if (this.kind === 'haproxy') return [...this.#logged];
    const text = await readFile(accessLog(this.options.dir), 'utf8').catch(() => '');
    return text.split('\n').flatMap((line) => this.#parse(line) ?? []);
  }

  /** Writes the configuration, checks it (`-c` / `-t`), and starts the balancer in the foreground. */
  static async start(options: BalancerOptions): Promise<Balancer> {
    const config = join(options.dir, `${options.kind}.cfg`);
    await writeFile(config, options.kind === 'haproxy' ? haproxyConfig(options) : nginxConfig(options));
    let args: string[];
    if (options.kind === 'haproxy') {
      args = ['-f', config];
    } else {
      await mkdir(join(options.dir, 'nginx'), { recursive: true });
      args = ['-p', join(options.dir, 'nginx'), '-e', join(options.dir, 'nginx-error.log'), '-c', config, '-g', 'daemon off;'];
    }
    const check = spawnSync(options.kind, [options.kind === 'haproxy' ? '-c' : '-t', ...args], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`${options.kind} refused its configuration:\n${check.stdout}${check.stderr}`);
    const proc = spawn(options.kind, options.kind === 'haproxy' ? [...args, '-db'] : args, { stdio: ['ignore', 'pipe', 'pipe'] });
    return new Balancer(options.kind, `http://127.0.0.1:${options.port}`, proc, options);
  }

  /** Which replica (1-based) answered a response, from the header the balancer added. */
  replicaOf(headers: Headers): number | undefined {
    return this.#replicaNamed(headers.get(REPLICA_HEADER) ?? undefined);
  }

  /** What it wrote on stderr (start-up problems). */
  get stderr(): string {
    return this.#stderr;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    const exited = once(this.proc, 'exit');
    // HAProxy in the foreground stops on SIGTERM; nginx's master on SIGTERM (fast shutdown), workers with it.
    this.proc.kill('SIGTERM');
    const watchdog = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(watchdog);
  }

  #parse(line: string): BalancedRequest | undefined {
    const [method, path, status, server] = line.trim().split('|');
    if (method === undefined || path === undefined || status === undefined || !/^\d+$/.test(status)) return undefined;
    return { method, path, status: Number(status), replica: this.#replicaNamed(server) };
  }

  /** HAProxy names a server by its number; nginx gives the addresses it tried (`a, b`), the last one answered. */
  #replicaNamed(name: string | undefined): number | undefined {
    if (name === undefined || name === '' || name === '-' || name === '<NOSRV>') return undefined;
    if (/^\d+$/.test(name)) return Number(name);
    const last = name.split(',').at(-1)?.trim() ?? '';
    const port = Number(last.slice(last.lastIndexOf(':') + 1));
    const index = this.options.replicaPorts.indexOf(port);
    return index === -1 ? undefined : index + 1;
  }
}
