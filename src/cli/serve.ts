import { InvalidArgumentError, type Command } from 'commander';
import { durationOption, intOption } from './flags.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run Thaw on this machine: API on 127.0.0.1:PORT, state in DIR')
    .requiredOption('--port <port>', 'TCP port of the API', intOption(0, 65535))
    .requiredOption('--data <dir>', 'data directory (SQLite state, code, credentials)')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--driver <name>', 'sandbox driver: namespaces or process (default: namespaces when available)')
    .option('--keep-alive <duration>', 'how long idle environments are kept: seconds, or 90s, 10m, 2h (the histogram policy\'s fallback)', durationOption(1, 86400))
    .option('--keep-alive-policy <policy>', 'histogram (from each version\'s idle times, with pre-warming) or fixed', 'histogram')
    .option('--sandbox-uid-base <uid>', 'first host uid of the 65,536 that environments run as, one each (default 1879048192)', intOption(1, 0xfffefffe))
    .option('--max-environments <n>', 'cap on execution environments on this machine', intOption(1, 100000))
    .option('--account-concurrency <n>', 'account concurrency limit: invocations in flight at once (default: sized to CPUs and memory)', intOption(1, 100000))
    .option('--no-stem-cells', 'do not keep pre-started runtimes ready (every cold start boots a runtime)')
    .option('--no-code-cache', 'do not produce or use post-init code caches')
    .option('--no-freeze', 'leave idle environments running instead of freezing them between invocations (their background work keeps its CPU)')
    .option('--async-retry-base <ms>', 'wait before the first retry of a failed event invocation, doubled for the second (default 60000, as Lambda)', intOption(1, 3_600_000))
    .option('--store-origin <dir|s3://bucket/prefix>', 'where chunks are kept (default: DIR/store)')
    .option('--store-endpoint <url>', 'S3-compatible endpoint for an s3:// store origin')
    .option('--request-timeout <duration>', 'time a client has to send a whole request, headers and body (default 300s)', durationOption(1, 3600))
    .option('--ephemeral-dir <dir>', 'directory on a disk for the functions\' /tmp filesystems (default: DIR/ephemeral)')
    .option('--code-storage <bytes>', 'account code storage limit, counted as stored (compressed) (default 80530636800, as Lambda)', intOption(1, Number.MAX_SAFE_INTEGER))
    .option('--log-level <level>', 'server log level (fatal, error, warn, info, debug)', 'info')
    .option('--log-rate <MiB/s>', "one function's log rate; output beyond it (after an 8 MiB burst) is dropped with a marker (default 2)", intOption(1, 1024))
    .option('--log-retention <MiB>', "log lines kept per function, oldest dropped first (default 16; all functions: 128 or 8 functions' worth)", intOption(1, 1_000_000))
    .action(async (o: { port: number; data: string; host: string; driver?: string; keepAlive?: number; keepAlivePolicy: string; maxEnvironments?: number; sandboxUidBase?: number; accountConcurrency?: number; stemCells: boolean; codeCache: boolean; freeze: boolean; logLevel: string; asyncRetryBase?: number; storeOrigin?: string; storeEndpoint?: string; requestTimeout?: number; logRate?: number; logRetention?: number; ephemeralDir?: string; codeStorage?: number }) => {
      if (o.driver !== undefined && o.driver !== 'namespaces' && o.driver !== 'process') {
        throw new InvalidArgumentError(`unknown driver ${o.driver}: use namespaces or process`);
      }
      if (o.keepAlivePolicy !== 'histogram' && o.keepAlivePolicy !== 'fixed') {
        throw new InvalidArgumentError(`unknown keep-alive policy ${o.keepAlivePolicy}: use histogram or fixed`);
      }
      // Loaded here so that client commands do not pay for the server's modules (SQLite, sandboxes, pino).
      const [{ startThaw }, { createLogger }] = await Promise.all([import('../app.js'), import('../util/log.js')]);
      const logger = createLogger(o.logLevel);
      const thaw = await startThaw({
        port: o.port,
        host: o.host,
        dataDir: o.data,
        logger,
        ...(o.driver === undefined ? {} : { driver: o.driver }),
        ...(o.keepAlive === undefined ? {} : { keepAliveMs: o.keepAlive * 1000 }),
        keepAlivePolicy: o.keepAlivePolicy,
        ...(o.maxEnvironments === undefined ? {} : { maxEnvironments: o.maxEnvironments }),
        ...(o.sandboxUidBase === undefined ? {} : { sandboxUidBase: o.sandboxUidBase }),
        ...(o.accountConcurrency === undefined ? {} : { accountConcurrency: o.accountConcurrency }),
        stemCells: o.stemCells,
        codeCache: o.codeCache,
        freezeIdle: o.freeze,
        ...(o.asyncRetryBase === undefined ? {} : { asyncRetryBaseMs: o.asyncRetryBase }),
        ...(o.storeOrigin === undefined ? {} : { storeOrigin: o.storeOrigin }),
        ...(o.ephemeralDir === undefined ? {} : { ephemeralDir: o.ephemeralDir }),
        ...(o.storeEndpoint === undefined ? {} : { storeEndpoint: o.storeEndpoint }),
        ...(o.requestTimeout === undefined ? {} : { http: { requestTimeoutMs: o.requestTimeout * 1000 } }),
        ...(o.logRate === undefined ? {} : { logRateBytesPerSecond: o.logRate * 1024 * 1024 }),
        ...(o.logRetention === undefined ? {} : { logFunctionCapBytes: o.logRetention * 1024 * 1024, logCapBytes: Math.max(128, o.logRetention * 8) * 1024 * 1024 }),
        ...(o.codeStorage === undefined ? {} : { codeStorageBytes: o.codeStorage }),
      });
      if (thaw.credentialsFile !== undefined) {
        process.stdout.write(`credentials: ${thaw.credentialsFile} (access key ${thaw.credentials.accessKeyId})\n`);
      }
      process.stdout.write(`sandbox driver: ${thaw.driverName}\n`);
      process.stdout.write(`thaw listening on ${thaw.url}\n`);
      const stop = (): void => {
        void thaw.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
